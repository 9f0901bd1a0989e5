"""Registering det_nb in an IPython shell, and removing it again for %reload_ext."""

from __future__ import annotations

import sys
from typing import Any

from det_nb import cpu_kernels, entropy_audit, threads
from det_nb.determinism import validate_threads
from det_nb.magics import DetMagics
from det_nb.session import get_session


def _registered(shell: Any) -> DetMagics | None:
    return next((c for c in shell.configurables if isinstance(c, DetMagics)), None)


def load(shell: Any) -> None:
    """Register the magics and their config traits; loading twice registers once."""
    if _registered(shell) is not None:
        return
    # IPython picks the banner tip with the global random.choice on every kernel_info
    # request (each front-end (re)connect), which would move the seeded Python stream.
    shell.enable_tip = False
    # Magics.__init__ adds the instance to shell.configurables, which makes %config see it.
    magics = DetMagics(shell=shell, session=get_session(), parent=shell)
    # Libraries read their kernel choice and thread counts when they load: pin both
    # before the user imports them.
    cpu_kernels.apply(magics.portable)
    threads.apply(_configured_threads(magics))
    shell.register_magics(magics)
    shell.events.register("pre_run_cell", magics.before_cell)
    shell.events.register("post_run_cell", magics.after_cell)
    magics.session.cells_observed = True
    entropy_audit.install(shell)  # calls that draw from OS entropy, reported in the status


def _configured_threads(magics: DetMagics) -> int | None:
    """The threads ``%det_seed`` pins by default: ``DetMagics.threads``, else single_thread.

    A configured count out of range pins nothing now; ``%det_seed`` refuses it in one line.
    """
    if magics.threads is None:
        return 1 if magics.single_thread else None
    try:
        return validate_threads(magics.threads)
    except ValueError:
        return None


def unload(shell: Any) -> None:
    """Unregister magics and config, and drop the session's pending import hooks."""
    magics = _registered(shell)
    if magics is None:
        return
    for kind, names in magics.magics.items():
        for name in names:
            shell.magics_manager.magics[kind].pop(name, None)
    shell.magics_manager.registry.pop(type(magics).__name__, None)
    shell.configurables.remove(magics)
    shell.events.unregister("pre_run_cell", magics.before_cell)
    shell.events.unregister("post_run_cell", magics.after_cell)
    magics.session.cells_observed = False
    entropy_audit.uninstall()
    if "det_nb.dashboard" in sys.modules:
        from det_nb.dashboard import close_dashboard

        close_dashboard(magics.session)
    magics.session.close()
