"""torch ops without a deterministic kernel, on the CPU: warn mode runs and counts them,
strict mode raises and the status names them; the cuDNN line.

``Tensor.put_`` (accumulate=False) calls ``at::Context::alertNotDeterministic("put_")`` on
every device, the C++ function CUDA kernels call (torch 2.13 has no Python binding for it,
``torch._C._alert_not_deterministic``); ``torch._prims_common.alert_not_deterministic(name)``
raises or warns with torch's own words for any op name, such as the CUDA pooling backward
that ResNet-style models need.
"""

from __future__ import annotations

import json

import pytest
from conftest import hard_reset, prng_states, run_python, start_python

import det_nb
from det_nb import entropy_audit, nondeterministic_ops
from det_nb.session import get_session

torch = pytest.importorskip("torch")

POOL = "adaptive_avg_pool2d_backward_cuda"
PUT = "t.put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))"
POOL_FIX = ("replace nn.AdaptiveAvgPool2d by a fixed nn.AvgPool2d, or for a 1x1 output by "
            "x.mean(dim=(2, 3), keepdim=True)")
ANY_FIX = "replace it by an op with a deterministic kernel, or run it on the CPU"
RAN = ("ops without a deterministic kernel ran in warn mode in this kernel (since it started or "
       "its latest hard %reset), so values computed with them can differ run to run")
THEN = ("then %reset -f (or restart the kernel) and run the cells again; or accept it (the run "
        "stays NOT reproducible)")


def test_warn_mode_runs_counts_every_call_shows_each_op_once_and_breaks_the_verdict() -> None:
    result = run_python(f"""
        import json, warnings
        import det_nb
        det_nb.seed(42, deterministic_ops="warn")
        import torch
        from torch._prims_common import alert_not_deterministic
        t = torch.zeros(3)
        for _ in range(5):
            {PUT}
        for _ in range(2):
            alert_not_deterministic("{POOL}")
        report = det_nb.status()
        check = report.check("torch deterministic algorithms")
        print(json.dumps({{
            "flags": [torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled()],
            "t": t.tolist(), "check": [check.state, check.detail, check.fix, check.caveat],
            "verdict": report.verdict(), "record": det_nb.record()["nondeterministic_ops"]}}))
    """)
    assert result["flags"] == [True, True]
    assert result["t"] == [2.0, 0.0, 0.0]  # the op ran
    assert result["check"] == [
        "warn", f"on (warn mode): {RAN}: put_ 5 times, {POOL} 2 times",
        f"for put_: {ANY_FIX}; for {POOL}: {POOL_FIX}, {THEN}", False,
    ]
    assert result["verdict"].startswith("NOT reproducible: ")
    assert result["record"] == {"ran": {"put_": 5, POOL: 2}, "raised": []}


def test_warn_mode_shows_the_first_warning_of_each_op_only() -> None:
    code = f"""
        import det_nb
        det_nb.seed(42, deterministic_ops="warn")
        import torch
        from torch._prims_common import alert_not_deterministic
        t = torch.zeros(3)
        for _ in range(4):
            {PUT}
            alert_not_deterministic("{POOL}")
        det_nb.seed(7, deterministic_ops="warn")  # re-seeding keeps the list: not shown again
        {PUT}
        print(det_nb.record()["nondeterministic_ops"]["ran"])
    """
    process = start_python(code)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    warned = [line for line in err.splitlines() if "does not have a deterministic" in line]
    assert [line.split("UserWarning: ")[1].split(" does not")[0] for line in warned] == [
        "put_", POOL]
    assert out.strip() == str({"put_": 5, POOL: 4})


