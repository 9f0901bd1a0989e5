"""Pausing an experiment: save the state of every seeded PRNG, and restore it later.

Determined's page admits it does not keep the RNG state across a pause; det_nb does for
every global stream it seeds (Python ``random``, NumPy's global RandomState, TensorFlow's
global Generator, Keras's global SeedGenerator, torch's CPU and CUDA generators) and for
``det_nb.rng()``, so a resumed run makes the draws it would have made. The file is one
``.npz``: NumPy arrays plus a JSON metadata string, read with ``allow_pickle=False``;
every array is checked against the sources here before any is restored, so a bad or
mismatched file changes nothing. What cannot be restored is listed by :func:`limits`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from det_nb import cpu_kernels
from det_nb.files import (
    MAX_BYTES,
    MapOf,
    check_fields,
    parse_json,
    printable,
    read_limited,
    shown,
    write_atomically,
)
from det_nb.lineage import Lineage
from det_nb.session import NOT_SEEDED, Session
from det_nb.sources.base import Source, State
from det_nb.sources.python_random import PythonRandom
from det_nb.status import Check

#: The state file format this det_nb writes and the only one it reads.
VERSION = 1
FORMAT = "det_nb state"
RNG = "det_nb.rng()"
_META = "meta"
_META_SCHEMA = {
    "format": str,
    "version": int,
    "lineage": {"experiment_seed": int, "trial": (int, None), "scheme": str},
    "sources": MapOf([str]),
    "rng": (dict, None),
}

#: What cannot be restored, by the module that brings it (measured on TF 2.21, Keras 3.15).
UNRESTORABLE = {
    "tensorflow": (
        "TF op-level random ops",
        "random ops run without a Generator (tf.random.normal, uniform and shuffle, "
        "tf.data's shuffle) draw from per-op state inside TF that cannot be read, so after "
        "a restore they do not repeat; draw from tf.random.get_global_generator() or use "
        "stateless ops with explicit seeds",
    ),
    "keras": (
        "Keras layers' SeedGenerators",
        "random layers (Dropout, GaussianNoise, random augmentation) own their "
        "SeedGenerator, and model.save and save_weights do not keep its state either; "
        "model.variables holds it: save [v.numpy() for v in model.variables] with the "
        "model and assign them back",
    ),
    "jax": (
        "JAX keys",
        "JAX has no global state: keep the key you reached yourself "
        "(det_nb.jax_key() starts again from the seed)",
    ),
}
_OWN_GENERATORS = (
    "generators you make yourself (random.Random(), np.random.default_rng(), "
    "tf.random.Generator.from_seed(), iterators) are not global: checkpoint them with "
    "their owner"
)


def save(session: Session, path: str | os.PathLike[str]) -> Path:
    """Save the state of every imported seeded source and of det_nb.rng() to ``path``.

    One ``.npz`` written atomically; ValueError before seeding or when a state cannot
    be read.
    """
    import numpy as np

    lineage = session.lineage
    if lineage is None:
        raise ValueError(NOT_SEEDED)
    sources: dict[str, list[str]] = {}
    arrays: dict[str, Any] = {}
    for source in session.sources:
        if source.loaded() is None:
            continue
        try:
            state = source.get_state()
        except Exception as error:
            raise ValueError(
                f"cannot read {source.name}'s state: {type(error).__name__}: {error}"
            ) from None
        if state is None:
            continue
        sources[source.name] = sorted(state)
        arrays.update({_key(source, name): np.asarray(v) for name, v in state.items()})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "lineage": {
            "experiment_seed": lineage.experiment_seed,
            "trial": lineage.trial,
            "scheme": lineage.scheme,
        },
        "sources": sources,
        "rng": session.rng_state(),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{_META: np.array(json.dumps(meta))})
    return write_atomically(path, buffer.getvalue())


def restore(session: Session, path: str | os.PathLike[str]) -> list[str]:
    """Restore the states saved in ``path``; return what was restored, one line each.

    The session must run the lineage the file was saved under, and every source in
    the file must be imported here. Everything is checked first (names, dtypes, shapes
    and every value's range): on any problem, ValueError with one line, and nothing has
    changed. Should a source still refuse its state, those restored before it are put back.
    """
    where = f"state file {shown(path)}"
    arrays = _read_arrays(read_limited(path, "state file"), where)
    meta = _read_meta(arrays.pop(_META, None), where)
    _check_lineage(session.lineage, meta["lineage"], where)
    plan: list[tuple[Source, State]] = []
    by_name = {source.name: source for source in session.sources}
    for name, keys in meta["sources"].items():
        shown_name = printable(name)
        source = by_name.get(name)
        if source is None:
            raise ValueError(
                f"{where} holds the state of {shown_name!r}, which det_nb does not know"
            )
        if source.loaded() is None:
            raise ValueError(
                f"{where} holds {name}'s state, but {source.module} is not imported here: "
                "import it, then restore"
            )
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"{where} lists {name}'s arrays {repeated} more than once")
        missing = [key for key in keys if _key(source, key) not in arrays]
        if missing:
            raise ValueError(f"{where} lacks {name}'s arrays {missing}")
        state = {key: arrays.pop(_key(source, key)) for key in keys}
        try:
            source.check_state(state)
        except ValueError as error:
            raise ValueError(f"{where} does not fit here: {error}") from None
        plan.append((source, state))
    if arrays:
        raise ValueError(f"{where} holds arrays no source claims: {sorted(arrays)}")
    rng = meta["rng"]
    if rng is not None:
        _check_rng_state(rng, where)
    untouched = [
        f"{source.name}: not in the file (not imported when saved), left as is"
        for source in session.sources
        if source.name not in meta["sources"] and source.loaded() is not None
        and source.get_state() is not None
    ]
    if rng is None and session.rng_state() is not None:
        untouched.append(f"{RNG}: not in the file (not made when saved), left as is")

    before = snapshot(session)
    lines = []
    try:
        for source, state in plan:
            lines.append(f"{source.name}: {source.set_state(state)}")
        if rng is not None:
            session.set_rng_state(rng)
            lines.append(f"{RNG}: Generator state restored")
    except Exception as error:
        failure = f"{where}: restoring failed: {type(error).__name__}: {printable(str(error))}"
        try:
            before.restore()
        except ValueError as undo:
            raise ValueError(f"{failure}; {undo}") from None
        raise ValueError(f"{failure}; every state is as it was") from None
    lines += untouched
    if session.settings.per_cell:
        lines.append("per-cell seeding is on: the next cell re-seeds every source from its text")
    return lines


# Sessions' fields that seeding changes (the bookkeeping the status reads is private).
_SESSION_FIELDS = ("lineage", "settings", "applied_seed", "last_cell_seed", "cluster_seed")
_SESSION_RECORDS = ("_seeded", "_failed")


@dataclass(frozen=True)
class Snapshot:
    """A session as it was: taken before a change, so a failure after it can be undone.

    Holds the lineage, settings and seed in force, the state of every imported seeded
    source and of det_nb.rng(), and the CPU-kernel pins in ``os.environ``. Not covered,
    since nothing can read them back: TF's op-level seed counters, and thread pools TF's
    runtime fixed when it started.
    """

    session: Session
    fields: dict[str, Any]
    states: tuple[tuple[Source, State], ...]
    python_random: object  # random.getstate(): taken without NumPy, before pins may apply
    rng: dict[str, Any] | None
    pins: object  # cpu_kernels.snapshot(): the pins in os.environ and their records

    def restore(self) -> None:
        """Put the session, every stream and the pins back as they were when taken.

        A source that refuses its state does not stop the others; ValueError (one line)
        names it afterwards.
        """
        session = self.session
        changed_settings = session.settings != self.fields["settings"]
        for name, value in self.fields.items():
            setattr(session, name, dict(value) if name in _SESSION_RECORDS else value)
        cpu_kernels.restore(self.pins)
        if changed_settings and session.lineage is not None:
            for source in session.sources:
                if source.loaded() is not None:
                    with contextlib.suppress(Exception):  # as when seeding: the status says
                        source.configure(session.settings)
        random.setstate(self.python_random)
        failed = []
        for source, state in self.states:
            try:
                source.set_state(state)
            except Exception as error:  # go on: put back every stream that can be
                failed.append(f"{source.name} ({type(error).__name__}: {printable(str(error))})")
        if self.rng is not None:
            session.set_rng_state(self.rng)
        session._notify()
        if failed:
            raise ValueError(f"could not put back the state of {', '.join(failed)}")


def snapshot(session: Session) -> Snapshot:
    """The session and every stream now, to :meth:`Snapshot.restore` if what follows fails.

    ValueError (one line) when a source's state cannot be read: then a failure could not
    be undone, so the caller must not go on.
    """
    states = []
    for source in session.sources:
        # Python random is kept as random.getstate(): its file form needs NumPy, which must
        # not load before a seeding that may pin its kernels.
        if source.loaded() is None or isinstance(source, PythonRandom):
            continue
        try:
            state = source.get_state()
        except Exception as error:
            raise ValueError(
                f"cannot read {source.name}'s state, so a failure could not be undone: "
                f"{type(error).__name__}: {printable(str(error))}"
            ) from None
        if state is not None:
            states.append((source, state))
    fields = {name: getattr(session, name) for name in _SESSION_FIELDS}
    fields.update({name: dict(getattr(session, name)) for name in _SESSION_RECORDS})
    return Snapshot(
        session, fields, tuple(states), random.getstate(), session.rng_state(),
        cpu_kernels.snapshot(),
    )


def limits(session: Session) -> list[str]:
    """What a state file cannot restore in this kernel, with what to do instead."""
    installed = {source.module for source in session.sources if source.installed()}
    items = [f"{title}: {why}" for module, (title, why) in UNRESTORABLE.items()
             if module in installed]
    return [*items, _OWN_GENERATORS]


def status_check(session: Session) -> Check:
    """One status line: what %det_state saves, and what it cannot restore here."""
    installed = {source.module for source in session.sources if source.installed()}
    titles = [title for module, (title, _) in UNRESTORABLE.items() if module in installed]
    return Check(
        "state save/restore", "ok",
        "saves every seeded global generator and det_nb.rng(); cannot restore "
        f"{', '.join([*titles, 'generators you make yourself'])} (see docs/records.md)",
    )


def _key(source: Source, name: str) -> str:
    """Member name of one of a source's arrays in the ``.npz``."""
    return f"{source.name.replace(' ', '_')}.{name}"


#: What reading a damaged archive raises: zip and .npy errors, a corrupt deflate stream
#: (zlib.error), a zip feature Python does not read (NotImplementedError, e.g. flag bit 5).
_DAMAGED = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error,
            NotImplementedError, MemoryError)
