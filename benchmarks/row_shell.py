"""Rows "seed", "fingerprint", "fingerprint (torch model)" and "check": one fresh
interpreter, an IPython shell in it.

Run as ``python benchmarks/row_shell.py [--quick]``; prints the rows as JSON. det_nb is
loaded and ``%det_seed`` run before TensorFlow is imported (as det_nb advises), so TF
runs single-threaded here; then NumPy, TensorFlow and Keras are imported and TF's runtime
is started before anything is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
from statistics import median
from typing import Any

from bench import SEED_LINE, TRIAL_SEED, Goal, Row, emit, interleave, timed
from IPython.core.interactiveshell import InteractiveShell

MiB = 1 << 20
IMPORTS = "import numpy as np\nimport tensorflow as tf\nimport keras\n_ = tf.constant(1.0) + 1\n"
KERAS_CELL = """\
model = keras.Sequential([keras.Input(({features},)),
                          keras.layers.Dense({units}, activation="relu"),
                          keras.layers.Dropout(0.2), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
model.fit(x, y, epochs={epochs}, batch_size=64, verbose=0)
weights = model.get_weights()
"""
KERAS_DATA = ("x = np.random.standard_normal(({samples}, {features})).astype('float32')\n"
              "y = x.sum(axis=1, keepdims=True)\n")
SVD_CELL = "a = np.random.standard_normal(({n}, {n}))\nu, s, vt = np.linalg.svd(a)\n"


def run(shell: InteractiveShell, cell: str) -> str:
    """Run ``cell`` with its output captured; raise if it failed; return the output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = shell.run_cell(cell, store_history=False)
    if not result.success:
        raise RuntimeError(f"cell failed: {result.error_in_exec or result.error_before_exec}")
    return out.getvalue()


def start_shell() -> InteractiveShell:
    """IPython with det_nb loaded and seeded, then NumPy, TF and Keras imported."""
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "det_nb")
    shell.run_line_magic("det_seed", SEED_LINE)
    run(shell, IMPORTS)
    return shell


def seed_row(shell: InteractiveShell, pairs: int, warmups: int) -> Row:
    """``%det_seed`` against the same seeding written by hand."""
    np, tf, keras = (shell.user_ns[name] for name in ("np", "tf", "keras"))

    def by_hand() -> None:
        random.seed(TRIAL_SEED)
        np.random.seed(TRIAL_SEED)
        keras.utils.set_random_seed(TRIAL_SEED)
        tf.random.set_global_generator(tf.random.Generator.from_seed(TRIAL_SEED))

    base, det = interleave(timed(by_hand),
                           timed(lambda: shell.run_line_magic("det_seed", SEED_LINE)),
                           pairs, warmups)
    return Row(
        "seed", f"%det_seed {SEED_LINE} (NumPy, TF, Keras imported)",
        "by hand: random, NumPy, keras.utils.set_random_seed, TF global generator", "s",
        "candidate / baseline", base, det, warmups, Goal("<=", 1.5),
        note="in one process; TF's runtime started, single-threaded",
    )


def fingerprint_row(size: int, pairs: int, warmups: int) -> Row:
    """det_nb's fingerprint of a float64 array against NumPy's sum of it."""
    import numpy as np

    from det_nb.fingerprint import fingerprint

    array = np.random.default_rng(0).random(size // 8)
    base, det = interleave(timed(array.sum), timed(lambda: fingerprint(array)), pairs, warmups)
    gb = size / 1e9
    return Row(
        "fingerprint", f"%%det_check hashing (det_nb.fingerprint) of a {size // MiB} MiB "
        "float64 array", "NumPy arr.sum() over the same array (memory-read bound)", "s",
        "baseline / candidate", base, det, warmups, Goal(">=", 0.6),
        note=(f"ratio = sum time / hash time (speed relative to sum); medians "
              f"{gb / median(det):.1f} GB/s hashed, {gb / median(base):.1f} GB/s summed"),
    )


def resnet18_sized() -> Any:
    """A torch model of ResNet-18's layers and size (11.7 M parameters, 122 tensors in its
    state_dict), built from torch.nn layers: torchvision is not a dependency."""
    from torch import nn

    def block(channels_in: int, channels: int, stride: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(), nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels))

    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    channels_in = 64
    for channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [block(channels_in, channels, stride), block(channels, channels, 1)]
        if stride != 1:  # the shortcut's projection
            layers.append(nn.Sequential(nn.Conv2d(channels_in, channels, 1, stride, bias=False),
                                        nn.BatchNorm2d(channels)))
        channels_in = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers)


