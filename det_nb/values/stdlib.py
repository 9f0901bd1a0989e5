"""Objects of the standard library that hold settings, not results, but that a notebook
keeps in its names: compiled regular expressions by pattern and flags, loggers and their
handlers by what decides where and how they write, and threading's locks, conditions,
semaphores and events by their kind alone (they coordinate threads and hold no result).

``logging`` and ``threading`` are looked up in ``sys.modules``: a value cannot be one of
their objects before they are loaded, and recognising a value imports nothing.
"""

from __future__ import annotations

import functools
import re
import sys
from types import ModuleType
from typing import Any

from det_nb.values.base import Family, View, count, parts, scalar

# threading's classes whose instances coordinate threads: compared by kind only.
_THREADING_CLASSES = ("Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier")


class Stdlib(Family):
    """``re.Pattern``, ``logging.Logger`` and ``logging.Handler``, threading's ``Lock``,
    ``RLock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event`` and
    ``Barrier``."""

    name = "stdlib"

    def view(self, value: object, module: ModuleType | None) -> View | None:
        if isinstance(value, re.Pattern):
            named = {"pattern": value.pattern, "flags": int(value.flags)}
            return parts("Pattern", named, f"Pattern {value.pattern!r}")
        threading = sys.modules.get("threading")
        if threading is not None and isinstance(value, _coordinating(threading)):
            kind = type(value).__name__
            return scalar(kind, kind, f"{kind} (compared by kind: it holds no result)")
        logging: Any = sys.modules.get("logging")
        if logging is None:
            return None
        if isinstance(value, logging.Logger):
            return _logger_view(value)
        if isinstance(value, logging.Handler):
            return _handler_view(value)
        return None


@functools.cache
def _coordinating(threading: Any) -> tuple[type, ...]:
    """The types of threading's locks (C types, reached through an instance) and of its
    other synchronisation objects."""
    kinds = {type(threading.Lock()), type(threading.RLock()),
             getattr(threading, "_PyRLock", None)}  # the pure-Python RLock, where it exists
    kinds.update(getattr(threading, name, None) for name in _THREADING_CLASSES)
    return tuple(kind for kind in kinds if isinstance(kind, type))


def _logger_view(logger: Any) -> View:
    """A logger by its name, level, whether it passes records up, whether it is disabled,
    and its handlers."""
    handlers = list(logger.handlers)
    named = {"name": logger.name, "level": logger.level, "propagate": logger.propagate,
             "disabled": logger.disabled, "handlers": handlers}
    kind = type(logger).__name__
    return parts(kind, named, f"{kind} {logger.name!r} ({count(len(handlers), 'handler')})")


def _handler_view(handler: Any) -> View:
    """A handler by its class, level, its formatter's format strings and the name of the
    stream or file it writes to (not its lock, nor the stream object itself)."""
    kind = type(handler)
    named: dict[str, object] = {"class": f"{kind.__module__}.{kind.__qualname__}",
                                "level": handler.level}
    formatter = handler.formatter
    if formatter is not None:
        named["format"] = getattr(formatter, "_fmt", None)
        named["datefmt"] = getattr(formatter, "datefmt", None)
    stream = vars(handler).get("stream")
    if stream is not None:
        name = getattr(stream, "name", None)
        named["stream"] = name if isinstance(name, str) else type(stream).__name__
    filename = vars(handler).get("baseFilename")
    if isinstance(filename, str):
        named["file"] = filename
    return parts(kind.__name__, named, f"{kind.__name__} (logging handler)")