def test_strict_mode_raises_and_the_status_names_the_op_and_both_ways_out(shell) -> None:
    shell.run_line_magic("det_seed", "42 --deterministic-ops --quiet")
    try:
        result = shell.run_cell(f"import torch\nt = torch.zeros(3)\n{PUT}")
        assert isinstance(result.error_in_exec, RuntimeError)
        assert str(result.error_in_exec).startswith(
            "put_ does not have a deterministic implementation, but you set "
            "'torch.use_deterministic_algorithms(True)'")
        report = det_nb.status()
        check = report.check("torch deterministic algorithms")
        assert (check.state, check.caveat) == ("warn", False)
        assert check.detail == ("on (strict): no deterministic kernel for put_, which raised "
                                "and stopped a cell: the run is incomplete")
        assert check.fix == ("%det_seed SEED --deterministic-ops=warn runs it and lists it (the "
                             f"run is then NOT reproducible), or for put_: {ANY_FIX}")
        assert report.verdict().startswith("NOT reproducible: ")
        assert det_nb.record()["nondeterministic_ops"] == {"ran": {}, "raised": ["put_"]}
        shell.run_cell("t.sum()")  # a later cell that works keeps the note until re-seeding
        assert det_nb.status().check("torch deterministic algorithms").state == "warn"
        shell.run_line_magic("det_seed", "42 --deterministic-ops=warn --quiet")
        check = det_nb.status().check("torch deterministic algorithms")
        assert (check.state, check.detail) == (
            "ok", "on (warn mode): ops without a deterministic kernel run and are listed here; "
            "none ran since the kernel started or its latest hard %reset")
    finally:
        shell.run_line_magic("det_seed", "42 --quiet")
    assert not torch.are_deterministic_algorithms_enabled()
    assert not nondeterministic_ops.counting()


def test_a_pool_backward_that_raised_gets_the_layer_to_replace() -> None:
    from torch._prims_common import alert_not_deterministic

    session = get_session()
    session.seed(42, deterministic_ops=True)
    try:
        with pytest.raises(RuntimeError) as error:
            alert_not_deterministic(POOL)
        wrapped = ValueError("training failed")
        wrapped.__cause__ = error.value
        assert nondeterministic_ops.note_error(wrapped) == POOL  # found among the causes
        assert nondeterministic_ops.note_error(ValueError("other")) is None
        check = session.status().check("torch deterministic algorithms")
        assert check.fix.endswith(f"or for {POOL}: {POOL_FIX}")
    finally:
        session.seed(42)


def test_every_reseeding_keeps_the_list_and_a_hard_reset_clears_it(shell) -> None:
    """Values computed with those ops stay in the namespace whatever is seeded next (as the
    entropy audit's records do); a hard %reset empties it, and forgets them."""
    entropy_audit.install(shell)  # its wrapper of shell.reset (an earlier test may unload)
    assert not hasattr(shell.reset.__wrapped__, "__wrapped__")  # one wrapper, the audit's
    shell.run_line_magic("det_seed", "42 --deterministic-ops=warn --per-cell --quiet")
    try:
        with pytest.warns(UserWarning, match=r"^put_ does not have a deterministic") as shown:
            assert shell.run_cell(f"import torch\nt = torch.zeros(3)\n{PUT}").success
            assert shell.run_cell(f"{PUT}\n{PUT}").success
        assert len(shown) == 1  # counted three times, shown once
        det_nb.reseed()
        shell.run_line_magic("det_seed", "7 --deterministic-ops=warn --quiet")
        assert nondeterministic_ops.ran() == {"put_": 3}
        shell.run_line_magic("det_seed", "42 --quiet")  # warn mode off; t is still there
        report = det_nb.status()
        check = report.check("torch deterministic algorithms")
        assert (check.state, check.detail, check.fix) == (
            "warn", f"off now: {RAN}: put_ 3 times", f"for put_: {ANY_FIX}, {THEN}")
        assert report.verdict().startswith("NOT reproducible: ")
        assert det_nb.record()["nondeterministic_ops"] == {"ran": {"put_": 3}, "raised": []}
        shell.run_line_magic("reset", "-s -f")  # a soft reset: the user's names only
        assert nondeterministic_ops.ran() == {"put_": 3}
        hard_reset(shell)
        assert nondeterministic_ops.ran() == {}
        assert det_nb.status().check("torch deterministic algorithms").state == "off"
        shell.run_line_magic("det_seed", "42 --deterministic-ops=warn --quiet")
        with pytest.warns(UserWarning, match=r"^put_ does not have a deterministic"):
            assert shell.run_cell(f"import torch\nt = torch.zeros(3)\n{PUT}").success
        assert nondeterministic_ops.ran() == {"put_": 1}  # shown and counted afresh
    finally:
        shell.run_line_magic("det_seed", "42 --quiet")


