"""End to end in a real browser: JupyterLab renders the dashboard, and its controls reach
the kernel.

Debian's Chromium, driven headless by Playwright (no browser download). It saves the
screenshot the README shows, ``docs/dashboard.png``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from lab_server import jupyter_lab, write_notebook
from playwright.sync_api import Page, expect, sync_playwright

from det_nb.lineage import Lineage
from det_nb.status import STATE_COLOURS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "dashboard.png"
NOTEBOOK = "dashboard_e2e.ipynb"
CELLS = (
    "import tensorflow as tf\n%load_ext det_nb\n%det_seed 42 --trial 3",
    "import det_nb\nprint('kernel:', det_nb.lineage().summary())",
)
WAIT_MS = 60_000  # kernel start and the TF import, on 2 slow cores

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: `make browser` installs Debian's chromium (apt-get, needs root)",
)


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


def test_dashboard_in_jupyterlab(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    write_notebook(tmp_path / "root" / NOTEBOOK, *CELLS)
    with jupyter_lab(tmp_path) as lab, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            page.goto(lab.url(NOTEBOOK))
            # A cell run before the kernel is connected is dropped: wait for the status bar
            # to say so (the toolbar's indicator says "idle" earlier).
            page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\| Idle$")).wait_for()

            # %det_seed 42 --trial 3 renders the dashboard with the lineage and the status.
            run_cell(page, 0)
            dashboard = page.locator(".det-nb-dashboard")
            expect(dashboard.locator(".det-nb-trial-seed")).to_have_text(
                str(Lineage(42, 3).trial_seed))
            expect(dashboard.locator(".det-nb-experiment-seed")).to_have_text("42")
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
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.locator(".jp-Notebook .jp-Cell").first.screenshot(path=SCREENSHOT)

            # A new trial typed into the page, then Re-seed: the kernel holds the new lineage.
            new = Lineage(42, 4)
            dashboard.locator(".det-nb-trial input").fill("4")
            dashboard.locator(".det-nb-reseed").click()
            expect(dashboard.locator(".det-nb-trial-seed")).to_have_text(str(new.trial_seed))
            expect(dashboard.locator(".det-nb-error")).to_have_text("")
            run_cell(page, 1)
            expect(page.locator(".jp-Notebook .jp-Cell").nth(1).locator(
                ".jp-OutputArea-output")).to_have_text(f"kernel: {new.summary()}")
        finally:
            browser.close()
