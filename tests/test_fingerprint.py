"""Fingerprints and difference descriptions (det_nb.fingerprint), without TensorFlow.

TensorFlow and Keras values are tested in test_check.py, the one module that imports TF.
"""

from __future__ import annotations

import copy
import json
import random
import signal
import textwrap
import tracemalloc
import types
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from unittest import mock

import numpy as np
import pytest
from conftest import run_python
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from det_nb import fingerprint as fp_module
from det_nb.fingerprint import (
    NOT_A_RESULT,
    Fingerprint,
    Unfingerprintable,
    as_result,
    code_data,
    describe_difference,
    fingerprint,
    is_code,
    snapshot,
)

# -- strategies ------------------------------------------------------------------------

DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.datetime64_dtypes(),
    hnp.byte_string_dtypes(min_len=1),
    hnp.unicode_string_dtypes(min_len=1),
)
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
NONEMPTY = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.complex_numbers(), st.text(),
    st.binary(),
)
VALUES = st.recursive(
    SCALARS | ARRAYS,
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=4),
    max_leaves=12,
)
# Tiny blocks and tiles make the blockwise (non-contiguous) paths run on small arrays.
BLOCK_BYTES = st.sampled_from([1, 16, 4 << 20])
TILE_COLUMNS = st.sampled_from([1, 2, 256])


def small_pieces(block: int, tile: int) -> AbstractContextManager:
    """Patch the block and tile sizes used for arrays that are not C-contiguous."""
    return mock.patch.multiple(fp_module, _BLOCK_BYTES=block, _TILE_COLUMNS=tile)


def first_bits_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    """The first index (C order) where the two arrays' elements differ bit for bit."""
    size = a.dtype.itemsize
    bytes_a = np.ascontiguousarray(a).view(np.uint8).reshape((*a.shape, size))
    bytes_b = np.ascontiguousarray(b).view(np.uint8).reshape((*b.shape, size))
    return tuple(int(i) for i in np.argwhere((bytes_a != bytes_b).any(axis=-1))[0])


def index_text(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, index)) + "]"


# -- properties ------------------------------------------------------------------------


@given(VALUES)
def test_equal_values_give_equal_fingerprints(value: object) -> None:
    twin = copy.deepcopy(value)
    assert fingerprint(value) == fingerprint(twin)
    assert isinstance(fingerprint(value), Fingerprint)
    assert describe_difference(value, twin) is None


@given(NONEMPTY, st.data(), BLOCK_BYTES, st.booleans())
def test_any_single_element_change_is_found_at_its_index(
    array: np.ndarray, data: st.DataObject, block: int, transpose: bool
) -> None:
    changed = array.copy()
    flat = data.draw(st.integers(0, array.size - 1), label="flat index")
    byte = data.draw(st.integers(0, array.dtype.itemsize - 1), label="byte")
    changed.reshape(-1).view(np.uint8)[flat * array.dtype.itemsize + byte] ^= 1
    if transpose:  # compare strided views: first index is then in the view's C order
        array, changed = array.T, changed.T
    expected = first_bits_difference(array, changed)
    with small_pieces(block, 1):
        assert fingerprint(array) != fingerprint(changed)
        found = describe_difference(array, changed, "x")
    assert found is not None
    assert "1 of" in found
    if array.ndim:
        assert found.endswith(f"first at x{index_text(expected)}")


@given(ARRAYS, st.data(), BLOCK_BYTES, TILE_COLUMNS)
def test_views_hash_like_their_contiguous_copies(
    array: np.ndarray, data: st.DataObject, block: int, tile: int
) -> None:
    view = array[data.draw(hnp.basic_indices(array.shape), label="index")]
    view = np.asarray(view)  # a 0-d view of a 0-d array, not a NumPy scalar
    with small_pieces(block, tile):
        expected = fingerprint(view.copy(order="C"))
        assert fingerprint(view) == expected
        assert fingerprint(view.copy(order="F")) == expected
        assert fingerprint(view.T) == fingerprint(view.T.copy(order="C"))


@given(ARRAYS, DTYPES)
def test_dtype_changes_are_detected(array: np.ndarray, dtype: np.dtype) -> None:
    if dtype == array.dtype:
        return
    other = np.zeros(array.shape, dtype)
    assert fingerprint(array) != fingerprint(other)
    assert describe_difference(array, other, "x") == (
        f"x: dtype {array.dtype.name} vs {dtype.name}"
    )


