"""Keep a framework's import from moving the user's Python and NumPy streams.

Some libraries draw from the global ``random`` while they are imported (Keras imports
``rich``, whose style module calls ``random.getrandbits``). A framework imported after
``%det_seed`` would then shift every later draw, and a model built after the import
would differ from one built after re-seeding. The guard snapshots the global streams
when the import of a watched framework begins, and the session restores them once it
has seeded the framework: the import draws nothing from the user's streams.
"""

from __future__ import annotations

import random
import sys
from typing import Any


def _global_states() -> tuple[Any, Any]:
    numpy = sys.modules.get("numpy")
    return random.getstate(), None if numpy is None else numpy.random.get_state()


class ImportGuard:
    """A ``sys.meta_path`` finder that finds nothing: it only notes when an import starts."""

    def __init__(self) -> None:
        self.watched: set[str] = set()
        self._outermost: str | None = None  # the watched import that is running
        self._saved: tuple[Any, Any] | None = None

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        """Snapshot the streams when the outermost watched import begins."""
        if self._outermost is not None and self._outermost not in sys.modules:
            # That import failed (a module being imported is in sys.modules until it
            # fails): drop its snapshot rather than rewind a later import to it.
            self._outermost = self._saved = None
        if self._outermost is None and fullname in self.watched and fullname not in sys.modules:
            self._outermost, self._saved = fullname, _global_states()

    def imported(self, module: str) -> None:
        """After ``module`` was imported and seeded: restore the streams if it was outermost."""
        if module != self._outermost:
            return
        python_state, numpy_state = self._saved
        random.setstate(python_state)
        if numpy_state is not None:
            sys.modules["numpy"].random.set_state(numpy_state)
        self._outermost = self._saved = None

    def install(self) -> None:
        """Put the guard first on ``sys.meta_path`` (once)."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        """Take the guard off ``sys.meta_path``."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.watched.clear()
