"""The determinism report: a list of checks, each ok / warn / off with why and the fix.

Checks are built by the session from real reads of the sources and of the runtime; this
module only holds them and renders them as deterministic text and HTML (no addresses,
times or paths), so nbval and exported notebooks can compare them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Literal

from det_nb.lineage import Lineage

State = Literal["ok", "warn", "off"]
STATES: tuple[State, ...] = ("ok", "warn", "off")
STATE_COLOURS = {"ok": "#1a7f37", "warn": "#b35900", "off": "#6e7781"}
NOT_REPRODUCIBLE_COLOUR = "#cf222e"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, its state, why, and how to fix it.

    ``caveat``: a warning that leaves every seeded draw repeatable on this machine, since
    it concerns other processes (hash order), another run (a cluster's) or other machines
    (CPU kernels, thread counts); the verdict stays "reproducible on this machine" and
    names it. Any other warning is a defect of this run: NOT reproducible.
    """

    name: str
    state: State
    detail: str
    fix: str = ""
    caveat: bool = False

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {self.state!r}")

    def text(self) -> str:
        """``[ok  ] name: detail`` plus an indented fix line when there is one."""
        line = f"[{self.state:<4}] {self.name}: {self.detail}"
        return f"{line}\n       fix: {self.fix}" if self.fix else line


def breaks_reproducibility(check: Check) -> bool:
    """Whether a warning means the same cells can give other results on this machine."""
    return check.state == "warn" and not check.caveat


@dataclass(frozen=True)
class Report:
    """The lineage and the checks, as the session saw them when the report was made."""

    lineage: Lineage | None
    checks: tuple[Check, ...]

    @property
    def deterministic(self) -> bool:
        """True when seeded and no check warns."""
        return self.lineage is not None and not any(c.state == "warn" for c in self.checks)

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError if there is none)."""
        for item in self.checks:
            if item.name == name:
                return item
        raise KeyError(name)

    def counts(self) -> str:
        """How many checks are in each state, e.g. ``9 ok, 1 warn, 2 off``."""
        states = [c.state for c in self.checks]
        return ", ".join(f"{states.count(state)} {state}" for state in STATES)

    def verdict(self) -> str:
        """One line: is this kernel reproducible, the counts, and the warning to fix first.

        Warnings that break reproducibility come before the caveats, each in report order.
        """
        warnings = sorted((c for c in self.checks if c.state == "warn"),
                          key=lambda c: not breaks_reproducibility(c))
        if self.lineage is None:
            return ("not seeded yet: run %det_seed SEED to make this kernel reproducible; "
                    f"{self.counts()}")
        breaks = bool(warnings) and breaks_reproducibility(warnings[0])
        verdict = "NOT reproducible" if breaks else "reproducible on this machine"
        if not warnings:
            return f"{verdict}: {self.counts()}"
        first = warnings[0]
        more = f"; {len(warnings) - 1} more warn below" if len(warnings) > 1 else ""
        return f"{verdict}: {self.counts()} ({first.name}: {first.fix or first.detail}{more})"

    def verdict_colour(self) -> str:
        """Green when reproducible, amber with caveats, red when not, grey when unseeded."""
        if self.lineage is None:
            return STATE_COLOURS["off"]
        if any(breaks_reproducibility(c) for c in self.checks):
            return NOT_REPRODUCIBLE_COLOUR
        if any(c.state == "warn" for c in self.checks):
            return STATE_COLOURS["warn"]
        return STATE_COLOURS["ok"]

    def verdict_html(self) -> str:
        """The verdict as a bold, coloured paragraph."""
        return (
            f'<p class="det-nb-verdict" style="color:{self.verdict_colour()};font-weight:bold">'
            f"{html.escape(self.verdict())}</p>"
        )

    def headline(self) -> str:
        """The lineage in one line, or what to do when nothing is seeded yet."""
        if self.lineage is None:
            return "det_nb: not seeded yet; run %det_seed SEED (or det_nb.seed(SEED))"
        return f"det_nb: {self.lineage.summary()}"

    def text(self) -> str:
        """Verdict, the lineage once seeded, then one line per check."""
        lineage = [] if self.lineage is None else [self.headline()]
        return "\n".join([self.verdict(), *lineage, *(c.text() for c in self.checks)])

    def html(self) -> str:
        """The same content: verdict, lineage and a small HTML table."""
        rows = "".join(
            "<tr>"
            f'<td style="color:{STATE_COLOURS[c.state]};font-weight:bold">{c.state}</td>'
            f"<td>{html.escape(c.name)}</td><td>{html.escape(c.detail)}</td>"
            f"<td>{html.escape(c.fix)}</td></tr>"
            for c in self.checks
        )
        lineage = "" if self.lineage is None else f"<p>{html.escape(self.headline())}</p>"
        return (
            f'<div class="det-nb-report">{self.verdict_html()}{lineage}'
            "<table><tr><th>state</th><th>check</th><th>detail</th><th>fix</th></tr>"
            f"{rows}</table></div>"
        )

    def __str__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.text())

    def _repr_html_(self) -> str:
        return self.html()