@given(NONEMPTY)
def test_shape_changes_are_detected(array: np.ndarray) -> None:
    other = array.reshape(-1)[:, None] if array.ndim == 1 else array.reshape(-1)
    assert fingerprint(array) != fingerprint(other)
    assert describe_difference(array, other, "x") == (
        f"x: shape {array.shape} vs {other.shape}"
    )


@given(VALUES)
def test_snapshots_fingerprint_like_the_value(value: object) -> None:
    assert fingerprint(snapshot(value)) == fingerprint(value)
    assert describe_difference(snapshot(value), value) is None


# -- scalars and containers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0), (1, True), (0.0, -0.0), ("a", b"a"), ([1], (1,)), ({"a": 1}, {"a": 1.0}),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}), (np.float64(1.0), 1.0), (np.arange(3), [0, 1, 2]),
        ({1: "x"}, {True: "x"}), ([[1, 2]], [[1], [2]]), ("ab", "a" + "b" * 2),
    ],
)
def test_different_values_or_types_differ(a: object, b: object) -> None:
    assert fingerprint(a) != fingerprint(b)
    assert describe_difference(a, b, "v") is not None


def test_nan_equals_nan_with_the_same_bits() -> None:
    assert fingerprint(float("nan")) == fingerprint(float("nan"))
    assert fingerprint(np.array([np.nan])) == fingerprint(np.array([np.nan]))


def test_nested_difference_names_the_key_path() -> None:
    a = {"a": 1, "meta": {"t": 1000, "tags": ["x", "y"]}}
    b = {"a": 1, "meta": {"t": 1234, "tags": ["x", "y"]}}
    assert describe_difference(a, b, "d") == "d['meta']['t']: int differs by 234"
    b = {"a": 1, "meta": {"t": 1000, "tags": ["x", "z"]}}
    assert describe_difference(a, b, "d") == (
        "d['meta']['tags'][1]: str differs at position 0 (lengths 1 and 1)"
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 2], [1, 2, 3], "v: list length 2 vs 3"),
        ({"a": 1}, {"a": 1, "b": 2}, "v: key 'b' only in run 2"),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, "v: same keys in a different order"),
        ([1, (2, 3.5)], [1, (2, 3.25)], "v[1][1]: float differs by 0.25"),
        (1.0, float("nan"), "v: float is NaN in run 2 only"),
        (0.0, -0.0, "v: float same value, different bits (0.0 vs -0.0)"),
        (True, False, "v: bool True vs False"),
        (b"abcd", b"abXd", "v: bytes differs at position 2 (lengths 4 and 4)"),
        ({1, 2}, {1, 3}, "v: 1 elements only in run 1, 1 only in run 2"),
        ([1], (1,), "v: type list vs tuple"),
        (np.int8(-128), np.int8(127), "v: numpy int8: 1 of 1 elements differ; "
                                       "max abs difference 255"),
    ],
)
def test_difference_descriptions(a: object, b: object, expected: str) -> None:
    assert describe_difference(a, b, "v") == expected


def test_array_difference_counts_max_and_first_index() -> None:
    a = np.zeros((3, 4))
    b = a.copy()
    b[1, 2], b[2, 0] = 0.5, -2.0
    assert describe_difference(a, b, "x") == (
        "x: ndarray float64 (3, 4): 2 of 12 elements differ; max abs difference 2; "
        "first at x[1, 2]"
    )


def test_integer_differences_are_exact_without_overflow() -> None:
    a = np.array([np.iinfo(np.int64).min, 0], dtype=np.int64)
    b = np.array([np.iinfo(np.int64).max, 0], dtype=np.int64)
    assert f"max abs difference {2**64 - 1};" in describe_difference(a, b, "x")
    u = describe_difference(np.array([0], np.uint8), np.array([255], np.uint8), "x")
    assert "max abs difference 255" in u


def test_signed_zeros_and_nan_payloads_are_reported_as_bit_differences() -> None:
    found = describe_difference(np.array([0.0, np.nan]), np.array([-0.0, np.nan]), "x")
    assert "only bit patterns differ" in found and "first at x[0]" in found
    payload = np.array([np.nan]).view(np.uint64) | np.uint64(1)
    found = describe_difference(np.array([np.nan]), payload.view(np.float64), "x")
    assert "1 involve NaN" in found


