"""Saving and restoring PRNG state: draw k, save, draw m, restore, draw m again: equal."""

from __future__ import annotations

import io
import json
import os
import random
import re
import stat
import struct
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import test_files
from conftest import run_python
from numpy.lib import format as npy

from det_nb import state
from det_nb.session import Session

tf = pytest.importorskip("tensorflow")  # imported before any Session: no import hooks
keras = pytest.importorskip("keras")
fifo, unix_socket = test_files.fifo, test_files.unix_socket  # fixtures shared with test_files
promptly = test_files.promptly


@pytest.fixture
def session() -> Iterator[Session]:
    """A session of its own, seeded, with det_nb.rng() made."""
    session = Session()
    session.seed(42, 3)
    session.rng()
    yield session
    session.close()


DRAWS: dict[str, Callable[[Session], list[float]]] = {
    "python random": lambda s: [random.random() for _ in range(3)] + [random.gauss(0, 1)],
    "numpy": lambda s: [*np.random.rand(3), np.random.standard_normal()],
    "tensorflow global generator": lambda s: tf.random.get_global_generator()
    .normal([3]).numpy().tolist(),
    "keras global SeedGenerator": lambda s: keras.random.normal([3]).numpy().tolist(),
    "det_nb.rng()": lambda s: s.rng().random(3).tolist(),
}


@pytest.mark.parametrize("source", DRAWS)
def test_restore_repeats_the_draws_made_after_saving(
    source: str, session: Session, tmp_path: Path
) -> None:
    draw = DRAWS[source]
    for _ in range(2):  # k draws before saving
        draw(session)
    state.save(session, tmp_path / "s.npz")
    after_save = [draw(session) for _ in range(3)]  # m draws
    lines = state.restore(session, tmp_path / "s.npz")
    assert [draw(session) for _ in range(3)] == after_save
    assert any(line.startswith(("python random:", "numpy:", "tensorflow:", "keras:",
                                "det_nb.rng():")) for line in lines)


def test_every_source_is_restored_at_once(session: Session, tmp_path: Path) -> None:
    for draw in DRAWS.values():
        draw(session)
    state.save(session, tmp_path / "s.npz")
    after_save = [draw(session) for draw in DRAWS.values()]
    lines = state.restore(session, tmp_path / "s.npz")
    assert [draw(session) for draw in DRAWS.values()] == after_save
    torch = ["torch"] if "torch" in sys.modules else []  # imported by another test
    assert [line.split(":")[0] for line in lines] == [
        "python random", "numpy", "tensorflow", "keras", *torch, "det_nb.rng()",
    ]


def test_torch_cpu_and_cuda_generators_are_restored(session: Session, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    session.seed(42, 3)  # torch is imported now: seed it too
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

    def draw() -> list[float]:
        return [value for device in devices for value in torch.rand(3, device=device).tolist()]

    draw()
    state.save(session, tmp_path / "s.npz")
    after_save = [draw() for _ in range(3)]
    lines = state.restore(session, tmp_path / "s.npz")
    assert [draw() for _ in range(3)] == after_save
    assert any(line.startswith("torch: torch.set_rng_state") for line in lines)


RESUME = """
import json, random
import numpy as np, tensorflow as tf
import det_nb
from det_nb import state
det_nb.seed(42, trial=3)
session = det_nb.get_session()
def draws():
    return [random.random(), float(np.random.rand()),
            float(tf.random.get_global_generator().normal([])), float(session.rng().random())]
"""


def test_a_fresh_kernel_resumes_with_the_draws_it_would_have_made(tmp_path: Path) -> None:
    """Pause in one interpreter, resume in another: the real use."""
    path = str(tmp_path / "paused.npz")
    paused = run_python(RESUME + f"""
draws()
state.save(session, {path!r})
print(json.dumps(draws()))
""")
    resumed = run_python(RESUME + f"""
restored = state.restore(session, {path!r})
print(json.dumps({{"restored": restored, "draws": draws()}}))
""")
    assert resumed["draws"] == paused
    assert [line.split(":")[0] for line in resumed["restored"]] == [
        "python random", "numpy", "tensorflow", "keras", "det_nb.rng()",  # TF imports Keras
    ]


# -- what cannot be restored (measured; README and status say so) -------------------


OP_LEVEL = {
    "tf.random.normal": lambda: tf.random.normal([4]).numpy().tolist(),
    "tf.random.uniform": lambda: tf.random.uniform([4]).numpy().tolist(),
    "tf.random.shuffle": lambda: tf.random.shuffle(tf.range(10)).numpy().tolist(),
    "tf.data shuffle": lambda: list(tf.data.Dataset.range(10).shuffle(10).as_numpy_iterator()),
}


@pytest.mark.parametrize("op", OP_LEVEL)
def test_tf_op_level_random_ops_do_not_repeat_after_restore(
    op: str, session: Session, tmp_path: Path
) -> None:
    OP_LEVEL[op]()
    state.save(session, tmp_path / "s.npz")
    first = OP_LEVEL[op]()
    state.restore(session, tmp_path / "s.npz")
    assert OP_LEVEL[op]() != first


def test_keras_layer_seed_generators_are_neither_restored_nor_kept_by_save_weights(
    session: Session, tmp_path: Path
) -> None:
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dropout(0.5)])
    ones = np.ones((1, 8), "float32")
    model(ones, training=True)
    state.save(session, tmp_path / "s.npz")
    model.save_weights(tmp_path / "m.weights.h5")
    first = model(ones, training=True).numpy().tolist()
    state.restore(session, tmp_path / "s.npz")
    model.load_weights(tmp_path / "m.weights.h5")
    assert model(ones, training=True).numpy().tolist() != first