#: The zip compression methods NumPy writes: np.savez stores, np.savez_compressed deflates.
_NPZ_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
#: Zip flag bits of an encrypted member: traditional (bit 0) and strong (bit 6) encryption.
_ENCRYPTED_FLAGS = 0x1 | 0x40


def _read_arrays(raw: bytes, where: str) -> dict[str, Any]:
    """Every array of an ``.npz`` held in ``raw``, never unpickling anything."""
    import numpy as np

    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        raise ValueError(f"{where} is not a det_nb state file (not an .npz archive)") from None
    if sum(member.file_size for member in members) > MAX_BYTES:
        raise ValueError(f"{where} unpacks to over {MAX_BYTES} bytes")
    if not all(member.filename.endswith(".npy") for member in members):
        raise ValueError(f"{where} holds files that are not NumPy arrays")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for member in members:
                _check_member(archive, member)
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except _DAMAGED as error:
        problem = printable(" ".join(str(error).split()))
        raise ValueError(f"{where} is damaged: {problem}") from None


def _check_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
    """ValueError unless ``member`` is a plain ``.npy`` array of a size a state file holds.

    NumPy never writes encrypted members or other compression methods, and it allocates
    the declared shape before reading, so a forged header would ask for terabytes
    (MemoryError) though the file is small; objects would need unpickling.
    """
    from numpy.lib import format as npy

    name = printable(member.filename)
    if member.flag_bits & _ENCRYPTED_FLAGS:
        raise ValueError(f"array {name!r} is encrypted, which NumPy never writes")
    if member.compress_type not in _NPZ_COMPRESSION:
        raise ValueError(
            f"array {name!r} uses zip compression method {member.compress_type}; NumPy "
            f"writes only {' or '.join(_NPZ_COMPRESSION.values())}"
        )
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    with archive.open(member) as stream:
        version = npy.read_magic(stream)
        if version not in readers:  # det_nb writes 1.0; 3.0 only holds odd field names
            raise ValueError(f"array {name!r} has .npy format {version}")
        shape, _, dtype = readers[version](stream)
    if dtype.hasobject:
        raise ValueError(f"array {name!r} holds objects, which det_nb never saves (no pickle)")
    declared = math.prod(shape) * dtype.itemsize
    if declared > MAX_BYTES:
        raise ValueError(
            f"array {name!r} declares shape {shape} of {dtype}, over {MAX_BYTES} bytes"
        )