def test_datetimes_report_their_unit() -> None:
    a = np.array(["2024-01-01", "2024-01-05"], "M8[D]")
    b = np.array(["2024-01-01", "2024-01-02"], "M8[D]")
    assert "max abs difference 3 D; first at x[1]" in describe_difference(a, b, "x")


def test_object_arrays_are_walked_element_by_element() -> None:
    a = np.array([{"k": 1}, "s"], dtype=object)
    b = np.array([{"k": 2}, "s"], dtype=object)
    assert fingerprint(a) != fingerprint(b)
    assert describe_difference(a, b, "x") == "x[0]['k']: int differs by 1"
    bad = np.array([lambda: 1, 1], dtype=object)
    assert fingerprint(bad).reason.startswith("at [0]: lambdas and functions defined inside")


def test_masked_arrays_compare_their_mask() -> None:
    a = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    b = np.ma.masked_array([1, 2, 3], mask=[0, 0, 0])
    assert fingerprint(a).summary == "MaskedArray int64 (3,)"
    assert describe_difference(a, b, "m") == (
        "m: MaskedArray: mask: 1 of 3 elements differ; first at mask[1]")


def test_random_generators_compare_by_state() -> None:
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a).summary == "Generator (by its state)"
    b.random()
    assert describe_difference(a, b, "rng") == (
        "rng: Generator state differs, so its next draws differ"
    )
    assert fingerprint(random.Random(3)) == fingerprint(random.Random(3))
    assert fingerprint(random.Random(3)) != fingerprint(random.Random(4))
    assert fingerprint(np.random.RandomState(3)) != fingerprint(np.random.RandomState(4))
    assert isinstance(fingerprint(random.SystemRandom()), Unfingerprintable)


def test_summaries() -> None:
    assert fingerprint(np.zeros((2, 3), np.float32)).summary == "ndarray float32 (2, 3)"
    assert fingerprint(np.float64(1)).summary == "numpy float64"
    assert fingerprint({"a": 1}).summary == "dict (1 key)"
    assert fingerprint([1, 2]).summary == "list (len 2)"
    assert fingerprint("abc").summary == "str (len 3)"
    assert fingerprint(3).summary == "int"


# -- what cannot be fingerprinted ------------------------------------------------------


def test_unsupported_values_say_why(tmp_path: object) -> None:
    unnamed = "lambdas and functions defined inside functions have no name to compare them by"
    assert fingerprint(lambda: 1) == Unfingerprintable("function", unnamed)
    with open(__file__) as handle:
        assert fingerprint(handle).reason == "files and streams have no comparable value"
    assert fingerprint(object()).reason == "object is not a supported type"
    assert fingerprint(iter([1])).reason == (
        "iterators have no value to compare until they are consumed")
    assert fingerprint(x for x in "ab").reason == (
        "generators have no value to compare until they are consumed")
    nested = {"ok": [1, 2], "cfg": {"f": lambda: 0}}
    assert fingerprint(nested) == Unfingerprintable("dict", f"at ['cfg']['f']: {unnamed}")


def test_code_inside_a_value_is_compared_by_its_qualified_name() -> None:
    """A config that holds a library function or a class names it; only lambdas and local
    functions, which have no name, cannot be compared."""
    config = {"activation": np.tanh, "loss": json.dumps, "cls": Wrapped, "module": np}
    assert fingerprint(config) == fingerprint(dict(config))
    assert fingerprint(print).summary == "builtin_function_or_method builtins.print"
    assert fingerprint(Wrapped).summary == "type test_fingerprint.Wrapped"
    assert describe_difference(config, dict(config, loss=json.loads), "c") == (
        "c['loss']: function differs at position 5 (lengths 10 and 10)")
    bound = [1].append
    assert fingerprint(bound) != fingerprint([2].append)


def test_cycles_and_deep_nesting_are_refused_not_crashing() -> None:
    loop: list = [1]
    loop.append(loop)
    assert fingerprint(loop).reason == "at [1]: it contains itself"
    deep: list = []
    for _ in range(500):
        deep = [deep]
    assert "nested more than" in fingerprint(deep).reason
    shared = [1, 2]
    assert isinstance(fingerprint([shared, shared]), Fingerprint)  # shared is not a cycle


