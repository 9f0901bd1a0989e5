"""The TensorFlow and Keras families (few tests: importing TF takes seconds): ragged and
sparse tensors by their components, generators by state, Keras optimizers and metrics by
their variables, Keras layers and tf.Modules by their own attributes too. Tensors,
variables and models: tests/test_check.py."""

from __future__ import annotations

import numpy as np
import pytest

from det_nb.fingerprint import describe_difference, fingerprint, snapshot

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def test_ragged_and_sparse_tensors_by_their_components() -> None:
    """Before, a RaggedTensor was "nested more than 100 levels deep" at [][][]..."""
    ragged = tf.ragged.constant([[1, 2], [3]])
    assert fingerprint(ragged) == fingerprint(tf.ragged.constant([[1, 2], [3]]))
    assert fingerprint(ragged).summary == "tf.RaggedTensor int32 (2, None)"
    assert describe_difference(ragged, tf.ragged.constant([[1, 2], [4]]), "r") == (
        "r: tf.RaggedTensor: flat_values: 1 of 3 elements differ; max abs difference 1; "
        "first at flat_values[2]")
    assert describe_difference(ragged, tf.ragged.constant([[1], [2, 3]]), "r") == (
        "r: tf.RaggedTensor: nested_row_splits[0]: 1 of 3 elements differ; "
        "max abs difference 1; first at nested_row_splits[0][1]")
    sparse = tf.sparse.SparseTensor([[0, 1], [1, 2]], [1.0, 2.0], [2, 3])
    other = tf.sparse.SparseTensor([[0, 1], [1, 2]], [1.0, 2.5], [2, 3])
    assert fingerprint(sparse) == fingerprint(tf.sparse.SparseTensor([[0, 1], [1, 2]],
                                                                     [1.0, 2.0], [2, 3]))
    assert describe_difference(sparse, other, "s") == (
        "s: tf.SparseTensor: values: 1 of 2 elements differ; max abs difference 0.5; "
        "first at values[1]")
    assert fingerprint(snapshot(sparse)) == fingerprint(sparse)


def test_generators_and_datasets() -> None:
    a, b = tf.random.Generator.from_seed(1), tf.random.Generator.from_seed(1)
    assert fingerprint(a) == fingerprint(b)
    b.normal([1])
    assert describe_difference(a, b, "g") == (
        "g: tf.random.Generator state differs, so its next draws differ")
    assert fingerprint(tf.data.Dataset.range(3)).reason == (
        "a tf.data.Dataset is a pipeline, not values: compare what it yields")


def trained_optimizer(seed: int, steps: int) -> tuple:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    data = np.random.default_rng(seed).random((8, 2)).astype("float32")
    model.fit(data, data.sum(axis=1), epochs=steps, batch_size=8, verbose=0)
    metric = keras.metrics.Mean()
    metric.update_state(data.sum(axis=1))
    return model.optimizer, metric


def test_keras_optimizers_and_metrics_by_their_variables() -> None:
    (optimizer, metric), (same, same_metric) = trained_optimizer(1, 1), trained_optimizer(1, 1)
    assert fingerprint(optimizer) == fingerprint(same)  # its session-numbered name aside
    assert fingerprint(metric) == fingerprint(same_metric)
    assert fingerprint(optimizer).summary == "Adam (keras optimizer, 6 variables, 1 iteration)"
    further, _ = trained_optimizer(1, 2)
    assert describe_difference(optimizer, further, "opt") == (
        "opt: Adam: variables[0]: 1 of 1 elements differ; max abs difference 1")
    other_metric = trained_optimizer(2, 1)[1]
    assert describe_difference(metric, other_metric, "m").startswith(
        "m: Mean: variables[0]: 1 of 1 elements differ; max abs difference ")


class Scaled(keras.layers.Layer):
    """A layer with more than weights: a constant tensor and a number of its own."""

    def __init__(self, temperature: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.proj = keras.ops.convert_to_tensor(np.full(2, temperature, dtype="float32"))
        self.temperature = temperature

    def call(self, x: object) -> object:
        return x * self.proj / self.temperature


def scaled_model(temperature: float = 2.0) -> object:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((2,))
    hidden = keras.layers.Dropout(0.5, seed=1)(keras.layers.Dense(2)(inputs))
    model = keras.Model(inputs, Scaled(temperature)(hidden))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 2), "float32"), np.ones((4, 2), "float32"), epochs=1, verbose=0)
    return model


