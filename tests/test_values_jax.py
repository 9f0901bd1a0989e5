"""The JAX family: arrays (any device, bfloat16 included), typed PRNG keys by their key
data, and pytrees (optax and flax states) through the container walk."""

from __future__ import annotations

import collections

import pytest

from det_nb.fingerprint import describe_difference, fingerprint, is_code, snapshot

jax = pytest.importorskip("jax")
jnp = jax.numpy

# optax's Adam state is a named tuple of pytrees, as here.
ScaleByAdamState = collections.namedtuple("ScaleByAdamState", "count mu nu")


def params(seed: int) -> dict:
    key = jax.random.key(seed)
    return {"dense": {"kernel": jax.random.normal(key, (3, 2)), "bias": jnp.zeros(2)}}


def test_arrays_from_the_same_key_are_equal_and_a_changed_element_is_located() -> None:
    a, b = params(0), params(0)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a["dense"]["kernel"]).summary == "jax.Array float32 (3, 2)"
    b["dense"]["kernel"] = b["dense"]["kernel"].at[2, 1].add(0.5)
    assert describe_difference(a, b, "params") == (
        "params['dense']['kernel']: jax.Array float32 (3, 2): 1 of 6 elements differ; "
        "max abs difference 0.5; first at params['dense']['kernel'][2, 1]")
    half = jnp.ones(3, dtype=jnp.bfloat16)
    assert describe_difference(half, half.at[1].set(3), "h") == (
        "h: jax.Array bfloat16 (3,): 1 of 3 elements differ; max abs difference 2; "
        "first at h[1]")
    assert fingerprint(snapshot(a)) == fingerprint(a)


def test_typed_keys_compare_by_their_key_data() -> None:
    key = jax.random.key(0)
    assert fingerprint(key) == fingerprint(jax.random.key(0))
    assert fingerprint(key).summary == "jax PRNG key threefry2x32 ()"
    split = jax.random.split(key)[0]
    assert describe_difference(key, split, "key") == (
        "key: jax PRNG key state differs, so its next draws differ")
    raw = jax.random.PRNGKey(0)  # a legacy key is a plain uint32 array
    assert fingerprint(raw).summary == "jax.Array uint32 (2,)"


def test_optimizer_state_pytrees_are_walked_by_field_and_key() -> None:
    def state(seed: int) -> ScaleByAdamState:
        grads = params(seed)
        return ScaleByAdamState(jnp.zeros([], jnp.int32), grads, jax.tree.map(jnp.square, grads))

    assert fingerprint(state(1)) == fingerprint(state(1))
    changed = state(1)
    changed.nu["dense"]["bias"] = changed.nu["dense"]["bias"].at[0].set(1.0)
    assert describe_difference(state(1), changed, "opt_state") == (
        "opt_state: ScaleByAdamState: nu['dense']['bias']: 1 of 2 elements differ; "
        "max abs difference 1; first at nu['dense']['bias'][0]")


def test_jitted_functions_are_code() -> None:
    assert is_code(jax.jit(lambda x: x + 1))
    assert not is_code(jnp.ones(2))


def test_det_check_does_not_rehash_jax_arrays_a_cell_reads(monkeypatch) -> None:
    """JAX arrays are immutable: a cell that reads one cannot change it in place, so it is
    not fingerprinted before each run (a host copy each time)."""
    from IPython.core.interactiveshell import InteractiveShell

    from det_nb import check as check_module

    shell = InteractiveShell.instance()
    source = jnp.arange(4.0)
    shell.user_ns["source"] = source
    hashed: list[int] = []
    real = check_module.fingerprint

    def counting(value: object) -> object:
        hashed.append(id(value))
        return real(value)

    monkeypatch.setattr(check_module, "fingerprint", counting)
    try:
        report = check_module.run_check(shell, "total = source.sum()", 2, lambda: None)
    finally:
        for name in ("source", "total"):
            shell.user_ns.pop(name, None)
    assert report.text().splitlines() == [
        "deterministic across 2 runs", "compared:", "  total: jax.Array float32 ()"]
    assert hashed and id(source) not in hashed