def test_an_object_array_that_contains_itself_says_so() -> None:
    """Not "nested more than 100 levels deep" at [0][0]...[0]."""
    holder = np.empty(2, dtype=object)
    holder[0], holder[1] = holder, 1
    assert fingerprint(holder).reason == "at [0]: it contains itself"
    zero_d = np.empty((), dtype=object)
    zero_d[()] = zero_d
    assert fingerprint(zero_d).reason == "at [()]: it contains itself"
    around = [1]
    inner = np.empty(1, dtype=object)
    inner[0] = around
    around.append(inner)
    assert fingerprint(around).reason == "at [1][0]: it contains itself"
    twice = np.empty(2, dtype=object)
    twice[0] = twice[1] = inner_value = np.arange(3)  # shared, not a cycle
    assert isinstance(fingerprint(twice), Fingerprint)
    assert describe_difference(twice, twice.copy(), "t") is None
    assert inner_value is twice[0]


def test_snapshot_is_independent_of_later_changes() -> None:
    value = {"w": np.zeros(4), "log": [1.0]}
    kept = snapshot(value)
    value["w"][3] = 2.0
    value["log"].append(3.0)
    assert describe_difference(kept, value, "v") == (
        "v['w']: ndarray float64 (4,): 1 of 4 elements differ; max abs difference 2; "
        "first at v['w'][3]"
    )
    with pytest.raises(ValueError, match="cannot snapshot function"):
        snapshot(lambda: 1)


# -- cost: no copies of whole arrays ---------------------------------------------------


def test_fingerprinting_does_not_copy_whole_arrays() -> None:
    """Contiguous arrays are hashed in place, others one block at a time."""
    big = np.ones((2048, 2048))  # 32 MiB
    tracemalloc.start()
    try:
        fingerprint(big)
        contiguous_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        fingerprint(big[:, ::2])
        strided_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert contiguous_peak < 1 << 20
    assert strided_peak < 3 * fp_module._BLOCK_BYTES


@settings(max_examples=20, deadline=None)  # big arrays: time varies with machine load
@given(st.integers(1, 50), st.integers(1, 50))
def test_large_strided_arrays_hash_like_copies(rows: int, cols: int) -> None:
    base = np.random.default_rng(rows * 100 + cols).random((rows * 40, cols * 40))
    view = base[::3, 1::2]
    with small_pieces(512, 7):
        assert fingerprint(view) == fingerprint(view.copy())
        assert fingerprint(view.T) == fingerprint(view.T.copy())
        cube = base[: rows * 8].reshape(rows * 2, 4, -1).transpose(2, 0, 1)
        assert fingerprint(cube) == fingerprint(cube.copy())


# -- shared references and hostile objects ---------------------------------------------


def shared_tower(depth: int, leaf: object) -> list:
    """``x = [x, x]`` ``depth`` times: 2**depth paths down to ``leaf``, only depth + 1 lists."""
    tower: object = leaf
    for _ in range(depth):
        tower = [tower, tower]
    return tower  # type: ignore[return-value]


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the block after ``seconds`` (so a blow-up fails, not hangs)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_shared_references_cost_once_per_object_not_once_per_path() -> None:
    """2**40 paths through 41 lists: fingerprint, snapshot and difference stay instant."""
    tower, other = shared_tower(40, [1.0]), shared_tower(40, [2.0])
    with time_limit(2):
        printed = fingerprint(tower)
        kept = snapshot(tower)
        found = describe_difference(tower, other, "x")
    assert isinstance(printed, Fingerprint) and printed.summary == "list (len 2)"
    assert fingerprint(kept) == printed
    assert printed != fingerprint(other)
    assert found == "x[0][0]...[0] (41 levels): float differs by 1"


@given(VALUES)
def test_sharing_does_not_change_a_fingerprint(value: object) -> None:
    """A value referenced twice hashes like the value and an equal copy of it."""
    assert fingerprint([value, value]) == fingerprint([value, copy.deepcopy(value)])
    assert fingerprint({"a": value, "b": value}) == fingerprint({"a": value,
                                                                 "b": copy.deepcopy(value)})


def test_cycles_below_shared_references_are_still_refused() -> None:
    loop: list = [1]
    loop.append(loop)
    with time_limit(2):
        assert fingerprint(shared_tower(30, loop)).reason == (
            "at [0][0]...[1] (31 levels): it contains itself"
        )


class Attrs:
    """An attribute dict with the usual bug: a missing name raises KeyError."""

    def __init__(self, **items: object) -> None:
        self.__dict__["items"] = items

    def __getattr__(self, name: str) -> object:
        return self.items[name]


