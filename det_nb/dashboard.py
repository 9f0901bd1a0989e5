"""The seed dashboard: a live ipywidgets view of the session's lineage and status.

A plain class over ipywidgets 8 built-ins. It renders what the session holds and calls
the session's own functions (the ones ``%det_seed`` calls); it has no seeding logic. One
dashboard per session, subscribed to it, so every view on screen shows the current
lineage. ``text/plain`` and ``text/html`` carry the same content without ids or times,
for terminal IPython, exported HTML and nbval.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets

from det_nb.determinism import WARN, Settings
from det_nb.lineage import Lineage
from det_nb.session import Session
from det_nb.status import STATE_COLOURS, Check, Report

TITLE = "det_nb: seed lineage and determinism"
#: The deterministic-ops control's choices: label -> Settings.deterministic_ops.
DETERMINISTIC_OPS = (("off", False), ("on", True), ("warn", WARN))
MAX_THREADS = 1024
MAX_WORKERS = 64
_ERROR_COLOUR = "#cf222e"
_CELL = "padding:2px 8px;text-align:left;vertical-align:top"
_BORDER = "border-top:1px solid var(--jp-border-color2, #d0d7de)"


class Dashboard:
    """Widgets showing one session's lineage, settings and checks, with controls.

    Every control applies the whole set of controls through :meth:`Session.seed`, as
    ``%det_seed`` would with the same values; "Re-seed" restarts every stream
    (:meth:`Session.reseed` when the controls match what is in force). A ValueError
    from the session is shown in the error line and changes nothing.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._syncing = False
        text_style = {"description_width": "initial"}
        self.seed_field = widgets.Text(
            description="experiment seed", placeholder="from the clock",
            continuous_update=False, style=text_style, layout=widgets.Layout(width="230px"),
            tooltip="An integer in [0, 2**31-1]; leave empty to have one assigned.",
        ).add_class("det-nb-seed")
        self.trial_field = widgets.Text(
            description="trial", placeholder="none", continuous_update=False,
            style=text_style, layout=widgets.Layout(width="150px"),
            tooltip="Trial number; leave empty for none (the trial seed is then the "
            "experiment seed).",
        ).add_class("det-nb-trial")
        self.reseed_button = widgets.Button(
            description="Re-seed", button_style="primary", icon="refresh",
            tooltip="Restart every random stream from this lineage.",
        ).add_class("det-nb-reseed")
        self.single_thread = widgets.Checkbox(
            description="single-thread", indent=False, layout=widgets.Layout(width="auto"),
            tooltip="One thread in every pool that splits float reductions (BLAS/OpenMP, "
                    "torch, TensorFlow, JAX): the same floats on any core count.",
        ).add_class("det-nb-single-thread")
        self.thread_count = widgets.BoundedIntText(
            description="threads", min=0, max=MAX_THREADS, style=text_style,
            layout=widgets.Layout(width="130px"),
            tooltip="Threads of every pool when not single-thread; 0 leaves each library its "
                    "own count.",
        ).add_class("det-nb-threads")
        self.deterministic_ops = widgets.Dropdown(
            description="deterministic ops", options=DETERMINISTIC_OPS, style=text_style,
            layout=widgets.Layout(width="230px"),
            tooltip="on: deterministic kernels only (TensorFlow, torch, XLA for JAX); an op "
            "without one raises. warn: torch runs such ops and the status lists them.",
        ).add_class("det-nb-deterministic-ops")
        self.portable = widgets.Checkbox(
            description="portable kernels", indent=False, layout=widgets.Layout(width="auto"),
            tooltip="Pin CPU kernels to x86-64-v3 (AVX2 + FMA) before libraries load, so "
            "floats agree across CPUs.",
        ).add_class("det-nb-portable")
        self.workers = widgets.BoundedIntText(
            description="worker seeds", min=0, max=MAX_WORKERS, style=text_style,
            layout=widgets.Layout(width="150px"),
            tooltip="Show the seeds of this many data-loader workers or ranks.",
        ).add_class("det-nb-workers")
        self.verdict_view = widgets.HTML().add_class("det-nb-verdict")
        self.lineage_view = widgets.HTML().add_class("det-nb-lineage")
        self.threads_note = widgets.HTML().add_class("det-nb-threads-note")
        self.error = widgets.HTML().add_class("det-nb-error")
        self.status_view = widgets.HTML().add_class("det-nb-status")
        row = widgets.Layout(align_items="center", flex_flow="row wrap", grid_gap="4px 16px")
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>{TITLE}</b>"),
            self.verdict_view,
            self.lineage_view,
            widgets.HBox([self.seed_field, self.trial_field, self.reseed_button], layout=row),
            widgets.HBox([self.single_thread, self.thread_count, self.deterministic_ops,
                          self.portable, self.workers], layout=row),
            self.threads_note,
            self.error,
            self.status_view,
        ]).add_class("det-nb-dashboard")

        for control in (self.seed_field, self.trial_field, self.single_thread,
                        self.thread_count, self.deterministic_ops, self.portable):
            control.observe(self._on_control, names="value")
        self.workers.observe(self._on_workers, names="value")
        self.reseed_button.on_click(self._on_reseed)
        self.refresh()
        session.subscribe(self.refresh)

    # -- rendering the session ---------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the session into the widgets (the session calls this on every change)."""
        self._report: Report = self.session.status()
        report = self._report
        lineage, settings = report.lineage, self.session.settings
        with self._sync():
            self.seed_field.value = "" if lineage is None else str(lineage.experiment_seed)
            self.trial_field.value = _trial_text(lineage)
            self.single_thread.value = settings.threads == 1
            if settings.threads != 1:
                self.thread_count.value = settings.threads or 0
            self.thread_count.disabled = settings.threads == 1
            self.deterministic_ops.value = settings.deterministic_ops
            self.portable.value = settings.portable
        self.error.value = ""
        self.verdict_view.value = report.verdict_html()
        self.lineage_view.value = self._lineage_html()
        note = _threads_not_in_force(report)
        self.threads_note.value = "" if note is None else (
            f'<span style="color:{STATE_COLOURS["warn"]}">{html.escape(note)}</span>'
        )
        self.status_view.value = _status_html(report)

    def text(self) -> str:
        """The dashboard as plain text: verdict, lineage, settings, then one line per check."""
        report, lineage = self._report, self._report.lineage
        lines = [report.verdict()]
        if lineage is not None:
            lines += [
                report.headline(),
                f"  experiment seed: {_ORIGINS[lineage.experiment_seed_origin][0]}",
                f"  trial seed: {lineage.trial_seed_origin}",
                "  sources: " + ", ".join(f"{name} {seed}" for name, seed in self._received()),
            ]
            if self.workers.value:
                lines.append("  worker seeds: " + ", ".join(
                    f"{worker} -> {seed}" for worker, seed in self._worker_seeds()))
        lines.append(f"  settings: {self._settings_text()}")
        note = _threads_not_in_force(report)
        if note is not None:
            lines.append(f"  {note}")
        lines += [check.text() for check in report.checks]
        return "\n".join(lines)

    def html(self) -> str:
        """The same content as static HTML (what the widget view shows, without controls)."""
        note = _threads_not_in_force(self._report)
        note_html = "" if note is None else f"<p>{html.escape(note)}</p>"
        return (
            f'<div class="det-nb-dashboard"><p><b>{TITLE}</b></p>{self._report.verdict_html()}'
            f"{self._lineage_html()}"
            f"<p>settings: {html.escape(self._settings_text())}</p>{note_html}"
            f"{_status_html(self._report)}</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        self.refresh()
        bundle = {} if self.widget.comm is None else self.widget._repr_mimebundle_(**kwargs)
        bundle.update({"text/plain": self.text(), "text/html": self.html()})
        return bundle

    def close(self) -> None:
        """Stop following the session and close every widget (their views disappear)."""
        self.session.unsubscribe(self.refresh)
        _close_tree(self.widget)

    def _received(self) -> list[tuple[str, str]]:
        """(source, the seed it received) for each installed source, from the status.

        The seed is the trial seed, or the last cell's seed under per-cell seeding.
        """
        seed = self.session.applied_seed
        received = []
        for source in self.session.sources:
            check = _find(self._report, source.name)
            if self._report.lineage is None or check is None or check.state == "off":
                continue
            if check.state == "warn":
                received.append((source.name, "not seeded (see status)"))
            elif source.loaded() is None:
                received.append((source.name, f"{seed} at import"))
            else:
                received.append((source.name, str(seed)))
        return received

    def _worker_seeds(self) -> list[tuple[int, int]]:
        lineage = self._report.lineage
        return [(worker, lineage.worker_seed(worker)) for worker in range(self.workers.value)]

    def _settings_text(self) -> str:
        threads = self.session.settings.threads
        mode = {None: "left to each library", 1: "single-thread"}.get(
            threads, f"pinned to {threads}")
        ops = {False: "off", True: "on", WARN: "on (warn mode: ops without a deterministic "
               "kernel run and are listed)"}[self.session.settings.deterministic_ops]
        kernels = "portable" if self.session.settings.portable else "native"
        return f"threads {mode}; deterministic ops {ops}; CPU kernels {kernels}"

    def _lineage_html(self) -> str:
        lineage = self._report.lineage
        if lineage is None:
            return f"<p>{html.escape(_NOT_SEEDED)}</p>"
        origin = lineage.experiment_seed_origin
        rows = [
            ("experiment seed",
             f'<b class="det-nb-experiment-seed">{lineage.experiment_seed}</b> '
             + _badge(*_ORIGINS[origin])),
            ("trial", f'<span class="det-nb-trial-value">{_trial_text(lineage) or "none"}</span>'),
            ("trial seed",
             f'<b class="det-nb-trial-seed">{lineage.trial_seed}</b> '
             f"({html.escape(lineage.trial_seed_origin)})"),
            ("scheme", html.escape(lineage.scheme)),
            ("sources", ", ".join(
                f"{html.escape(name)} <b>{html.escape(seed)}</b>" for name, seed in self._received()
            )),
        ]
        if self.workers.value:
            rows.append(("worker seeds", ", ".join(
                f"{worker}: <b>{seed}</b>" for worker, seed in self._worker_seeds())))
        body = "".join(
            f'<tr><th style="{_CELL};font-weight:normal;opacity:0.75">{name}</th>'
            f'<td style="{_CELL}">{value}</td></tr>'
            for name, value in rows
        )
        return f'<table style="border-collapse:collapse;line-height:1.5">{body}</table>'

    # -- controls ----------------------------------------------------------------------

    @contextmanager
    def _sync(self) -> Iterator[None]:
        """Set control values from the session without their observers applying them."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _on_control(self, _change: dict) -> None:
        # Before the first seeding, controls wait for the button: a toggle must not seed.
        if not self._syncing and self.session.lineage is not None:
            self._apply(restart=False)

    def _on_workers(self, _change: dict) -> None:
        self.lineage_view.value = self._lineage_html()

    def _on_reseed(self, _button: widgets.Button) -> None:
        self._apply(restart=True)

    def _threads(self) -> int | None:
        return 1 if self.single_thread.value else (self.thread_count.value or None)

    def _lineage_in_force(self) -> bool:
        lineage = self.session.lineage
        return (
            lineage is not None
            and self.seed_field.value.strip() == str(lineage.experiment_seed)
            and self.trial_field.value.strip() == _trial_text(lineage)
        )

    def _controls_in_force(self) -> bool:
        settings = self.session.settings
        return (
            self._lineage_in_force()
            and self._threads() == settings.threads
            and self.deterministic_ops.value == settings.deterministic_ops
            and self.portable.value == settings.portable
        )

    def _apply(self, *, restart: bool) -> None:
        """Call the session as ``%det_seed`` would; show a ValueError instead of raising."""
        try:
            if restart and self._controls_in_force():
                self.session.reseed()
                return
            lineage = self.session.lineage
            # Settings without a control here (per-cell seeding) stay as they are.
            settings = {**dataclasses.asdict(self.session.settings), "threads": self._threads(),
                        "deterministic_ops": self.deterministic_ops.value,
                        "portable": self.portable.value}
            if self._lineage_in_force():  # keep where the seed came from (assigned, cluster)
                self.session.apply(lineage, Settings(**settings))
                return
            scheme = {} if lineage is None else {"scheme": lineage.scheme}
            self.session.seed(
                self.seed_field.value.strip() or None,
                self.trial_field.value.strip() or None,
                **scheme,
                **settings,
            )
        except ValueError as error:
            self.error.value = (
                f'<span style="color:{_ERROR_COLOUR}">Not applied: {html.escape(str(error))}. '
                "Nothing was changed.</span>"
            )


_NOT_SEEDED = (
    "not seeded yet: run %det_seed SEED, or press Re-seed (an empty experiment seed is "
    "assigned from the clock)"
)
_ORIGINS = {  # lineage.experiment_seed_origin -> (badge text, colour)
    "given": ("given by the user", STATE_COLOURS["off"]),
    "assigned": ("assigned by det_nb from the clock", "#8250df"),
    "cluster": ("the Determined trial's seed", "#0969da"),
}


def _trial_text(lineage: Lineage | None) -> str:
    return "" if lineage is None or lineage.trial is None else str(lineage.trial)


def _find(report: Report, name: str) -> Check | None:
    return next((check for check in report.checks if check.name == name), None)


def _threads_not_in_force(report: Report) -> str | None:
    """A note for the thread controls when the status says TF could not take them."""
    check = _find(report, "tensorflow threads")
    if check is None or check.state != "warn":
        return None
    return "The requested threads are not in force in TensorFlow (see tensorflow threads below)."


def _badge(text: str, colour: str) -> str:
    return (
        f'<span style="background:{colour};color:#fff;border-radius:4px;padding:0 6px;'
        f'font-size:90%;font-weight:600">{html.escape(text)}</span>'
    )


def _status_html(report: Report) -> str:
    """One table row per check: coloured state, name, reason and fix."""
    head = "".join(f'<th style="{_CELL}">{title}</th>'
                   for title in ("state", "check", "reason", "fix"))
    rows = "".join(
        f'<tr class="det-nb-check det-nb-{check.state}" style="{_BORDER}">'
        f'<td style="{_CELL}">{_badge(check.state, STATE_COLOURS[check.state])}</td>'
        f'<td style="{_CELL};white-space:nowrap"><b>{html.escape(check.name)}</b></td>'
        f'<td style="{_CELL}">{html.escape(check.detail)}</td>'
        f'<td style="{_CELL}">{html.escape(check.fix)}</td></tr>'
        for check in report.checks
    )
    return (
        f'<table style="border-collapse:collapse;line-height:1.4"><tr>{head}</tr>{rows}</table>'
    )


def _close_tree(widget: widgets.Widget) -> None:
    """Close a widget, its children, and their layout and style models."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if part is not None:
            part.close()
    widget.close()


_DASHBOARDS: dict[Session, Dashboard] = {}


def dashboard_for(session: Session) -> Dashboard:
    """The session's dashboard, made on first use and reused, so all views update live."""
    if session not in _DASHBOARDS:
        _DASHBOARDS[session] = Dashboard(session)
    return _DASHBOARDS[session]


def refresh_dashboard(session: Session) -> None:
    """Re-read the session into its dashboard, if it has one (cells draw: states move)."""
    dashboard = _DASHBOARDS.get(session)
    if dashboard is not None:
        dashboard.refresh()


def close_dashboard(session: Session) -> None:
    """Unsubscribe and close the session's dashboard, if it has one (for %unload_ext)."""
    dashboard = _DASHBOARDS.pop(session, None)
    if dashboard is not None:
        dashboard.close()