def test_warn_only_set_outside_det_nb_is_not_passed_off_as_listed(shell) -> None:
    shell.run_line_magic("det_seed", "42 --quiet")
    # What torch.use_deterministic_algorithms(True, warn_only=True) sets; that function also
    # imports triton, whose LLVM aborts the process next to TensorFlow's (DESIGN.md).
    torch._C._set_deterministic_algorithms(True, warn_only=True)
    try:
        check = det_nb.status().check("torch deterministic algorithms")
        assert (check.state, check.detail) == (
            "warn", "on with warn_only set outside det_nb: ops without a deterministic kernel "
            "run and are not listed here")
    finally:
        torch._C._set_deterministic_algorithms(False)


@pytest.mark.parametrize("value", ["yes", 1, "WARN", None, "strict"])
def test_a_bad_mode_is_one_line_and_changes_nothing(value: object) -> None:
    det_nb.seed(42, trial=3)
    before = prng_states()
    with pytest.raises(ValueError) as error:
        det_nb.seed(7, deterministic_ops=value)
    assert str(error.value) == (
        "deterministic_ops must be True (ops without a deterministic kernel raise), 'warn' "
        f"(they run and are listed) or False, got {value!r}")
    assert prng_states() == before


@pytest.mark.parametrize(("benchmark", "deterministic"), [(False, False), (True, True)])
def test_the_cudnn_line_reads_both_flags_on_the_cpu(shell, benchmark: bool,
                                                    deterministic: bool) -> None:
    shell.run_line_magic("det_seed", "42 --quiet")
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, deterministic
    try:
        check = det_nb.status().check("torch cudnn")
    finally:
        torch.backends.cudnn.benchmark = torch.backends.cudnn.deterministic = False
    values = f"benchmark {benchmark}, deterministic {deterministic}"
    if not benchmark:
        assert (check.state, check.detail) == (
            "ok", f"{values}; no CUDA device here: cuDNN runs nothing")
    else:  # harmless here, but it would pick algorithms by timing on a GPU: a caveat
        assert (check.state, check.caveat, check.fix) == (
            "warn", True, "torch.backends.cudnn.benchmark = False")
        assert check.detail.startswith(f"{values}; no CUDA device here, but on a GPU")


def test_the_record_of_a_warn_mode_run_loads_back(tmp_path) -> None:
    from det_nb import run_record

    session = get_session()
    session.seed(42, trial=3, deterministic_ops="warn")
    try:
        with pytest.warns(UserWarning, match=r"^put_ does not have a deterministic"):
            torch.zeros(3).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
        path = run_record.save(session, tmp_path / "run.json")
        data = json.loads(path.read_text())
        assert data["settings"]["deterministic_ops"] == "warn"
        assert data["nondeterministic_ops"] == {"ran": {"put_": 1}, "raised": []}
        assert run_record.load(path).settings.deterministic_ops == "warn"
        data["settings"]["deterministic_ops"] = "maybe"
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match="deterministic_ops must be True"):
            run_record.load(path)
        data["settings"]["deterministic_ops"] = "warn"
        data["nondeterministic_ops"]["ran"]["put_"] = "1"
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match=r"nondeterministic_ops\.ran\['put_'\] must be an "
                                             "integer"):
            run_record.load(path)
    finally:
        session.seed(42)
