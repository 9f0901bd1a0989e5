"""What det_nb costs, and the price of each determinism mode: ``make bench``.

Prints the machine, the library versions and one table, and writes it as JSON to
benchmarks/results/latest.json. Every row is measured against its baseline in the same
run (see bench.py for the method). ``--quick`` uses tiny sizes and few repeats, to check
that the code runs (its numbers mean nothing); it, and ``--only``, write a file only
where --out says.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import row_audit
import row_dashboard
import row_load
import row_modes
import row_portable
import row_threads
import row_trials
import row_verify
from bench import BENCH_DIR, Row, row_from_json, run_json

# shell: seed, fingerprint, check
GROUPS = ("load", "audit", "shell", "dashboard", "modes", "portable", "threads", "verify",
          "trials")
ORDER = ("load", "audit", "seed", "dashboard", "modes", "fingerprint", "check", "portable",
         "threads",
         "verify", "trials")
PACKAGES = ("numpy", "tensorflow", "keras", "torch", "ipython", "ipykernel", "ipywidgets", "xxhash",
            "det_nb")
METHOD = (
    "baseline and candidate timed in pairs, interleaved ABBA in the same run; warm-up pairs "
    "excluded (column 'warm-up'); ratio: min / median / max over the pairs (modes: over "
    "rounds); times: medians; a goal is judged on the median ratio (dashboard update: on "
    "the median extra ms) and on the row's boolean facts"
)
DEFAULT_OUT = BENCH_DIR / "results" / "latest.json"


def machine() -> dict[str, Any]:
    """Cores, CPU, memory, OS and Python; GPUs are not used here."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cores usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for path, key, name in (("/proc/cpuinfo", "model name", "cpu"),
                            ("/proc/meminfo", "MemTotal", "memory")):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        value = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key)), None)
        if value and name == "memory":
            value = f"{int(value.split()[0]) / 2**20:.1f} GiB"  # MemTotal is in kB
        if value:
            info[name] = value
    gpu = shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists()
    info["gpu"] = ("present but not measured: CPU only (CUDA_VISIBLE_DEVICES='')" if gpu
                   else "none: GPU modes not measured")
    return info


def versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (nothing is imported)."""
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def revision() -> str | None:
    """The det_nb checkout measured: commit, and whether files differ from it."""
    git = ["git", "-C", str(BENCH_DIR.parent)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + (" with uncommitted changes" if dirty else "")


def measure(groups: tuple[str, ...], quick: bool) -> list[Row]:
    """Every row of the chosen groups, in the issue's order."""
    rows: list[Row] = []
    for group in groups:
        started = time.perf_counter()
        if group == "load":
            rows += row_load.measure(quick)
        elif group == "audit":
            rows += row_audit.measure(quick)
        elif group == "shell":
            args = [str(BENCH_DIR / "row_shell.py")] + (["--quick"] if quick else [])
            rows += [row_from_json(data) for data in run_json(args)]
        elif group == "dashboard":
            rows += [row_from_json(data) for data in row_dashboard.measure(quick)]
        elif group in ("portable", "threads", "verify", "trials"):
            module = {"portable": row_portable, "threads": row_threads, "verify": row_verify,
                      "trials": row_trials}[group]
            rows += [row_from_json(data) for data in module.measure(quick)]
        else:
            rows += [row_from_json(data) for data in row_modes.measure(quick)]
        print(f"  {group}: {time.perf_counter() - started:.0f} s", flush=True)
    return sorted(rows, key=lambda row: ORDER.index(row.row.split()[0].rstrip(":")))


def _value(value: float, unit: str) -> str:
    if unit == "samples/s":
        return f"{value / 1000:.1f}k/s"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _result(row: Row) -> str:
    met = row.met()
    if met is None:
        return "report"
    measured = row.measured()
    shown = f"{measured:.1f} ms" if row.goal and row.goal.metric == "extra_ms" else ""
    failed = [name for name, value in row.facts.items() if value is False]
    text = ("PASS" if met else "FAIL") + (f" ({shown})" if shown else "")
    return text + "".join(f"; {name}: no" for name in failed)


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width text table, then what each row measured."""
    head = ("row", "baseline", "candidate", "ratio min / median / max", "goal", "result",
            "n", "warm-up")
    lines = [head]
    for row in rows:
        data = row.to_json()
        ratio = data["ratio"]
        lines.append((
            row.row, _value(data["baseline_median"], row.unit),
            _value(data["candidate_median"], row.unit),
            f"{ratio['min']:.2f} / {ratio['median']:.2f} / {ratio['max']:.2f}",
            row.goal.text() if row.goal else "report", _result(row), str(data["pairs"]),
            f"{row.warmups} {row.warmup_is}",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            .rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    text.append("")
    previous = None
    for row in rows:
        facts = "".join(f"; {name}: {value}" for name, value in row.facts.items())
        note = "as above" if row.note == previous else row.note
        previous = row.note
        text.append(f"{row.row}: {row.measure}, against {row.baseline}; ratio = "
                    f"{row.ratio_is}. {note}{facts}")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> None:
    """Run, print and write the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repeats (a smoke test; numbers mean nothing)")
    parser.add_argument("--only", action="append", choices=GROUPS,
                        help="run only this group of rows (repeatable)")
    parser.add_argument("--out", type=Path, help="JSON file to write (default: "
                        "benchmarks/results/latest.json for a full run of every group, "
                        "none for --quick or --only)")
    args = parser.parse_args(argv)
    groups = tuple(args.only or GROUPS)
    result = {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick, "groups": groups, "machine": machine(), "versions": versions(),
        "det_nb revision": revision(),
        "method": METHOD,
    }
    print(f"det_nb benchmarks{' (--quick: tiny sizes, numbers mean nothing)' * args.quick}")
    print("machine: " + ", ".join(f"{key} {value}" for key, value in result["machine"].items()))
    print("versions: " + ", ".join(f"{key} {value}" for key, value in result["versions"].items()))
    print(f"det_nb revision: {result['det_nb revision']}")
    print(f"method: {METHOD}", flush=True)
    rows = measure(groups, args.quick)
    result["rows"] = [row.to_json() for row in rows]
    print()
    print(table(rows))
    out = args.out or (None if args.quick or args.only else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
