"""The guard det_nb's command lines run under: interrupts and a closed pipe end in one line.

``python -m det_nb verify|trials|kernel`` and each module's own ``__main__`` run their
``main`` through :func:`run`, so that:

- Ctrl-C (KeyboardInterrupt) ends in one line, ``PROG: interrupted``, and exit status 130;
- SIGTERM is raised in the main thread as :class:`Terminated`, so ``finally`` and ``with``
  blocks run on the way out (kernels stopped, clusters closed, connection files and
  temporary folders removed), and ends in ``PROG: terminated (SIGTERM)`` and exit 143.
  Further SIGTERMs are ignored until then, so they do not cut the clean-up short
  (SIGKILL still ends the process at once);
- a stdout closed by its reader (``... | head``) ends the command quietly: no
  BrokenPipeError traceback, nothing on stderr, stdout pointed at /dev/null so nothing
  fails at exit, and exit status 141 (128 + SIGPIPE: what the shell reports for a
  command that a closed pipe stopped, so ``set -o pipefail`` sees that it did not finish).

A command says what it cleaned up by adding a note to the exception as it passes
(``error.add_note("the cluster it started is stopped")``): the line becomes
``PROG: interrupted; the cluster it started is stopped``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

#: Exit statuses: 128 + the signal's number, as a shell reports a process it stopped.
INTERRUPTED = 128 + signal.SIGINT
TERMINATED = 128 + signal.SIGTERM
BROKEN_PIPE = 128 + signal.SIGPIPE


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread (a SystemExit: uncaught, it still exits 143).

    A SystemExit rather than a plain exception, so that ``except Exception`` clauses let
    it pass and asyncio stops its loop for it, as it does for KeyboardInterrupt.
    """

    def __init__(self) -> None:
        super().__init__(TERMINATED)


def run(prog: str, command: Callable[[], int]) -> int:
    """Run ``command`` (a ``main``) under the guard; its exit status, or 130, 143 or 141."""
    with _sigterm_raises():
        try:
            return command()
        except KeyboardInterrupt as error:
            _say(prog, "interrupted", error)
            return INTERRUPTED
        except Terminated as error:
            _say(prog, "terminated (SIGTERM)", error)
            return TERMINATED
        except BrokenPipeError:
            if not _stdout_closed():
                raise  # another pipe: a bug, shown as one
            _silence_stdout()
            return BROKEN_PIPE


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread for the duration (then restored).

    Outside the main thread, where Python cannot set handlers, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up runs to its end
        raise Terminated()

    before = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def _say(prog: str, what: str, error: BaseException) -> None:
    """The one line on stderr, with the notes the command added; never raises."""
    notes = "".join(f"; {note}" for note in getattr(error, "__notes__", ()))
    with contextlib.suppress(Exception):
        print(f"{prog}: {what}{notes}", file=sys.stderr, flush=True)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone."""
    try:
        handle = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # replaced by something without a file
        return False
    if not hasattr(select, "poll"):  # no way to ask: a broken pipe is most likely stdout's
        return True
    poller = select.poll()
    poller.register(handle, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _silence_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered, and Python's flush at exit, go there."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