def test_a_keras_model_is_compared_by_its_layers_plain_attributes_and_tensors() -> None:
    """The same model built and trained twice is equal (Keras numbers names per session);
    a layer's own tensor, number or seed generator that differs is found by position."""
    model = scaled_model()
    assert fingerprint(model) == fingerprint(scaled_model())
    found = describe_difference(model, scaled_model(temperature=3.0), "model")
    assert found == "model: Functional: attributes[4]: Scaled: proj: 2 of 2 elements differ; " \
                    "max abs difference 1; first at proj[0]"
    dropout, drawn = keras.layers.Dropout(0.5, seed=1), keras.layers.Dropout(0.5, seed=1)
    drawn.seed_generator.next()  # as a training step does: the next masks differ
    assert describe_difference(dropout, drawn, "d") == (
        "d: Dropout: attributes[0]: Dropout: seed_generator: SeedGenerator state differs, "
        "so its next draws differ")
    layer = Scaled(2.0)
    layer.temperature = 5.0
    assert describe_difference(Scaled(2.0), layer, "layer") == (
        "layer: Scaled: attributes[0]: Scaled: temperature: float differs by 3")


class Projection(tf.Module):
    def __init__(self, scale: float) -> None:
        super().__init__(name="projection")
        self.w = tf.Variable([1.0, 2.0])
        self.proj = tf.constant([1.0, 2.0]) * scale
        self.scale = scale
        self.parts = [tf.Module(name="part")]


def test_a_tf_module_is_compared_by_its_variables_and_its_own_attributes() -> None:
    assert fingerprint(Projection(1.0)) == fingerprint(Projection(1.0))
    assert describe_difference(Projection(1.0), Projection(2.0), "m") == (
        "m: Projection: attributes['proj']: 2 of 2 elements differ; max abs difference 2; "
        "first at attributes['proj'][0]")


class Calibrated(keras.layers.Layer):
    """A layer keeping a NumPy scalar, a list and a dict of its own (Keras tracks the list
    and the dict in its own container types)."""

    def __init__(self, scale: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.scale = np.float32(scale)
        self.history = [scale, np.float64(1.0)]
        self.bounds = {"low": np.zeros(2, "float32"), "steps": (1, 2)}

    def call(self, x: object) -> object:
        return x * self.scale


def test_numpy_scalars_lists_and_dicts_in_a_layer_are_compared() -> None:
    assert fingerprint(Calibrated(0.5)) == fingerprint(Calibrated(0.5))
    assert describe_difference(Calibrated(0.5), Calibrated(0.25), "layer") == (
        "layer: Calibrated: attributes[0]: Calibrated: history[0]: float differs by 0.25")
    changed = Calibrated(0.5)
    changed.scale = np.float32(0.75)
    assert describe_difference(Calibrated(0.5), changed, "layer") == (
        "layer: Calibrated: attributes[0]: Calibrated: scale: 1 of 1 elements differ; "
        "max abs difference 0.25")
    changed = Calibrated(0.5)
    changed.bounds["low"] = np.ones(2, "float32")
    assert describe_difference(Calibrated(0.5), changed, "layer").startswith(
        "layer: Calibrated: attributes[0]: Calibrated: bounds['low']: 2 of 2 elements differ")


def fitted(functional: bool) -> object:
    """A Sequential or a two-output functional model, built and fitted from one seed."""
    keras.utils.set_random_seed(5)
    data = np.random.default_rng(5).random((8, 2)).astype("float32")
    if functional:
        inputs = keras.Input((2,))
        hidden = keras.layers.LayerNormalization()(keras.layers.Dense(2)(inputs))
        model = keras.Model(inputs, [keras.layers.Dense(1)(hidden), keras.layers.Dense(1)(hidden)])
        model.compile(optimizer="adam", loss="mse", metrics=["mae", "mae"])
        model.fit(data, [data[:, :1], data[:, 1:]], epochs=2, batch_size=4, verbose=0)
    else:
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3),
                                  keras.layers.Dropout(0.5, seed=1),
                                  keras.layers.BatchNormalization(), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        model.fit(data, data[:, :1], epochs=2, batch_size=4, verbose=0)
    return model


@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
def test_a_model_built_and_fitted_twice_from_one_seed_is_equal(functional: bool) -> None:
    """Keras's bookkeeping (session-numbered output names, the history callback) is left
    out; a ``LayerNormalization``'s ``axis`` list is compared."""
    from det_nb.values import view_of

    model = fitted(functional)
    assert fingerprint(model) == fingerprint(fitted(functional))
    if functional:
        attributes = view_of(model).payload["attributes"]
        assert any("axis" in part.view.payload for part in attributes.values())
