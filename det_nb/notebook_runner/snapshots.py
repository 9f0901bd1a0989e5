"""Values moved out of a kernel: snapshots of the names where two runs part.

When two runs first differ at a cell, the runner asks both kernels to write snapshots
(:func:`det_nb.fingerprint.snapshot`) of the differing names, so the report can say
exactly what differs; by the end of the notebook the values would be gone.
:func:`dump_values` runs inside the kernel, :func:`load_values` in the runner. The file is
an ``.npz`` with no pickle: arrays as arrays, the snapshot trees as JSON (a flat list of
nodes, so an object shared by several containers is written once).
"""

from __future__ import annotations

import json
import os
from typing import Any


def dump_values(names: list[str], file: str, shown: str | None = None) -> str:
    """Kernel side: write snapshots of ``names`` to ``file`` (None where none can be made);
    the name ``shown`` is the last cell's displayed result."""
    import numpy as np

    from det_nb.fingerprint import as_result, snapshot
    from det_nb.notebook_runner.probe import displayed_result, user_namespace

    namespace = dict(user_namespace())
    if shown is not None:
        namespace[shown] = displayed_result()
    arrays: dict[str, Any] = {}
    nodes: list[list[object]] = []
    roots: dict[str, int | None] = {}
    for name in names:
        mark, known = len(nodes), set(arrays)
        try:
            roots[name] = _encode(snapshot(as_result(namespace[name])), nodes, arrays, {})
        except Exception:  # absent, unsupported, or its own code raised: no detail
            del nodes[mark:]
            for key in set(arrays) - known:
                del arrays[key]
            roots[name] = None
    np.savez(file, tree=np.array(json.dumps({"roots": roots, "nodes": nodes})), **arrays)
    return "null"


def _encode(snap: Any, nodes: list[list[object]], arrays: dict[str, Any],
            done: dict[int, int]) -> int:
    """Append ``snap``'s view (and its children) to ``nodes``; return its index."""
    if id(snap) in done:
        return done[id(snap)]
    category, kind, payload, summary = snap.view
    if category == "array":
        if payload.dtype.hasobject:
            raise ValueError("object arrays are not written")
        encoded: object = f"a{len(arrays)}"
        arrays[encoded] = payload
    elif category == "scalar":
        encoded = _encode_scalar(payload)
    elif category in ("seq", "set"):
        encoded = [_encode(child, nodes, arrays, done) for child in payload]
    else:  # map, attrs, state
        encoded = [[_encode_scalar(key), _encode(child, nodes, arrays, done)]
                   for key, child in payload.items()]
    nodes.append([category, kind, encoded, summary])
    done[id(snap)] = len(nodes) - 1
    return len(nodes) - 1


def _encode_scalar(value: object) -> object:
    if value is None or type(value) in (bool, int, float, str):
        return {"v": value}
    if type(value) is complex:
        return {"complex": [value.real, value.imag]}
    if type(value) is bytes:
        return {"bytes": value.hex()}
    raise ValueError(f"{type(value).__name__} is not written")


def _decode_scalar(encoded: dict[str, Any]) -> object:
    if "complex" in encoded:
        return complex(*encoded["complex"])
    if "bytes" in encoded:
        return bytes.fromhex(encoded["bytes"])
    return encoded["v"]


def load_values(file: str | os.PathLike[str]) -> dict[str, object]:
    """Read what :func:`dump_values` wrote (a file this runner made)."""
    import numpy as np

    from det_nb.fingerprint import Snapshot, _View

    with np.load(file, allow_pickle=False) as stored:
        tree = json.loads(str(stored["tree"]))
        arrays = {key: stored[key] for key in stored.files if key != "tree"}
    built: dict[int, Any] = {}

    def build(index: int) -> Any:
        if index not in built:
            category, kind, encoded, summary = tree["nodes"][index]
            if category == "array":
                payload: object = arrays[encoded]
            elif category == "scalar":
                payload = _decode_scalar(encoded)
            elif category in ("seq", "set"):
                payload = [build(child) for child in encoded]
            else:
                payload = {_decode_scalar(key): build(child) for key, child in encoded}
            built[index] = Snapshot(_View(category, kind, payload, summary))
        return built[index]

    return {name: None if root is None else build(root) for name, root in tree["roots"].items()}
