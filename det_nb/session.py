"""The session: the one place that holds the current lineage and applies it.

Arguments flow one way: validated into a :class:`Lineage` and :class:`Settings`, applied
to every imported source, and registered as post-import hooks for frameworks imported
later; :meth:`Session.status` reads the sources back into a report.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from det_nb import cpu_kernels, determinism, entropy_audit, threads, xla
from det_nb.cluster import cluster_trial_seed
from det_nb.determinism import Settings
from det_nb.import_guard import ImportGuard
from det_nb.lineage import Lineage, make_lineage
from det_nb.sources import Source, default_sources
from det_nb.sources.keras import Keras
from det_nb.status import Check, Report

NOT_SEEDED = "det_nb is not seeded yet: run %det_seed SEED or det_nb.seed(SEED) first"


class Session:
    """Holds the lineage and settings, seeds the sources, and reports their state."""

    def __init__(self, sources: tuple[Source, ...] | None = None) -> None:
        self.sources = default_sources() if sources is None else sources
        self.lineage: Lineage | None = None
        self.settings = Settings()
        self.applied_seed: int | None = None  # trial seed, or the cell seed under per-cell
        self.last_cell_seed: int | None = None
        self.cluster_seed: int | None = None  # the Determined trial's seed, when on a cluster
        self.cells_observed = False  # an IPython shell calls before_cell (extension loaded)
        self._seeded: dict[str, tuple[str, str | None]] = {}  # name -> (what, fingerprint)
        self._failed: dict[str, str] = {}  # name -> error raised while applying
        self._hooks: dict[str, Callable[[ModuleType], None]] = {}  # module -> pending hook
        self._import_guard = ImportGuard()
        self._listeners: list[Callable[[], None]] = []
        self._rng: Any = None  # numpy Generator, made on first det_nb.rng()

    # -- applying -----------------------------------------------------------------------

    def seed(
        self,
        seed: object = None,
        trial: object = None,
        *,
        scheme: str = "seedsequence",
        threads: int | None = 1,
        deterministic_ops: bool | str = False,
        per_cell: bool = False,
        portable: bool = True,
    ) -> Lineage:
        """Validate everything, set the pins, then seed every source and apply the settings.

        Raises ValueError (and changes nothing) on bad input. With no seed, one is
        assigned from the clock and shown in the lineage. Nothing here loads NumPy before
        the CPU-kernel and thread pins it reads when it loads (the lineage is derived in
        plain Python).
        """
        cluster_seed = cluster_trial_seed()  # may raise: before anything changes
        lineage = make_lineage(seed, trial, scheme, cluster_seed=cluster_seed)
        settings = Settings(
            determinism.validate_threads(threads),
            determinism.validate_deterministic_ops(deterministic_ops),
            determinism.validate_flag(per_cell, "per_cell"),
            determinism.validate_flag(portable, "portable"),
        )
        self._pin(settings)
        return self._adopt(lineage, settings, cluster_seed)

    def apply(self, lineage: Lineage, settings: Settings) -> Lineage:
        """Seed every source from an already built lineage, keeping where its seed came from.

        For the dashboard's controls and for replaying a run record; ``seed`` builds the
        lineage from user input and comes here.
        """
        cluster_seed = cluster_trial_seed()  # may raise: before anything changes
        self._pin(settings)
        return self._adopt(lineage, settings, cluster_seed)

    @staticmethod
    def _pin(settings: Settings) -> None:
        """Set what libraries read when they load (before anything here can load NumPy)."""
        cpu_kernels.apply(settings.portable)
        threads.apply(settings.threads)
        xla.apply(bool(settings.deterministic_ops))  # in XLA_FLAGS before JAX can load

    def _adopt(self, lineage: Lineage, settings: Settings, cluster_seed: int | None) -> Lineage:
        entropy_audit.activate()  # unseeded draws by the user's code are reported from now on
        self.lineage, self.settings, self.cluster_seed = lineage, settings, cluster_seed
        self.last_cell_seed = None
        self._apply(lineage.trial_seed)
        return lineage

    def reseed(self) -> Lineage:
        """Restart every stream from the current lineage (ValueError if there is none)."""
        if self.lineage is None:
            raise ValueError(NOT_SEEDED)
        self._apply(self.lineage.trial_seed)
        return self.lineage

    def before_cell(self, source: str) -> None:
        """With per-cell re-seeding on, seed everything from (trial seed, cell text)."""
        if self.lineage is not None and self.settings.per_cell:
            self.last_cell_seed = self.lineage.cell_seed(source)
            self._apply(self.last_cell_seed)

    def _apply(self, seed: int) -> None:
        self.applied_seed = seed
        self._seeded.clear()
        self._failed.clear()
        for source in self.sources:
            if source.loaded() is not None:
                self._apply_to(source)
            elif source.module not in self._hooks and source.installed():  # cheap test first
                self._register_hook(source.module)
        if self._rng is not None:
            self._rng.bit_generator.state = _fresh_generator(seed).bit_generator.state
        self._notify()

    def _apply_to(self, source: Source) -> None:
        """Configure, then seed, one imported source; a failure is reported, not raised."""
        try:
            source.configure(self.settings)
            what = source.seed(self.applied_seed)
            self._seeded[source.name] = (what, source.fingerprint())
        except Exception as error:
            self._failed[source.name] = f"{type(error).__name__}: {error}"

    def _register_hook(self, module: str) -> None:
        def on_import(_module: ModuleType) -> None:
            self._hooks.pop(module, None)
            self._import_guard.watched.discard(module)
            if self.lineage is not None:
                with contextlib.suppress(Exception):  # the status reads back every pool
                    threads.pin_loaded(self.settings.threads)  # native pools it brought
                for source in self.sources:
                    if source.module == module:
                        self._apply_to(source)
                self._import_guard.imported(module)
                # Keras's import hook can run while TensorFlow's own import is unfinished;
                # views read every framework, so they update once nothing is half-imported
                # (after the cell at the latest).
                if not any(_importing(source.module) for source in self.sources):
                    self._notify()

        import wrapt  # here, not at module level: it costs %load_ext 20 ms (asyncio)

        self._hooks[module] = on_import
        self._import_guard.watched.add(module)
        self._import_guard.install()
        wrapt.register_post_import_hook(on_import, module)

    def close(self) -> None:
        """Remove the post-import hooks still waiting for an import (for unload)."""
        if self._hooks:
            from wrapt import importer as wrapt_importer

            with wrapt_importer._post_import_hooks_lock:
                for module, hook in self._hooks.items():
                    pending = wrapt_importer._post_import_hooks.get(module) or []
                    if hook in pending:
                        pending.remove(hook)
        self._hooks.clear()
        self._import_guard.uninstall()
        for source in self.sources:
            try:  # one source failing to tidy up must not leave the others half-closed
                source.close()
            except Exception as error:
                warnings.warn(f"det_nb: closing {source.name} failed: {error!r}", stacklevel=2)
        self._listeners.clear()

    @property
    def pending_hooks(self) -> tuple[str, ...]:
        """Modules whose import will seed them."""
        return tuple(self._hooks)

    # -- listeners (the dashboard) ------------------------------------------------------

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every seeding, re-seeding or framework import."""
        if callback not in self._listeners:
            self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self) -> None:
        # A view that fails to update must not undo or hide a seeding that happened.
        for callback in list(self._listeners):
            try:
                callback()
            except Exception as error:
                warnings.warn(f"det_nb: a view failed to update: {error!r}", stacklevel=2)

    # -- derived values -----------------------------------------------------------------

    def _require_lineage(self) -> Lineage:
        if self.lineage is None:
            raise ValueError(NOT_SEEDED)
        return self.lineage

    def rng(self) -> Any:
        """The session's NumPy Generator: ``np.random.default_rng(trial_seed)``.

        The same object every call; re-seeding restarts its stream in place, so a
        reference held by the user restarts too (per-cell: from the cell's seed).
        """
        self._require_lineage()
        if self._rng is None:
            self._rng = _fresh_generator(self.applied_seed)
        return self._rng

    def rng_state(self) -> dict | None:
        """The state of :meth:`rng`'s Generator, or None before it was made (for save_state)."""
        return None if self._rng is None else self._rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        """Put :meth:`rng`'s Generator (made now if need be) in ``state`` (for load_state)."""
        self.rng().bit_generator.state = state

    def jax_key(self) -> Any:
        """``jax.random.key(seed)`` with the seed in force (trial seed, or the cell's seed).

        Imports JAX: call it only where JAX is used (ValueError where it is not installed).
        """
        self._require_lineage()
        try:
            import jax
        except ImportError as error:
            raise ValueError(f"det_nb.jax_key() needs JAX, which cannot be imported here "
                             f"({error}): pip install jax") from None
        return jax.random.key(self.applied_seed)

    def worker_seed(self, worker: int) -> int:
        """Seed of data-loader worker or rank ``worker`` of the current trial."""
        return self._require_lineage().worker_seed(worker)

    # -- reading back -------------------------------------------------------------------

    def status(self) -> Report:
        """Read every source and the runtime into a report (changes nothing)."""
        checks: list[Check] = []
        for source in self.sources:
            checks.append(self._source_check(source))
            if source.installed():
                checks.extend(source.checks(self.settings))
            if isinstance(source, Keras) and source.name in self._seeded:
                checks.append(self._keras_layers_check(source))
        checks.append(entropy_audit.status_check())
        checks.extend(cpu_kernels.checks())
        checks.extend(threads.checks())
        if self.cluster_seed is not None:
            checks.append(self._cluster_check())
        checks.append(self._per_cell_check())
        from det_nb import state  # it builds on the session

        checks.append(state.status_check(self))
        checks.append(determinism.hash_seed_check())
        checks.append(determinism.gpu_check(determinism.visible_gpus(),
                                            self.settings.deterministic_ops))
        return Report(self.lineage, tuple(checks))

    def _cluster_check(self) -> Check:
        if self.lineage.experiment_seed_origin == "cluster":
            return Check("determined cluster", "ok",
                         f"adopted the Determined trial's seed {self.cluster_seed}")
        return Check(
            "determined cluster", "warn",
            f"an explicit seed overrides the cluster's trial seed {self.cluster_seed}: draws "
            "differ from the cluster run's", "%det_seed with no seed adopts the cluster's",
            caveat=True,
        )

    def _per_cell_check(self) -> Check:
        if not self.settings.per_cell:
            return Check(
                "per-cell seeding", "off",
                "off: draws continue from %det_seed across cells, so they depend on the order "
                "cells run in", "%det_seed SEED --per-cell",
            )
        if not self.cells_observed:
            return Check("per-cell seeding", "warn",
                         "on, but no IPython shell re-seeds cells: the extension is not loaded",
                         "%load_ext det_nb")
        last = "" if self.last_cell_seed is None else f"; last cell seed {self.last_cell_seed}"
        return Check("per-cell seeding", "ok",
                     f"on: every cell re-seeded from (trial seed, cell text){last}")

    def _source_check(self, source: Source) -> Check:
        name = source.name
        if not source.installed():
            return Check(name, "off", "not installed")
        if self.lineage is None:
            return Check(name, "off", "not seeded yet", "%det_seed SEED")
        seed = self.applied_seed
        if name in self._failed:
            return Check(name, "warn", f"seeding failed: {self._failed[name]}",
                         "fix the error above, then run %det_seed again")
        if source.loaded() is None:
            return Check(name, "ok", f"not imported yet: {source.pending(seed)}")
        if name not in self._seeded:
            return Check(name, "warn", "imported but not seeded (det_nb was unloaded meanwhile)",
                         "run %det_seed again")
        what, seeded_print = self._seeded[name]
        current = source.fingerprint()
        if current is None:
            return Check(name, "ok", what)
        moved = "no draws since seeding" if current == seeded_print else "draws made since seeding"
        covers = f"{source.fingerprint_covers}: " if source.fingerprint_covers else ""
        return Check(name, "ok", f"{what}; {covers}{moved}")

    def _keras_layers_check(self, keras: Keras) -> Check:
        early = keras.early_generators()
        if not early:
            return Check("keras layers", "ok", "every live random layer was built after seeding")
        return Check(
            "keras layers", "warn",
            f"{early} random layer(s) (Keras SeedGenerator) built before the latest "
            "seeding keep their earlier random state and do not restart",
            "re-run the cells that build the model after %det_seed",
        )


def _importing(module: str) -> bool:
    """Whether ``module`` is in ``sys.modules`` but its import has not finished."""
    spec = getattr(sys.modules.get(module), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _fresh_generator(seed: int) -> Any:
    import numpy

    return numpy.random.default_rng(seed)


_SESSION: Session | None = None


def get_session() -> Session:
    """The process's session, shared by the magics, the dashboard and the Python API."""
    global _SESSION
    if _SESSION is None:
        _SESSION = Session()
    return _SESSION