class NoLength(list):
    def __len__(self) -> int:
        raise TypeError("length unknown")


class Unbuilt:
    """Model-like, but reading its weights raises."""

    def get_weights(self) -> list:
        return []

    @property
    def weights(self) -> list:
        raise RuntimeError("model is not built\nsecond line")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no text either")


class Hostile:
    @property
    def __class__(self) -> type:  # type: ignore[override]
        raise Unprintable


class Sealed(Mapping):
    """A mapping whose items cannot be listed."""

    def __getitem__(self, key: object) -> object:
        return 1

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[object]:
        raise RuntimeError("keys are private\nsecond line")


def test_values_whose_own_code_raises_are_unfingerprintable_not_errors() -> None:
    """Fingerprint, snapshot and difference report the exception (one line) and go on."""
    assert fingerprint(Sealed()) == Unfingerprintable(
        "Sealed", "reading it raised RuntimeError: keys are private"
    )
    assert fingerprint({"rows": NoLength([1])}) == Unfingerprintable(
        "dict", "at ['rows']: reading it raised TypeError: length unknown"
    )
    assert fingerprint([Hostile()]).reason == "at [0]: reading it raised Unprintable"
    with pytest.raises(ValueError, match=r"^cannot snapshot NoLength$"):
        snapshot([NoLength([1])])
    assert describe_difference([1, Sealed()], [1, Sealed()], "v") == (
        "v[1]: cannot be compared (reading it raised RuntimeError: keys are private)"
    )


def test_objects_are_read_without_running_their_code() -> None:
    """An object is compared by its instance attributes, read without its __getattr__ or
    properties: a buggy __getattr__ or an unbuilt model's property does not matter."""
    assert fingerprint(Attrs(a=1)).summary == "Attrs (1 attribute)"
    assert fingerprint(Attrs(a=1)) == fingerprint(Attrs(a=1)) != fingerprint(Attrs(a=2))
    assert describe_difference(Attrs(a=1), Attrs(a=2), "cfg") == (
        "cfg: Attrs: items['a']: int differs by 1")
    assert fingerprint(Unbuilt()).summary == "Unbuilt (0 attributes)"


# -- without NumPy ---------------------------------------------------------------------

PLAIN = {"a": [1, 2.5, None, True], "b": ("x", b"y", 3j), "c": {1, 2}, "d": {"n": -1 << 70}}


def test_plain_values_are_hashed_without_numpy_and_alike_with_it() -> None:
    """The notebook runner hashes a notebook's values before it imports NumPy (whose CPU
    kernel pins act only if NumPy loads after them): fingerprinting must not import NumPy,
    and a plain value's digest must not change once NumPy is loaded."""
    found = run_python(f"""
        import json, sys
        from det_nb.check import run_check
        from det_nb.fingerprint import describe_difference, fingerprint, is_code, snapshot
        value = {PLAIN!r}
        before = fingerprint(value).digest.hex()
        other = dict(value, d={{"n": 1}})
        detail = describe_difference(value, other, "v")
        copy = fingerprint(snapshot(value)).digest.hex()
        code = [is_code(f) for f in (print, json, dict, json.dumps, lambda: 1, value)]
        loaded = "numpy" in sys.modules
        import numpy
        after = fingerprint(value).digest.hex()
        print(json.dumps({{"before": before, "after": after, "copy": copy, "loaded": loaded,
                          "detail": detail, "code": code}}))
    """)
    assert found["loaded"] is False
    assert found["before"] == found["after"] == found["copy"] == fingerprint(PLAIN).digest.hex()
    assert found["detail"] == f"v['d']['n']: int differs by {(1 << 70) + 1}"
    assert found["code"] == [True, True, True, True, True, False]


class Wrapped:
    """A callable object wrapping a function, as functools.wraps, jax.jit and tf.function do."""

    def __init__(self, function: object) -> None:
        self.__wrapped__ = function

    def __call__(self) -> None:
        return None


def test_is_code_tells_code_from_results() -> None:
    import functools
    import json

    for code in (print, json, dict, json.dumps, lambda: 1, np.add, np.ndarray, [].append,
                 str.upper, "".join, Wrapped(print), functools.lru_cache(maxsize=None)(len)):
        assert is_code(code), code
    for value in (1, "f", [print], np.zeros(1), Wrapped(3), Attrs(), Hostile(),
                  types.SimpleNamespace(__wrapped__=print), functools.partial(print, 1)):
        assert not is_code(value), value