def _read_meta(stored: Any, where: str) -> dict[str, Any]:
    if stored is None or stored.dtype.kind != "U" or stored.shape != ():
        raise ValueError(f"{where} has no det_nb metadata: not a det_nb state file")
    try:
        raw = str(stored[()]).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: NumPy's text arrays can hold one
        raise ValueError(f"{where}'s metadata is not valid Unicode text") from None
    meta = parse_json(raw, f"{where}'s metadata")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{where} is not a det_nb state file")
    if meta.get("version") != VERSION or type(meta.get("version")) is not int:
        raise ValueError(
            f"{where} has version {meta.get('version')!r}; this det_nb reads version {VERSION}"
        )
    try:
        check_fields(meta, _META_SCHEMA, "metadata")
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return meta


def _check_lineage(lineage: Lineage | None, saved: dict[str, Any], where: str) -> None:
    """The session must run the lineage the states were saved under."""
    seed, trial, scheme = saved["experiment_seed"], saved["trial"], saved["scheme"]
    command = Lineage(seed, trial, scheme).command()
    if lineage is None:
        raise ValueError(f"{where} was saved under {command}; run it first, then restore")
    if (lineage.experiment_seed, lineage.trial, lineage.scheme) != (seed, trial, scheme):
        raise ValueError(
            f"{where} was saved under {command}, but this session runs "
            f"{lineage.summary()}: run {command} first, then restore"
        )


