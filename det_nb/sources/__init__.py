"""One module per PRNG source, all behind :class:`det_nb.sources.base.Source`."""

from det_nb.sources.base import Source
from det_nb.sources.jax import Jax
from det_nb.sources.keras import Keras
from det_nb.sources.numpy_global import NumpyGlobal
from det_nb.sources.python_random import PythonRandom
from det_nb.sources.tensorflow import TensorFlow
from det_nb.sources.torch import Torch


def default_sources() -> tuple[Source, ...]:
    """Every source, in seeding order: Keras after TF, since Keras re-seeds TF's op seed."""
    return (PythonRandom(), NumpyGlobal(), TensorFlow(), Keras(), Torch(), Jax())


__all__ = ["Source", "default_sources"]
