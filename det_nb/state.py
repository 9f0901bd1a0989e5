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

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from det_nb.lineage import Lineage
from det_nb.run_record import (
    MAX_BYTES,
    MapOf,
    check_fields,
    parse_json,
    read_limited,
    write_atomically,
)
from det_nb.session import NOT_SEEDED, Session
from det_nb.sources.base import Source, State
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
    the file must be imported here. Everything is checked first: on any problem,
    ValueError with one line, and nothing has changed.
    """
    where = f"state file {str(Path(path))!r}"
    arrays = _read_arrays(read_limited(path, "state file"), where)
    meta = _read_meta(arrays.pop(_META, None), where)
    _check_lineage(session.lineage, meta["lineage"], where)
    plan: list[tuple[Source, State]] = []
    by_name = {source.name: source for source in session.sources}
    for name, keys in meta["sources"].items():
        source = by_name.get(name)
        if source is None:
            raise ValueError(f"{where} holds the state of {name!r}, which det_nb does not know")
        if source.loaded() is None:
            raise ValueError(
                f"{where} holds {name}'s state, but {source.module} is not imported here: "
                "import it, then restore"
            )
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

    lines = [f"{source.name}: {source.set_state(state)}" for source, state in plan]
    if rng is not None:
        session.set_rng_state(rng)
        lines.append(f"{RNG}: Generator state restored")
    lines += untouched
    if session.settings.per_cell:
        lines.append("per-cell seeding is on: the next cell re-seeds every source from its text")
    return lines


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
        f"{', '.join([*titles, 'generators you make yourself'])} (see the README)",
    )


def _key(source: Source, name: str) -> str:
    """Member name of one of a source's arrays in the ``.npz``."""
    return f"{source.name.replace(' ', '_')}.{name}"


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
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
        problem = " ".join(str(error).split())
        raise ValueError(f"{where} is damaged or holds objects: {problem}") from None


def _read_meta(stored: Any, where: str) -> dict[str, Any]:
    if stored is None or stored.dtype.kind != "U" or stored.shape != ():
        raise ValueError(f"{where} has no det_nb metadata: not a det_nb state file")
    meta = parse_json(str(stored[()]).encode("utf-8"), f"{where}'s metadata")
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
    """The Generator state must be one a PCG64 takes back exactly."""
    import numpy as np

    scratch = np.random.PCG64()
    try:
        scratch.state = state
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{where}: bad {RNG} state: {error}") from None
    if scratch.state != state:
        raise ValueError(f"{where}: bad {RNG} state: not a PCG64 state")
