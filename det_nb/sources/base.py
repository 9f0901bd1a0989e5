"""The one interface every PRNG source implements."""

from __future__ import annotations

import importlib.util
import sys
from abc import ABC, abstractmethod
from types import ModuleType
from typing import Any

from det_nb.determinism import Settings
from det_nb.status import Check

#: A source's PRNG state: named NumPy arrays (stored in a ``.npz``, never pickled).
State = dict[str, Any]


class Source(ABC):
    """A PRNG in the kernel that det_nb seeds: Python ``random``, NumPy, TensorFlow, ...

    A source never imports its framework: it acts only once ``module`` is in
    ``sys.modules`` (the session seeds it then, from a post-import hook if need be).
    """

    #: Name shown in the status.
    name: str
    #: Top-level module whose import makes the source seedable.
    module: str
    #: What :meth:`fingerprint` covers when it is not the whole state ("" when it is).
    fingerprint_covers: str = ""

    def installed(self) -> bool:
        """Whether the framework can be imported here (without importing it)."""
        return self.module in sys.modules or importlib.util.find_spec(self.module) is not None

    def loaded(self) -> ModuleType | None:
        """The framework's module if the user (or a library) imported it, else None."""
        return sys.modules.get(self.module)

    @abstractmethod
    def seed(self, seed: int) -> str:
        """Seed the source's global state; return what was seeded, in words."""

    def pending(self, seed: int) -> str:
        """What happens at import, for the status of a framework not imported yet."""
        return f"seeded with {seed} at import"

    def configure(self, settings: Settings) -> None:  # noqa: B027 - most sources have none
        """Apply thread and op-determinism settings; runs before :meth:`seed`."""

    def checks(self, settings: Settings) -> list[Check]:
        """Checks of the settings this framework honours, read from its runtime now."""
        return []

    def close(self) -> None:  # noqa: B027 - most sources hold nothing
        """Undo what the source installed in its framework (for ``%unload_ext``)."""

    def fingerprint(self) -> str | None:
        """A digest of the current PRNG state, or None where the state cannot be read.

        Compared with the digest taken right after seeding, it tells whether draws
        were made since.
        """
        return None

    def get_state(self) -> State | None:
        """The global PRNG state as named NumPy arrays, or None where there is none."""
        return None

    def check_state(self, state: State) -> None:
        """Raise ValueError unless :meth:`set_state` can take ``state`` here.

        By default the arrays must have the names, dtypes and shapes of the current state;
        called for every source before any is restored, so a bad file changes nothing.
        """
        expected = self.get_state()
        if expected is None:
            raise ValueError(f"{self.name} has no global state to restore")
        check_arrays(self.name, state, expected)

    def set_state(self, state: State) -> str:
        """Restore a state taken by :meth:`get_state`; return what was restored, in words."""
        raise ValueError(f"{self.name} has no global state to restore")


def check_arrays(name: str, state: State, expected: State) -> None:
    """ValueError unless ``state`` has exactly the array names, dtypes and shapes expected."""
    if set(state) != set(expected):
        raise ValueError(
            f"{name}: the file holds arrays {sorted(state)}, this {name} needs {sorted(expected)}"
        )
    for key, want in expected.items():
        got = state[key]
        if getattr(got, "dtype", None) != want.dtype or got.shape != want.shape:
            raise ValueError(
                f"{name}: array {key!r} is {getattr(got, 'dtype', type(got).__name__)}"
                f"{getattr(got, 'shape', '')}, this {name} needs {want.dtype}{want.shape}"
            )


def digest(*parts: object) -> str:
    """A short stable digest of ``repr``/bytes parts (for state fingerprints)."""
    import hashlib  # here: its OpenSSL load costs %load_ext about 2 ms

    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
    return h.hexdigest()