def _check_rng_state(state: dict[str, Any], where: str) -> None:
    """The Generator state must be a PCG64 state in range, not degenerate, taken back exactly."""
    import numpy as np

    problem = _pcg64_problem(state)
    if problem:
        raise ValueError(f"{where}: bad {RNG} state: {problem}")
    scratch = np.random.PCG64()
    try:
        scratch.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise ValueError(f"{where}: bad {RNG} state: {printable(str(error))}") from None
    if scratch.state != state:
        raise ValueError(f"{where}: bad {RNG} state: not a PCG64 state")


def _pcg64_problem(state: dict[str, Any]) -> str:
    """What makes ``state`` no PCG64 state ("" when nothing does)."""
    inner = state.get("state")
    if (set(state) != {"bit_generator", "state", "has_uint32", "uinteger"}
            or state["bit_generator"] != "PCG64"
            or not isinstance(inner, dict) or set(inner) != {"state", "inc"}):
        return "not a PCG64 state"
    ranges = {  # name: (value, end, the largest value allowed in words)
        "state.state": (inner["state"], 2**128, "2**128 - 1"),
        "state.inc": (inner["inc"], 2**128, "2**128 - 1"),
        "has_uint32": (state["has_uint32"], 2, "1"),
        "uinteger": (state["uinteger"], 2**32, "2**32 - 1"),
    }
    for name, (value, end, largest) in ranges.items():
        if type(value) is not int or not 0 <= value < end:
            return f"{name} must be an integer in [0, {largest}], got {value!r:.60}"
    if inner["inc"] % 2 == 0:
        return f"state.inc must be odd (PCG64 steps by it), got {inner['inc']}"
    return ""
