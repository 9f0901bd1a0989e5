"""End to end in a real browser: JupyterLab and Jupyter Notebook 7 render the dashboard,
and its controls reach the kernel.

Debian's Chromium, driven headless by Playwright (no browser download). The JupyterLab
run saves the screenshot the README shows, ``docs/dashboard.png``. Without Chromium
these tests fail and say how to get it; ``DET_NB_SKIP_BROWSER=1`` skips them on purpose.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_server import App, Lab, jupyter_lab, write_notebook
from playwright.sync_api import Browser, Page, expect, sync_playwright

from det_nb.lineage import Lineage
from det_nb.status import STATE_COLOURS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
SKIP_VARIABLE = "DET_NB_SKIP_BROWSER"
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "dashboard.png"
NOTEBOOK = "dashboard_e2e.ipynb"
CELLS = (
    # TensorFlow imported before %det_seed, after %load_ext (which pins CPU kernels).
    "%load_ext det_nb\nimport tensorflow as tf\n%det_seed 42 --trial 3",
    "import det_nb\nprint('kernel:', det_nb.lineage().summary())\n"
    "print('verdict:', det_nb.status().verdict())",
)
WAIT_MS = 60_000  # kernel start and the TF import, on 2 slow cores


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium; a missing one fails the tests unless they are skipped on request."""
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: the browser tests were asked to skip")
    if CHROMIUM is None:
        pytest.fail(
            "no Chromium on PATH (chromium or chromium-browser): `make browser` installs "
            "Debian's chromium when run as root (apt-get install chromium); to skip the "
            f"browser tests instead, set {SKIP_VARIABLE}=1", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def rgb(colour: str) -> str:
    """``#1a7f37`` as the browser's computed ``rgb(26, 127, 55)``."""
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def run_cell(page: Page, index: int) -> None:
    """Click into cell ``index`` and run it with Shift+Enter, as a user would."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-InputPrompt")).not_to_have_text("[ ]:")  # queued or ran


def open_notebook(page: Page, lab: Lab) -> None:
    """Open the notebook and wait until its kernel is connected and idle."""
    page.goto(lab.url(NOTEBOOK))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    lab.wait_for_connected_kernel()
    if lab.app == "lab":
        # The status bar says so once the page's kernel connection is ready (the toolbar's
        # indicator says "idle" earlier); Notebook 7 has no status bar.
        page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\| Idle$")).wait_for()


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_dashboard_lineage_status_and_controls(app: App, browser: Browser,
                                               tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    write_notebook(tmp_path / "root" / NOTEBOOK, *CELLS)
    with jupyter_lab(tmp_path, app) as lab:
        page = browser.new_page(viewport={"width": 1300, "height": 1700})
        try:
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            open_notebook(page, lab)

            # %det_seed 42 --trial 3 renders the dashboard: verdict, lineage and status.
            run_cell(page, 0)
            dashboard = page.locator(".det-nb-dashboard")
            expect(dashboard.locator(".det-nb-trial-seed")).to_have_text(
                str(Lineage(42, 3).trial_seed))
            expect(dashboard.locator(".det-nb-experiment-seed")).to_have_text("42")
            verdict = dashboard.locator("p.det-nb-verdict")
            expect(verdict).to_have_text(
                re.compile(r"^reproducible on this machine: \d+ ok, \d+ warn, \d+ off"))
            assert verdict.evaluate("e => getComputedStyle(e).color") in {
                rgb(STATE_COLOURS["ok"]), rgb(STATE_COLOURS["warn"])}
            rows = dashboard.locator(".det-nb-status tr.det-nb-check")
            names = rows.locator("td:nth-child(2)").all_inner_texts()
            assert {"python random", "numpy", "tensorflow", "tensorflow threads", "keras",
                    "hash randomisation"} <= set(names)
            expect(rows.filter(has_text="python random")).to_have_class(
                "det-nb-check det-nb-ok")
            expect(rows.filter(has_text="tensorflow threads")).to_contain_text("single-thread")
            for row in rows.all():  # each row's badge names its state, in its colour
                badge = row.locator("td").first.locator("span")
                state = badge.inner_text()
                assert f"det-nb-{state}" in row.get_attribute("class")
                assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == rgb(
                    STATE_COLOURS[state])
            if app == "lab":
                SCREENSHOT.parent.mkdir(exist_ok=True)
                page.locator(".jp-Notebook .jp-Cell").first.screenshot(path=SCREENSHOT)

            # A new trial typed into the page, then Re-seed: the kernel holds the new lineage
            # and the page's verdict is the kernel's.
            new = Lineage(42, 4)
            dashboard.locator(".det-nb-trial input").fill("4")
            dashboard.locator(".det-nb-reseed").click()
            expect(dashboard.locator(".det-nb-trial-seed")).to_have_text(str(new.trial_seed))
            expect(dashboard.locator(".det-nb-error")).to_have_text("")
            shown = verdict.inner_text()
            run_cell(page, 1)
            expect(page.locator(".jp-Notebook .jp-Cell").nth(1).locator(
                ".jp-OutputArea-output")).to_have_text(
                    f"kernel: {new.summary()}\nverdict: {shown}")
        finally:
            page.close()