def torch_fingerprint_row(pairs: int, warmups: int) -> Row:
    """det_nb's fingerprint of a ResNet-18-sized model's ``state_dict()`` (issue 16's row)
    against summing every parameter with torch; the whole module's fingerprint (what
    ``%%det_check`` hashes for a model: its state_dict, its layers' attributes and modes),
    timed in the same pairs, is a fact of the row."""
    import torch

    from det_nb.fingerprint import fingerprint

    model = resnet18_sized()
    parameters = list(model.parameters())
    count = sum(p.numel() for p in parameters)

    def total() -> object:
        with torch.no_grad():
            return sum(p.sum() for p in parameters)

    module_times: list[float] = []

    def hashed() -> float:
        """Seconds for the state_dict's fingerprint; then the module's, noted apart."""
        elapsed = timed(lambda: fingerprint(model.state_dict()))()
        module_times.append(timed(lambda: fingerprint(model))())
        return elapsed

    base, det = interleave(timed(total), hashed, pairs, warmups)
    megabytes = sum(t.nbytes for t in model.state_dict().values()) / 1e6
    return Row(
        "fingerprint (torch model)",
        f"det_nb.fingerprint(model.state_dict()) of a ResNet-18-sized torch model "
        f"({count / 1e6:.1f} M parameters, {megabytes:.0f} MB)",
        "sum(p.sum() for p in model.parameters()) in torch", "s", "baseline / candidate",
        base, det, warmups, Goal(">=", 0.9),
        note=(f"ratio = sum time / hash time; torch sums with {torch.get_num_threads()} "
              f"thread(s), det_nb hashes the tensors in up to 4 threads; medians "
              f"{median(det) * 1000:.1f} ms hashed, {median(base) * 1000:.1f} ms summed; the "
              f"whole module as %%det_check hashes it (state_dict, layers' attributes and "
              f"modes): {median(module_times) * 1000:.1f} ms"),
    )


def check_row(shell: InteractiveShell, label: str, cell: str, about: str, pairs: int,
              warmups: int) -> Row:
    """``%%det_check`` (2 runs) of ``cell`` against two plain runs of it."""
    verdicts: list[str] = []

    def plain() -> None:
        run(shell, cell)
        run(shell, cell)

    def checked() -> None:
        verdicts.append(run(shell, "%%det_check\n" + cell).splitlines()[0])

    base, det = interleave(timed(plain), timed(checked), pairs, warmups)
    return Row(
        f"check ({label})", f"%%det_check (2 runs) of {about}", "two plain runs of the cell",
        "s", "candidate / baseline", base, det, warmups, Goal("<=", 1.1),
        facts={"verdict deterministic": all(v.startswith("deterministic") for v in verdicts)},
        note=f"verdict: {verdicts[-1]}",
    )


def measure(quick: bool) -> list[dict[str, Any]]:
    """Every row of this process, as JSON."""
    shell = start_shell()
    size = MiB if quick else 512 * MiB
    keras_sizes = ({"samples": 256, "features": 8, "units": 8, "epochs": 1} if quick
                   else {"samples": 4096, "features": 32, "units": 128, "epochs": 2})
    svd_n = 40 if quick else 1200
    rows = [seed_row(shell, *((3, 1) if quick else (40, 5)))]
    fingerprint = fingerprint_row(size, *((2, 1) if quick else (10, 2)))
    rows.append(fingerprint)
    rows.append(torch_fingerprint_row(*((2, 1) if quick else (30, 5))))
    run(shell, KERAS_DATA.format(**keras_sizes))
    check_pairs = (1, 0) if quick else (7, 1)
    rows.append(check_row(
        shell, "keras", KERAS_CELL.format(**keras_sizes),
        f"a Keras MLP with Dropout built, compiled and fit for {keras_sizes['epochs']} "
        f"epoch(s) on {keras_sizes['samples']}x{keras_sizes['features']} floats",
        *check_pairs))
    rows.append(check_row(shell, "svd", SVD_CELL.format(n=svd_n),
                          f"np.linalg.svd of a {svd_n}x{svd_n} normal matrix", *check_pairs))
    hash_ms = median(fingerprint.candidate_values) * 1000 * (512 * MiB / size)
    for row in rows[-2:]:
        row.note += (f"; a cheap cell that produces a big array pays for hashing: about "
                     f"{hash_ms:.0f} ms per 512 MiB produced, per run (row fingerprint)")
    return [row.to_json() for row in rows]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats")
    emit(measure(parser.parse_args().quick))