def test_limits_and_check_name_what_cannot_be_restored(session: Session) -> None:
    limits = state.limits(session)
    assert any(line.startswith("TF op-level random ops") for line in limits)
    assert any(line.startswith("Keras layers' SeedGenerators") for line in limits)
    assert "generators you make yourself" in limits[-1]
    check = state.status_check(session)
    assert check.state == "ok"
    assert "TF op-level random ops" in check.detail
    assert "Keras layers' SeedGenerators" in check.detail


# -- bad and mismatched files change nothing ----------------------------------------


def snapshot(session: Session) -> dict[str, object]:
    """Every restorable state, as comparable plain values."""
    states: dict[str, object] = {"rng": session.rng_state()}
    for source in session.sources:
        if source.loaded() is not None and source.get_state() is not None:
            states[source.name] = {k: np.asarray(v).tobytes()  # bytes: NaN equals itself
                                   for k, v in source.get_state().items()}
    return states


def rewrite(path: Path, change: Callable[[dict, dict], None]) -> None:
    """Load a saved state file's arrays and metadata, ``change`` them, save again."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(arrays, meta)
    np.savez(path, **arrays, meta=np.array(json.dumps(meta)))


def _set(mapping: dict, key: str, value: object) -> None:
    mapping[key] = value


def _drop_meta(path: Path) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files if name != "meta"}
    np.savez(path, **arrays)


def _add_text_member(path: Path) -> None:
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "x")


def _declare_huge_shape(path: Path) -> None:
    """Replace numpy's keys by a small member whose header declares 4 TB of uint32."""
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<u4", "fortran_order": False,
                                        "shape": (10**12,)})
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["numpy.keys.npy"] = header.getvalue() + b"\0" * 64
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _central_directory(raw: bytes) -> int:
    """Where a zip archive's central directory (its first entry) starts."""
    return struct.unpack_from("<I", raw, raw.rindex(b"PK\x05\x06") + 16)[0]


def _zip_field(flag: int = 0, method: int | None = None) -> Callable[[Path], None]:
    """A spoiler setting zip flag bits or the compression method of the first member,
    in its local header and its central directory entry alike."""
    def change(path: Path) -> None:
        raw = bytearray(path.read_bytes())
        central = _central_directory(bytes(raw))  # the first member's local header is at 0
        for flags_at, method_at in ((6, 8), (central + 8, central + 10)):
            struct.pack_into("<H", raw, flags_at, struct.unpack_from("<H", raw, flags_at)[0] | flag)
            if method is not None:
                struct.pack_into("<H", raw, method_at, method)
        path.write_bytes(bytes(raw))
    return change