def test_a_partial_is_a_value_compared_by_its_function_and_arguments() -> None:
    """scale = partial(np.multiply, os.getpid()) holds a result: its argument."""
    import functools

    scale = functools.partial(np.multiply, 3)
    assert fingerprint(scale) == fingerprint(functools.partial(np.multiply, 3))
    assert fingerprint(scale).summary == "partial of multiply"
    assert describe_difference(scale, functools.partial(np.multiply, 4), "scale") == (
        "scale: partial: args[0]: int differs by 1")


def test_cached_scalar_encodings_keep_values_apart_and_hash_as_before() -> None:
    """Short plain scalars are encoded once (a model's attributes repeat): the cache keeps
    1 and True, 0 and False, 0.0 and -0.0 apart, and a warm cache hashes as a cold one."""
    from det_nb import fingerprint as module

    values = [1, True, 0, False, None, "in_channels", 2**61, 2**70, 0.0, -0.0, "x" * 100]
    module._scalar_bytes.cache_clear()
    cold = [fingerprint([value]) for value in values]
    warm = [fingerprint([value]) for value in values]
    assert cold == warm
    assert len({print_.digest for print_ in cold}) == len(values)


# -- data held by notebook code (code_data, as_result) ----------------------------------


def _notebook(source: str) -> dict:
    """Run ``source`` as a notebook cell runs: in a namespace whose module is __main__."""
    namespace: dict = {"__name__": "__main__"}
    exec(textwrap.dedent(source), namespace)
    return namespace


def test_code_that_holds_no_data_is_not_a_result() -> None:
    found = _notebook("""
        import abc, contextlib, enum, functools, typing
        class Base(abc.ABC):
            @abc.abstractmethod
            def f(self): ...
            @property
            def p(self): return 1
            @staticmethod
            def s(): return 2
        class Proto(typing.Protocol):
            def f(self) -> int: ...
        def plain(x, *, out=print): return x
        @functools.lru_cache
        def cached(n): return n
        @contextlib.contextmanager
        def managed(): yield
        def outer():
            def inner(): return inner
            return inner
        inner = outer()
    """)
    for name in ("Base", "Proto", "plain", "cached", "managed", "inner"):
        assert as_result(found[name]) is NOT_A_RESULT, name
    assert as_result(json.dumps) is NOT_A_RESULT  # library code stays code
    assert as_result([1]) == [1]


def test_the_data_notebook_code_holds_is_compared_by_path() -> None:
    def build(value: float) -> dict:
        return _notebook(f"""
            import functools
            class Cfg:
                rate = {value}
                def method(self): return self.rate
            def helper(x, scale=[{value}]): return x
            def uses():
                return helper(1)
            helper.calls = 0
            class Memo:
                def __init__(self, f):
                    functools.update_wrapper(self, f)
                    self.cache = {{"k": {value}}}
            memo = Memo(uses)
        """)

    first, same, other = build(0.5), build(0.5), build(0.75)
    for name in ("Cfg", "helper", "memo"):
        assert fingerprint(as_result(first[name])) == fingerprint(as_result(same[name]))
        assert fingerprint(as_result(first[name])) != fingerprint(as_result(other[name]))
    assert describe_difference(code_data(first["Cfg"]), code_data(other["Cfg"]), "Cfg") == (
        "Cfg: class: rate: float differs by 0.25")
    # uses() holds no data itself: helper, which it calls, is not in its closure
    assert code_data(first["uses"]) is None
    helper = code_data(first["helper"])
    assert helper is not None and set(helper.view.payload) == {"__defaults__", "__dict__"}
    assert describe_difference(helper, code_data(other["helper"]), "helper").startswith(
        "helper: function: __defaults__[0][0]: float differs by 0.25")


def test_closures_are_entered_once_and_named_by_their_variables() -> None:
    found = _notebook("""
        def make(table):
            def step():
                return step, table
            def run():
                return step()
            return run
        run = make({"a": 1})
    """)
    data = code_data(found["run"])
    assert data is not None
    assert list(data.view.payload) == ["__closure__"]
    step = data.view.payload["__closure__"]["step"]
    assert step.view.payload == {"__closure__": {"table": {"a": 1}}}  # step itself: once
