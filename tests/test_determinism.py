"""Pure checks and values the report and %%det_check rest on, each pinned branch by branch."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from det_nb import determinism
from det_nb.fingerprint import Fingerprint, fingerprint
from det_nb.lineage import Lineage, cell_key
from det_nb.status import Check, Report

GPUS = ["tensorflow /physical_device:GPU:0", "torch cuda:0"]


def test_no_gpu_is_ok_whatever_deterministic_ops_says() -> None:
    for deterministic_ops in (False, True, "warn"):
        assert determinism.gpu_check([], deterministic_ops, waiting=[]) == Check(
            "gpus", "ok", "none visible to the imported frameworks: CPU only")


def test_gpus_with_deterministic_ops_are_ok_and_named() -> None:
    assert determinism.gpu_check(GPUS, deterministic_ops=True, waiting=[]) == Check(
        "gpus", "ok", "tensorflow /physical_device:GPU:0, torch cuda:0; deterministic ops are on")
    assert determinism.gpu_check(["jax cuda:0"], "warn", waiting=[]) == Check(
        "gpus", "ok", "jax cuda:0; deterministic ops are on (warn mode)")


@pytest.mark.parametrize("gpus", [GPUS, ["jax cuda:0"]])
def test_gpus_without_deterministic_ops_warn_and_break_the_verdict(gpus: list[str]) -> None:
    """JAX on cuda:0 once passed as "CPU only" and "reproducible on this machine"."""
    check = determinism.gpu_check(gpus, deterministic_ops=False, waiting=[])
    assert (check.state, check.caveat) == ("warn", False)
    assert check.detail.startswith(f"{', '.join(gpus)}: ")
    assert "different floats run to run" in check.detail
    assert check.fix == "%det_seed SEED --deterministic-ops"
    assert Report(Lineage(42), (check,)).verdict().startswith("NOT reproducible: ")


def _torch(cuda: bool, deterministic_algorithms: bool, benchmark: bool,
           deterministic: bool) -> SimpleNamespace:
    """What the cuDNN line reads of torch, for a machine with CUDA (not this one)."""
    return SimpleNamespace(
        backends=SimpleNamespace(cudnn=SimpleNamespace(benchmark=benchmark,
                                                       deterministic=deterministic)),
        cuda=SimpleNamespace(is_available=lambda: cuda),
        are_deterministic_algorithms_enabled=lambda: deterministic_algorithms,
    )


@pytest.mark.parametrize(("algorithms", "benchmark", "deterministic", "state", "caveat", "says"), [
    (True, False, False, "ok", False, "deterministic algorithms keep cuDNN to deterministic "
     "convolution algorithms (whatever cudnn.deterministic says), chosen without timing"),
    (True, True, False, "warn", False, "benchmark picks among them by timing"),
    (False, False, True, "ok", False, "cuDNN convolutions are deterministic (other CUDA ops "
     "are not: deterministic ops are off)"),
    (False, True, True, "off", False, "may pick non-deterministic convolution algorithms, by "
     "timing"),
    (False, False, False, "off", False, "may pick non-deterministic convolution algorithms"),
])
def test_the_cudnn_line_on_a_cuda_machine(algorithms, benchmark, deterministic, state, caveat,
                                          says) -> None:
    check = determinism.cudnn_check(_torch(True, algorithms, benchmark, deterministic))
    assert (check.name, check.state, check.caveat) == ("torch cudnn", state, caveat)
    assert check.detail.startswith(f"benchmark {benchmark}, deterministic {deterministic}")
    assert says in check.detail
    if benchmark:
        assert "torch.backends.cudnn.benchmark = False" in check.fix


@pytest.mark.parametrize("value", [True, False, "warn"])
def test_deterministic_ops_takes_true_false_or_warn(value: object) -> None:
    assert determinism.validate_deterministic_ops(value) is value
    assert determinism.Settings(deterministic_ops=value).deterministic_ops is value


@pytest.mark.parametrize("value", ["yes", 1, 0, "WARN", "strict", None, b"warn", ["warn"]])
def test_deterministic_ops_refuses_anything_else_in_one_line(value: object) -> None:
    message = (r"^deterministic_ops must be True \(ops without a deterministic kernel raise\), "
               r"'warn' \(they run and are listed\) or False, got ")
    with pytest.raises(ValueError, match=message):
        determinism.validate_deterministic_ops(value)
    with pytest.raises(ValueError, match=message):
        determinism.Settings(deterministic_ops=value)


@pytest.mark.parametrize(("value", "expected"), [(None, None), (1, 1), (1024, 1024), ("4", 4)])
def test_thread_counts_in_range_are_taken(value: object, expected: int | None) -> None:
    assert determinism.validate_threads(value) == expected


@pytest.mark.parametrize("value", [0, 1025, -1, 2.0, True, "4_2", "٤"])
def test_thread_counts_out_of_range_say_the_range_and_how_to_leave_tf_alone(value) -> None:
    with pytest.raises(ValueError, match=r"^threads must be an integer in \[1, 1024\] "
                       r"\(or --no-single-thread to leave the libraries' thread pools alone\)"):
        determinism.validate_threads(value, "--no-single-thread")


@pytest.mark.parametrize("value", ["yes", 1, None, "False"])
def test_flags_take_only_booleans(value: object) -> None:
    with pytest.raises(ValueError, match=r"^per_cell must be True or False, got "):
        determinism.validate_flag(value, "per_cell")
    assert determinism.validate_flag(False, "per_cell") is False


# -- cell keys: what front ends send differently must not change the seed -----------------


def test_crlf_line_endings_give_the_same_cell_key_and_seed() -> None:
    assert cell_key("a = 1\r\nb = 2") == cell_key("a = 1\nb = 2")
    assert Lineage(42, 3).cell_seed("a = 1\r\nb = 2") == Lineage(42, 3).cell_seed("a = 1\nb = 2")


def test_trailing_whitespace_is_ignored_but_every_other_change_counts() -> None:
    assert cell_key("x = 1\n\n  ") == cell_key("x = 1")
    keys = {cell_key(text) for text in ("x = 1", "x = 2", " x = 1", "x = 1\r\ny = 1",
                                        "x = 1\ny = 1", "x = 1\ry = 1")}
    assert len(keys) == 5  # only the CRLF and LF spellings of one cell coincide
    lineage = Lineage(42, 3)
    assert lineage.cell_seed("x = 1") != lineage.cell_seed("x = 2")
    assert lineage.cell_seed("x = 1") != Lineage(42, 4).cell_seed("x = 1")


def test_cell_key_is_the_first_8_bytes_of_sha256_little_endian() -> None:
    digest = hashlib.sha256(b"a\nb").digest()
    assert cell_key("a\r\nb") == int.from_bytes(digest[:8], "little")


# -- torch tensors, fingerprinted for real -------------------------------------------------


def test_torch_tensors_from_equal_seeds_fingerprint_equal_and_one_element_differs() -> None:
    torch = pytest.importorskip("torch")

    def drawn(seed: int):
        torch.manual_seed(seed)
        return torch.randn(64, 8)

    first, again, other = drawn(5), drawn(5), drawn(6)
    assert isinstance(fingerprint(first), Fingerprint)
    assert fingerprint(first) == fingerprint(again)
    assert fingerprint(first) != fingerprint(other)
    changed = again.clone()
    changed[17, 3] += 1e-6
    assert fingerprint(changed) != fingerprint(first)
    assert fingerprint(first.double()) != fingerprint(first)  # dtype counts, not just values
    assert fingerprint(first.reshape(8, 64)) != fingerprint(first)  # and shape
    assert fingerprint(first).summary == "torch.Tensor float32 (64, 8)"
