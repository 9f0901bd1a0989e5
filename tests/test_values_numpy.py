"""The NumPy family: arrays, masked arrays, scalars, generators by state, and views whose
elements far outnumber the memory they span (issue 19 item 8)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from conftest import result_of, start_python

from det_nb.fingerprint import describe_difference, fingerprint, snapshot
from det_nb.values import numpy as numpy_family


def drawn(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((3, 4))


def test_arrays_from_the_same_seed_are_equal_and_one_changed_element_is_located() -> None:
    a, b = drawn(7), drawn(7)
    assert fingerprint(a) == fingerprint(b)
    b[1, 2] += 0.25
    assert fingerprint(a) != fingerprint(b)
    assert describe_difference(a, b, "x") == (
        "x: ndarray float64 (3, 4): 1 of 12 elements differ; max abs difference 0.25; "
        "first at x[1, 2]")


def test_masked_arrays_scalars_and_dtypes() -> None:
    a = np.ma.masked_array(drawn(1), mask=drawn(2) > 0)
    b = a.copy()
    b.mask[0, 3] = ~b.mask[0, 3]
    assert fingerprint(a) == fingerprint(a.copy()) != fingerprint(b)
    assert describe_difference(a, b, "m") == (
        "m: MaskedArray: mask: 1 of 12 elements differ; first at mask[0, 3]")
    assert fingerprint(np.float32(1)) != fingerprint(np.float64(1))
    assert fingerprint(np.dtype("f4")).summary == "numpy dtype float32"
    assert fingerprint(np.dtype("f4")) != fingerprint(np.dtype(">f4"))


@pytest.mark.parametrize("make", [
    lambda seed: np.random.default_rng(seed),
    lambda seed: np.random.Generator(np.random.Philox(seed)),
    lambda seed: np.random.RandomState(seed),
    lambda seed: np.random.PCG64(seed),
    lambda seed: np.random.SeedSequence(seed),
])
def test_generators_compare_by_their_state(make: object) -> None:
    a, b, other = make(5), make(5), make(6)
    assert fingerprint(a) == fingerprint(b) != fingerprint(other)
    kind = fingerprint(a).summary.removesuffix(" (by its state)")
    assert describe_difference(a, other, "rng") == (
        f"rng: {kind} state differs, so its next draws differ")
    assert fingerprint(snapshot(a)) == fingerprint(a)


def test_a_big_broadcast_view_is_reduced_to_the_memory_it_spans() -> None:
    """Its fingerprint, snapshot and difference cost that memory; it equals the same view of
    equal memory, not a materialised copy (documented in docs/values.md)."""
    row = drawn(3)[0]
    view = np.broadcast_to(row, (10**6, 4))  # 32 MB of elements, 32 bytes of memory
    printed = fingerprint(view)
    assert printed.summary == "ndarray float64 (1000000, 4), a view of 32 bytes of memory"
    assert printed == fingerprint(np.broadcast_to(row.copy(), (10**6, 4)))
    assert printed != fingerprint(np.ascontiguousarray(view))
    assert fingerprint(snapshot(view)) == printed
    changed = row.copy()
    changed[2] = 9.0
    assert describe_difference(view, np.broadcast_to(changed, (10**6, 4)), "b").startswith(
        "b: ndarray view: memory: 1 of 4 elements differ; max abs difference ")
    small = np.broadcast_to(row, (2, 4))  # below the threshold: hashed element by element
    assert fingerprint(small) == fingerprint(np.ascontiguousarray(small))


def test_overlapping_views_with_reversed_or_unaligned_strides() -> None:
    base = np.arange(3.0)
    reversed_view = np.broadcast_to(base, (10**6, 3))[:, ::-1]
    assert fingerprint(reversed_view) == fingerprint(np.broadcast_to(base[::-1], (10**6, 3)))
    raw = np.zeros(2 * 10**6, np.uint8)
    sliding = np.lib.stride_tricks.as_strided(raw, (10**6, 10**6), (1, 1), writeable=False)
    assert fingerprint(sliding).summary.endswith("a view of 1999999 bytes of memory")
    words = np.zeros(10**6 + 1, np.uint16)  # read at every byte offset: not whole elements
    odd = np.lib.stride_tricks.as_strided(words, (10**6, 10**6), (1, 1), writeable=False)
    assert fingerprint(odd).summary.endswith("a view of 2000000 bytes of memory")
    assert fingerprint(snapshot(odd)) == fingerprint(odd)
    objects = np.broadcast_to(np.array([{"k": 1}], dtype=object), (10**6,))
    assert fingerprint(objects).summary.endswith("a view of 8 bytes of memory")
    assert numpy_family.VIEW_MIN_BYTES == 4 << 20


def test_a_view_of_a_trillion_elements_is_checked_in_seconds() -> None:
    """Issue 19 item 8: fingerprint, snapshot, difference and %%det_check of a 10**12-element
    broadcast view (and a torch expand) take time proportional to memory. In a fresh process
    bounded at 60 s: before, hashing it would have run for hours."""
    process = start_python("""
        import json, random
        import numpy as np
        import torch
        from IPython.core.interactiveshell import InteractiveShell
        from det_nb.check import run_check
        from det_nb.fingerprint import describe_difference, fingerprint, snapshot

        view = np.broadcast_to(np.ones(1), (10**12,))
        other = np.broadcast_to(np.full(1, 2.0), (10**12,))
        expanded = torch.zeros(1).expand(10**6, 10**6)
        shell = InteractiveShell.instance()
        shell.run_cell("import numpy as np")
        def reseed():
            np.random.seed(1)
        seeded = run_check(shell, "b = np.broadcast_to(np.random.rand(1), (10**12,))", 3, reseed)
        unseeded = run_check(shell, "b = np.broadcast_to(np.random.default_rng().random(1), "
                                    "(10**12,))", 2, reseed)
        print(json.dumps({
            "summary": fingerprint(view).summary,
            "copy": fingerprint(snapshot(view)) == fingerprint(view),
            "detail": describe_difference(view, other, "b"),
            "torch": fingerprint(expanded).summary,
            "torch copy": fingerprint(snapshot(expanded)) == fingerprint(expanded),
            "seeded": seeded.text(), "unseeded": unseeded.headline(),
        }))
    """)
    found = result_of(process, timeout=60)
    assert found["summary"] == "ndarray float64 (1000000000000,), a view of 8 bytes of memory"
    assert found["copy"] and found["torch copy"]
    assert found["detail"] == (
        "b: ndarray view: memory: 1 of 1 elements differ; max abs difference 1; "
        "first at memory[0]")
    assert found["torch"] == (
        "torch.Tensor float32 (1000000, 1000000), a view of 4 bytes of memory")
    assert found["seeded"] == (
        "deterministic across 3 runs\ncompared:\n"
        "  b: ndarray float64 (1000000000000,), a view of 8 bytes of memory")
    assert found["unseeded"] == "NOT deterministic across 2 runs"


def test_padding_bytes_of_structured_arrays_are_not_compared() -> None:
    """Padding holds whatever memory held before (a scikit-learn tree's nodes): equal
    records must hash equal whatever is there, and a copy must equal the original."""
    padded = np.dtype({"names": ["flag", "value"], "formats": ["u1", "f8"], "offsets": [0, 8],
                       "itemsize": 16})
    clean, dirty = np.zeros(3, padded), np.zeros(3, padded)
    dirty.view(np.uint8)[1:8] = 7  # between the fields
    assert fingerprint(dirty) == fingerprint(clean)
    assert fingerprint(snapshot(dirty)) == fingerprint(dirty)
    dirty["value"][2] = 0.5
    assert describe_difference(clean, dirty, "r") == (
        "r: ndarray void128 (3,): 1 of 3 elements differ; first at r[2]")


class Tagged(np.ndarray):
    """An array with metadata of its own, as users subclass ndarray."""


def test_attributes_of_an_ndarray_subclass_are_compared(tmp_path: pathlib.Path) -> None:
    first, second = drawn(1).view(Tagged), drawn(1).view(Tagged)
    first.meta, second.meta = {"unit": "m"}, {"unit": "s"}
    assert describe_difference(first, second, "t") == (
        "t: Tagged: attributes['meta']['unit']: str differs at position 0 (lengths 1 and 1)")
    second.meta = {"unit": "m"}
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first).summary == "Tagged (ndarray float64 (3, 4), 1 attribute)"
    second[0, 1] += 1.0
    assert describe_difference(first, second, "t") == (
        "t: Tagged: contents: 1 of 12 elements differ; max abs difference 1; "
        "first at contents[0, 1]")
    assert fingerprint(snapshot(first)) == fingerprint(first)
    assert fingerprint(drawn(1).view(Tagged)) == fingerprint(drawn(1))  # no attributes
    # NumPy's own subclasses keep bookkeeping there: a memmap's file and open mapping.
    maps = [np.memmap(tmp_path / name, "f8", "w+", shape=(3, 4)) for name in ("a", "b")]
    for mapped in maps:
        mapped[:] = drawn(1)
    assert fingerprint(maps[0]) == fingerprint(maps[1])


def test_a_masked_array_is_compared_by_its_fill_value_too() -> None:
    """What filled() puts where the array is masked."""
    a = np.ma.masked_array([1.0, 2.0], mask=[0, 1], fill_value=0.0)
    b = np.ma.masked_array([1.0, 2.0], mask=[0, 1], fill_value=-1.0)
    assert describe_difference(a, b, "m") == (
        "m: MaskedArray: fill_value: 1 of 1 elements differ; max abs difference 1")
    assert fingerprint(a) == fingerprint(np.ma.masked_array([1.0, 2.0], mask=[0, 1],
                                                            fill_value=0.0))
