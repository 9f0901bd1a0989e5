"""The one interface every PRNG source implements."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from types import ModuleType

from det_nb.determinism import Settings
from det_nb.status import Check


class Source(ABC):
    """A PRNG in the kernel that det_nb seeds: Python ``random``, NumPy, TensorFlow, ...

    A source never imports its framework: it acts only once ``module`` is in
    ``sys.modules`` (the session seeds it then, from a post-import hook if need be).
    """

    #: Name shown in the status.
    name: str
    #: Top-level module whose import makes the source seedable.
    module: str

    def installed(self) -> bool:
        """Whether the framework can be imported here (without importing it)."""
        return self.module in sys.modules or importlib.util.find_spec(self.module) is not None

    def loaded(self) -> ModuleType | None:
        """The framework's module if the user (or a library) imported it, else None."""
        return sys.modules.get(self.module)

    @abstractmethod
    def seed(self, seed: int) -> str:
        """Seed the source's global state; return what was seeded, in words."""

    def configure(self, settings: Settings) -> None:  # noqa: B027 - most sources have none
        """Apply thread and op-determinism settings; runs before :meth:`seed`."""

    def checks(self, settings: Settings) -> list[Check]:
        """Checks of the settings this framework honours, read from its runtime now."""
        return []

    def fingerprint(self) -> str | None:
        """A digest of the current PRNG state, or None where the state cannot be read.

        Compared with the digest taken right after seeding, it tells whether draws
        were made since.
        """
        return None


def digest(*parts: object) -> str:
    """A short stable digest of ``repr``/bytes parts (for state fingerprints)."""
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
    return h.hexdigest()