def _corrupt_deflate_stream(path: Path) -> None:
    """Save the file compressed (as np.savez_compressed does), then garble the first
    member's compressed bytes."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    np.savez_compressed(path, **arrays)
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", raw, 26)
    start = 30 + name_length + extra_length
    raw[start:start + 40] = bytes(byte ^ 0xFF for byte in raw[start:start + 40])
    path.write_bytes(bytes(raw))


def _surrogate_in_meta(path: Path) -> None:
    """Store the metadata text with a raw lone surrogate (NumPy text arrays can hold one)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta["format"] = "\ud800"
    np.savez(path, **arrays, meta=np.array(json.dumps(meta, ensure_ascii=False)))


def _set_rng(field: str, value: object) -> Callable[[Path], None]:
    """A spoiler setting one field of det_nb.rng()'s PCG64 state ("state.inc": nested)."""
    def change(arrays: dict, meta: dict) -> None:
        target = meta["rng"]
        *outer, last = field.split(".")
        for key in outer:
            target = target[key]
        target[last] = value
    return lambda p: rewrite(p, change)


def _zero_key(arrays: dict, name: str) -> None:
    words = arrays[name].copy()
    words[:624] = 0
    arrays[name] = words


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "text": (lambda p: p.write_text("not an archive"), "not an .npz archive"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-100]), "not an .npz archive"),
    "oversized": (lambda p: p.write_bytes(b"\0" * 1_000_001), "over 1000000 bytes"),
    "pickled object": (
        lambda p: rewrite(p, lambda a, m: _set(a, "numpy.keys", np.array([{}], dtype=object))),
        "holds objects, which det_nb never saves",
    ),
    "not npy member": (_add_text_member, "not NumPy arrays"),
    "no metadata": (_drop_meta, "no det_nb metadata"),
    "other format": (lambda p: rewrite(p, lambda a, m: _set(m, "format", "x")),
                     "not a det_nb state file"),
    "wrong version": (lambda p: rewrite(p, lambda a, m: _set(m, "version", 2)),
                      "has version 2; this det_nb reads version 1"),
    "bad metadata field": (lambda p: rewrite(p, lambda a, m: _set(m, "sources", [])),
                           "metadata.sources must be an object"),
    "unknown source": (
        lambda p: rewrite(p, lambda a, m: m["sources"].update({"mystery": []})),
        "which det_nb does not know",
    ),
    "torch state": (  # all zeros: torch itself refuses it
        lambda p: rewrite(p, lambda a, m: (m["sources"].update({"torch": ["cpu"]}),
                                           _set(a, "torch.cpu", np.zeros(5056, np.uint8)))),
        "torch is not imported here",
    ),
    "missing array": (lambda p: rewrite(p, lambda a, m: a.pop("numpy.keys")),
                      "lacks numpy's arrays ['keys']"),
    "extra array": (lambda p: rewrite(p, lambda a, m: _set(a, "stray", np.zeros(2))),
                    "no source claims: ['stray']"),
    "wrong shape": (lambda p: rewrite(p, lambda a, m: _set(a, "python_random.mt",
                                                           np.zeros(3, np.uint32))),
                    "python random: array 'mt' is uint32(3,)"),
    "wrong dtype": (lambda p: rewrite(p, lambda a, m: _set(a, "numpy.keys",
                                                           a["numpy.keys"].astype(np.int64))),
                    "numpy: array 'keys' is int64(624,)"),
    "numpy position past the end": (
        lambda p: rewrite(p, lambda a, m: _set(a, "numpy.pos", np.array(625, np.int64))),
        "position 625 is not in [0, 624]",
    ),
    "python index past the end": (
        lambda p: rewrite(p, lambda a, m: _set(
            a, "python_random.mt", np.append(a["python_random.mt"][:-1], np.uint32(999)))),
        "index 999 is past 624",
    ),
    "tf algorithm": (
        lambda p: rewrite(p, lambda a, m: _set(a, "tensorflow.algorithm", np.array(2))),
        "RNG algorithm 2, this one uses 1",
    ),
    "keras shape": (
        lambda p: rewrite(p, lambda a, m: (m["sources"].update({"keras": ["global"]}),
                                           _set(a, "keras.global", np.zeros(3, np.int64)))),
        "keras needs 2 integers",
    ),
    "numpy has_gauss out of range": (
        lambda p: rewrite(p, lambda a, m: _set(a, "numpy.has_gauss", np.array(2**40, np.int64))),
        "numpy: has_gauss is 1099511627776, must be 0 or 1",
    ),
    "numpy all-zero key": (lambda p: rewrite(p, lambda a, m: _zero_key(a, "numpy.keys")),
                           "numpy: the Mersenne Twister key is all zeros"),
    "numpy infinite cached gaussian": (
        lambda p: rewrite(p, lambda a, m: _set(a, "numpy.cached_gaussian", np.array(np.inf))),
        "numpy: cached Gaussian inf is not finite",
    ),
    "python all-zero key": (lambda p: rewrite(p, lambda a, m: _zero_key(a, "python_random.mt")),
                            "python random: the Mersenne Twister key is all zeros"),
    "python infinite cached gaussian": (
        lambda p: rewrite(p, lambda a, m: _set(a, "python_random.gauss_next", np.array(-np.inf))),
        "python random: cached Gaussian -inf is not finite",
    ),
    "keras value outside its dtype": (
        lambda p: rewrite(p, lambda a, m: _set(a, "keras.global",
                                               np.array([2**63, 0], np.uint64))),
        "keras: the global SeedGenerator state holds 9223372036854775808, outside",
    ),
    "array listed twice": (
        lambda p: rewrite(p, lambda a, m: m["sources"]["numpy"].append("keys")),
        "lists numpy's arrays ['keys'] more than once",
    ),
    "huge declared shape": (_declare_huge_shape, "declares shape (1000000000000,) of uint32"),
    "encrypted member": (_zip_field(flag=0x1), "is encrypted, which NumPy never writes"),
    "strongly encrypted member": (_zip_field(flag=0x40), "is encrypted, which NumPy never"),
    "unknown compression method": (_zip_field(method=99),
                                   "uses zip compression method 99; NumPy writes only stored"),
    "patched data member": (_zip_field(flag=0x20), "is damaged: compressed patched data"),
    "corrupt deflate stream": (_corrupt_deflate_stream,
                               "is damaged: Error -3 while decompressing data"),
    "rng increment zero": (_set_rng("state.inc", 0), "state.inc must be odd"),
    "rng increment even": (_set_rng("state.inc", 2), "state.inc must be odd"),
    "rng state past 128 bits": (_set_rng("state.state", 2**128),
                                "state.state must be an integer in [0, 2**128 - 1]"),
    "rng negative increment": (_set_rng("state.inc", -1), "state.inc must be an integer"),
    "rng has_uint32 not a flag": (_set_rng("has_uint32", 2), "has_uint32 must be an integer"),
    "rng uinteger past 32 bits": (_set_rng("uinteger", 2**32), "uinteger must be an integer"),
    "rng increment as text": (_set_rng("state.inc", "3"), "state.inc must be an integer"),
    "metadata with a lone surrogate": (_surrogate_in_meta,
                                       "metadata is not valid Unicode text"),
    "bad rng state": (
        lambda p: rewrite(p, lambda a, m: _set(m, "rng", {"bit_generator": "MT19937"})),
        "bad det_nb.rng() state",
    ),
    "other lineage": (
        lambda p: rewrite(p, lambda a, m: _set(m["lineage"], "trial", 4)),
        "was saved under %det_seed 42 --trial 4, but this session runs",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_gets_one_line_and_changes_nothing(
    case: str, session: Session, tmp_path: Path
) -> None:
    path = tmp_path / "s.npz"
    keras.random.normal([1])  # a global Keras SeedGenerator exists
    state.save(session, path)
    spoil, message = BAD_FILES[case]
    if case == "torch state" and "torch" in sys.modules:
        message = "torch: bad CPU generator state"
    spoil(path)
    for draw in DRAWS.values():
        draw(session)
    before = snapshot(session)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        state.restore(session, path)
    assert "\n" not in str(error.value)
    assert str(error.value).count(repr(str(path))) == 1  # the file is named once
    assert snapshot(session) == before


def test_a_compressed_state_file_is_read(session: Session, tmp_path: Path) -> None:
    """np.savez_compressed's archives (deflated members) are .npz files too."""
    path = tmp_path / "s.npz"
    state.save(session, path)
    after_save = DRAWS["numpy"](session)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    np.savez_compressed(path, **arrays)
    state.restore(session, path)
    assert DRAWS["numpy"](session) == after_save


def test_missing_file_folder_and_unseeded_session(session: Session, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        state.restore(session, tmp_path / "nothing.npz")
    with pytest.raises(ValueError, match="is a folder"):
        state.restore(session, tmp_path)
    state.save(session, tmp_path / "s.npz")
    fresh = Session()
    with pytest.raises(ValueError, match=r"saved under %det_seed 42 --trial 3; run it first"):
        state.restore(fresh, tmp_path / "s.npz")
    with pytest.raises(ValueError, match="not seeded yet"):
        state.save(fresh, tmp_path / "t.npz")


def test_saving_is_atomic_and_refuses_a_missing_folder(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    path.write_text("old")
    assert state.save(session, path) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no temporary left
    assert np.load(path, allow_pickle=False).files
    with pytest.raises(ValueError, match="does not exist"):
        state.save(session, tmp_path / "missing" / "s.npz")


def test_what_the_file_lacks_is_left_and_said(tmp_path: Path) -> None:
    session = Session()
    session.seed(42, 3)
    state.save(session, tmp_path / "s.npz")  # det_nb.rng() not made yet
    session.rng().random()
    session.seed(42, 3, per_cell=True)
    lines = state.restore(session, tmp_path / "s.npz")
    assert "det_nb.rng(): not in the file (not made when saved), left as is" in lines
    assert lines[-1].startswith("per-cell seeding is on")
    session.close()


def test_no_pickle_anywhere_in_det_nb() -> None:
    package = Path(state.__file__).parent
    for source in package.rglob("*.py"):
        code = source.read_text()
        assert not re.search(r"import (c?pickle|dill|shelve|joblib)|\bpickle\.", code), source
        assert "allow_pickle=True" not in code, source


def test_an_out_of_range_numpy_value_leaves_python_random_as_it_was(
    session: Session, tmp_path: Path
) -> None:
    """Python random comes first in the file: it must not be put back when numpy fails."""
    path = tmp_path / "s.npz"
    state.save(session, path)
    rewrite(path, lambda a, m: _set(a, "numpy.has_gauss", np.array(2**40, np.int64)))
    random.random()  # python random moves on: a restore would move it back
    moved = random.getstate()
    with pytest.raises(ValueError, match="has_gauss is 1099511627776, must be 0 or 1"):
        state.restore(session, path)
    assert random.getstate() == moved


def test_a_source_refusing_its_state_midway_puts_back_those_restored_before(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.npz"
    state.save(session, path)
    for draw in DRAWS.values():
        draw(session)
    before = snapshot(session)
    numpy_source = next(s for s in session.sources if s.name == "numpy")

    calls = []

    def refuse_once(saved: dict) -> str:  # the file's state is refused, the old one taken
        calls.append(saved)
        if len(calls) == 1:
            raise RuntimeError("refused\nby the runtime")
        return type(numpy_source).set_state(numpy_source, saved)

    monkeypatch.setattr(numpy_source, "set_state", refuse_once)
    with pytest.raises(ValueError, match=r"restoring failed: RuntimeError: refused\\nby the "
                                         r"runtime; every state is as it was$") as error:
        state.restore(session, path)
    assert "\n" not in str(error.value)
    assert snapshot(session) == before


def test_a_snapshot_puts_back_lineage_streams_and_cpu_kernel_pins(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from det_nb import cpu_kernels

    variable = cpu_kernels.PINS[0].variable
    monkeypatch.setenv(variable, "before")
    for draw in DRAWS.values():
        draw(session)
    lineage, settings, streams = session.lineage, session.settings, snapshot(session)
    taken = state.snapshot(session)
    session.seed(6, threads=None, per_cell=True)
    monkeypatch.delenv(variable)
    taken.restore()
    assert (session.lineage, session.settings) == (lineage, settings)
    assert snapshot(session) == streams
    assert os.environ[variable] == "before"


def test_loading_state_from_a_fifo_returns_at_once(session: Session, fifo: Path) -> None:
    error = promptly(lambda: state.restore(session, fifo))
    assert isinstance(error, ValueError)
    assert str(error) == f"state file {str(fifo)!r} is a FIFO, not a regular file"


def test_saving_state_onto_a_fifo_or_socket_is_refused_and_leaves_it(
    session: Session, fifo: Path, unix_socket: Path
) -> None:
    for path, kind in ((fifo, "a FIFO"), (unix_socket, "a socket")):
        error = promptly(lambda path=path: state.save(session, path))
        assert isinstance(error, ValueError)
        assert f"it is {kind}, not a regular file" in str(error)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISSOCK(os.stat(unix_socket).st_mode)
