"""Kernels restricted to some CPUs, from their first instruction: another core count, emulated.

OpenBLAS, OpenMP and torch size their thread pools from the CPUs the process may run on
(its affinity), read when they load. A kernel started on one CPU therefore behaves like a
one-core machine, and one on all CPUs like this machine: that is how ``verify --vary
threads`` shows a result that depends on the core count. The affinity is set before the
kernel imports anything: its command is prefixed with a tiny Python program that calls
``os.sched_setaffinity`` and then ``exec``s the kernel (affinity survives ``exec``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from jupyter_client.manager import AsyncKernelManager

#: Set the affinity given in argv[1], then become the program in argv[2:].
_PIN_THEN_EXEC = ("import os, sys; "
                  "os.sched_setaffinity(0, [int(cpu) for cpu in sys.argv[1].split(',')]); "
                  "os.execvp(sys.argv[2], sys.argv[2:])")


def usable_cpus() -> frozenset[int]:
    """The CPUs this process may run on; ValueError (one line) where that cannot be set."""
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("CPU affinity cannot be set on this system (Linux only), so no "
                         "other core count can be emulated")
    return frozenset(os.sched_getaffinity(0))


class PinnedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run on ``cpus`` only (all, when ``cpus`` is None)."""

    cpus: frozenset[int] | None = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """The kernelspec's command, behind the affinity prefix when ``cpus`` is set."""
        command = super().format_kernel_cmd(extra_arguments)
        if self.cpus is None:
            return command
        listed = ",".join(str(cpu) for cpu in sorted(self.cpus))
        return [sys.executable, "-c", _PIN_THEN_EXEC, listed, *command]


def pinned_manager(cpus: frozenset[int] | None, **traits: Any) -> PinnedKernelManager:
    """A :class:`PinnedKernelManager` for ``cpus`` (the traits go to the manager)."""
    manager = PinnedKernelManager(**traits)
    manager.cpus = cpus
    return manager
