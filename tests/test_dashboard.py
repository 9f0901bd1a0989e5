"""The seed dashboard through a real InteractiveShell: what it shows, and its controls."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import prng_states, run_python
from IPython.utils.capture import capture_output
from ipywidgets.widgets.widget import _instances as live_widgets

import det_nb
from det_nb.dashboard import TITLE, dashboard_for
from det_nb.lineage import Lineage
from det_nb.session import get_session

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
TRIAL_SEED = 1129302213  # experiment 42, trial 3 (DESIGN.md)


def draws() -> list[float]:
    """A draw from Python random, NumPy, a TF op and TF's global generator."""
    return [
        random.random(),
        float(np.random.rand()),
        float(tf.random.uniform([])),
        float(tf.random.get_global_generator().uniform([])),
    ]


def shown(shell, line: str) -> list[dict]:
    """The mime bundles that running ``%line`` displayed."""
    name, _, args = line.partition(" ")
    with capture_output() as captured:
        shell.run_line_magic(name, args)
    return [output.data for output in captured.outputs]


@pytest.fixture
def dashboard(shell):
    """The session's dashboard after ``%det_seed 42 --trial 3``, flags spelled out."""
    shell.run_line_magic("det_seed", "42 --trial 3 --single-thread --no-deterministic-ops --quiet")
    board = dashboard_for(get_session())
    board.workers.value = 0
    return board


def test_det_seed_shows_the_lineage_numbers(shell) -> None:
    [bundle] = shown(shell, "det_seed 42 --trial 3")
    board = dashboard_for(get_session())
    assert bundle[WIDGET_VIEW]["model_id"] == board.widget.model_id
    assert board.seed_field.value == "42"
    assert board.trial_field.value == "3"
    assert f'class="det-nb-trial-seed">{TRIAL_SEED}<' in board.lineage_view.value
    assert "given by the user" in board.lineage_view.value
    assert "seedsequence" in board.lineage_view.value
    for source in ("python random", "numpy", "tensorflow", "keras"):
        assert f"{source} <b>{TRIAL_SEED}</b>" in board.lineage_view.value
        assert f"{source} {TRIAL_SEED}" in bundle["text/plain"]
    settings = get_session().settings
    assert board.single_thread.value == (settings.threads == 1)
    assert board.deterministic_ops.value == settings.deterministic_ops
    assert bundle["text/plain"].splitlines()[:2] == [
        get_session().status().verdict(),
        f"det_nb: experiment seed 42 -> trial 3 -> trial seed {TRIAL_SEED} [seedsequence]",
    ]


def test_the_verdict_opens_the_dashboard_in_colour(shell) -> None:
    [bundle] = shown(shell, "det_seed 42 --trial 3")
    board, report = dashboard_for(get_session()), get_session().status()
    assert report.verdict().startswith("reproducible on this machine: ")
    assert board.widget.children[1] is board.verdict_view
    assert board.verdict_view.value == report.verdict_html()
    assert f"color:{report.verdict_colour()}" in board.verdict_view.value
    assert bundle["text/html"].startswith(
        f'<div class="det-nb-dashboard"><p><b>{TITLE}</b></p>{report.verdict_html()}'
    )


def test_one_status_row_per_check_with_state_reason_and_fix(shell) -> None:
    [bundle] = shown(shell, "det_seed 42 --trial 3")
    board, report = dashboard_for(get_session()), get_session().status()
    rows = re.findall(r'<tr class="det-nb-check det-nb-(\w+)"', board.status_view.value)
    assert rows == [check.state for check in report.checks]
    for check in report.checks:
        assert check.text() in bundle["text/plain"]
        for words in (check.name, check.detail, check.fix):
            assert words.replace("'", "&#x27;") in board.status_view.value
            assert words.replace("'", "&#x27;") in bundle["text/html"]


def test_text_and_html_are_deterministic(shell) -> None:
    [first] = shown(shell, "det_seed 42 --trial 3")
    [again] = shown(shell, "det_seed 42 --trial 3")
    assert (first["text/plain"], first["text/html"]) == (again["text/plain"], again["text/html"])
    model_id = first[WIDGET_VIEW]["model_id"]
    for text in (first["text/plain"], first["text/html"]):
        assert model_id not in text
        assert not re.search(r"0x[0-9a-f]{6,}|IPY_MODEL|\d\d:\d\d:\d\d", text)


def test_quiet_shows_nothing_and_det_status_changes_nothing(shell) -> None:
    assert shown(shell, "det_seed 42 --trial 3 --quiet") == []
    before = prng_states()
    [bundle] = shown(shell, "det_status")
    assert prng_states() == before
    assert bundle[WIDGET_VIEW]["model_id"] == dashboard_for(get_session()).widget.model_id
    assert f"trial seed {TRIAL_SEED}" in bundle["text/plain"]


def test_reseed_button_restarts_every_source(dashboard) -> None:
    first = draws()
    assert draws() != first
    dashboard.reseed_button.click()
    assert draws() == first
    assert det_nb.lineage() == Lineage(42, 3)


def test_reseed_keeps_an_assigned_seed_assigned(shell) -> None:
    shell.run_line_magic("det_seed", "--trial 1 --quiet")
    assigned = det_nb.lineage()
    board = dashboard_for(get_session())
    assert "assigned by det_nb from the clock" in board.lineage_view.value
    first = draws()
    board.reseed_button.click()
    assert det_nb.lineage() == assigned
    assert draws() == first


def test_settings_controls_keep_an_assigned_seed_assigned(shell) -> None:
    shell.run_line_magic("det_seed", "--trial 1 --quiet")
    assigned = det_nb.lineage()
    board = dashboard_for(get_session())
    board.deterministic_ops.value = True
    assert det_nb.lineage() == assigned
    assert get_session().settings.deterministic_ops
    board.deterministic_ops.value = False


def test_a_cluster_seed_shows_where_it_came_from(shell, monkeypatch) -> None:
    monkeypatch.setenv("DET_TRIAL_SEED", "1129302213")
    shell.run_line_magic("det_seed", "")
    board = dashboard_for(get_session())
    assert "the Determined trial&#x27;s seed" in board.lineage_view.value or \
        "the Determined trial's seed" in board.lineage_view.value
    board.deterministic_ops.value = True  # a control keeps the cluster's seed
    assert det_nb.lineage().experiment_seed_origin == "cluster"
    board.deterministic_ops.value = False
    monkeypatch.delenv("DET_TRIAL_SEED")
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")


def test_changing_the_trial_rederives_the_trial_seed_and_reseeds(dashboard) -> None:
    new_seed = Lineage(42, 4).trial_seed
    random.random()
    dashboard.trial_field.value = "4"
    assert det_nb.lineage() == Lineage(42, 4)
    assert random.random() == random.Random(new_seed).random()
    assert f'class="det-nb-trial-seed">{new_seed}<' in dashboard.lineage_view.value
    assert dashboard.error.value == ""


@pytest.mark.parametrize(("field", "typed", "message"), [
    ("trial_field", "-1", "trial must be an integer in [0, 2147483647], got "),
    ("seed_field", "4.5", "experiment seed must be an integer"),
])
def test_invalid_input_is_shown_and_changes_nothing(dashboard, field, typed, message) -> None:
    before = prng_states()
    getattr(dashboard, field).value = typed  # as a comm message would set it
    assert message in dashboard.error.value
    assert typed in dashboard.error.value
    assert "Nothing was changed" in dashboard.error.value
    assert prng_states() == before
    getattr(dashboard, field).value = "3" if field == "trial_field" else "42"
    assert dashboard.error.value == ""


def test_deterministic_ops_toggle_applies_and_shows(dashboard) -> None:
    dashboard.deterministic_ops.value = True
    try:
        assert get_session().settings.deterministic_ops is True
        assert get_session().status().check("tensorflow op determinism").state == "ok"
        assert "deterministic ops on" in dashboard.text()
    finally:
        dashboard.deterministic_ops.value = False
    assert get_session().settings.deterministic_ops is False


def test_warn_mode_is_a_choice_and_the_ops_that_ran_are_listed_with_counts(dashboard) -> None:
    torch = pytest.importorskip("torch")
    assert dashboard.deterministic_ops.options == (("off", False), ("on", True), ("warn", "warn"))
    dashboard.deterministic_ops.label = "warn"
    try:
        assert get_session().settings.deterministic_ops == "warn"
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        with pytest.warns(UserWarning, match=r"^put_ does not have"):
            for _ in range(3):
                torch.zeros(2).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
        dashboard.refresh()  # after a cell, as the post_run_cell event does
        text = dashboard.text()
        assert "deterministic ops on (warn mode: ops without a deterministic kernel run and " \
               "are listed)" in text
        assert text.splitlines()[0].startswith("NOT reproducible: ")
        assert ("[warn] torch deterministic algorithms: on (warn mode): ops without a "
                "deterministic kernel ran in warn mode in this kernel (since it started or its "
                "latest hard %reset), so values computed with them can differ run to run: "
                "put_ 3 times") in text
        assert "put_ 3 times" in dashboard.status_view.value
    finally:
        dashboard.deterministic_ops.value = False
    assert get_session().settings.deterministic_ops is False
    assert not torch.are_deterministic_algorithms_enabled()


def test_portable_toggle_applies_and_shows(dashboard) -> None:
    assert dashboard.portable.value is True
    dashboard.portable.value = False
    try:
        assert get_session().settings.portable is False
        assert get_session().status().check("cpu kernels").state == "off"
        assert "CPU kernels native" in dashboard.text()
    finally:
        dashboard.portable.value = True
    assert get_session().settings.portable is True
    assert get_session().status().check("cpu kernels").state == "ok"
    assert "CPU kernels portable" in dashboard.text()


def test_thread_count_after_tf_started_shows_it_is_not_in_force(dashboard) -> None:
    tf.constant(1.0) + 1  # TF's runtime is up: thread counts are fixed now
    dashboard.single_thread.value = False
    dashboard.thread_count.value = 3
    try:
        assert get_session().settings.threads == 3  # the request is recorded ...
        check = get_session().status().check("tensorflow threads")
        assert check.state == "warn"  # ... and the status says it did not take effect
        assert "could not pin to 3" in check.detail
        assert '<tr class="det-nb-check det-nb-warn"' in dashboard.status_view.value
        assert "not in force" in dashboard.threads_note.value
    finally:
        dashboard.single_thread.value = True
    too_late = get_session().status().check("tensorflow threads").state == "warn"
    assert ("not in force" in dashboard.threads_note.value) == too_late


def test_single_thread_toggled_after_tf_started_shows_too_late() -> None:
    # A fresh interpreter: here TF's runtime starts with its default pools before det_nb.
    result = run_python("""
        import json
        import tensorflow as tf
        from IPython.core.interactiveshell import InteractiveShell
        from det_nb.dashboard import TITLE, dashboard_for
        from det_nb.session import get_session

        tf.constant(1.0) + 1
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "det_nb")
        shell.run_line_magic("det_seed", "42 --trial 3 --no-single-thread --quiet")
        board = dashboard_for(get_session())
        board.single_thread.value = True
        check = get_session().status().check("tensorflow threads")
        print(json.dumps({
            "threads": get_session().settings.threads, "state": check.state,
            "detail": check.detail, "fix": check.fix, "note": board.threads_note.value,
            "status": board.status_view.value, "text": board.text(),
            "checkbox": board.single_thread.value,
        }))
    """)
    assert result["threads"] == 1 and result["checkbox"] is True
    assert result["state"] == "warn"
    assert "could not pin to 1" in result["detail"]
    assert "restart the kernel" in result["fix"]
    assert "not in force" in result["note"]
    assert '<tr class="det-nb-check det-nb-warn"' in result["status"]
    assert "[warn] tensorflow threads: could not pin to 1" in result["text"]


def test_later_seeding_updates_the_dashboard_already_displayed(shell) -> None:
    [bundle] = shown(shell, "det_seed 42 --trial 3")
    on_screen = live_widgets[bundle[WIDGET_VIEW]["model_id"]]
    lineage_view = next(w for w in on_screen.children if "det-nb-lineage" in w._dom_classes)

    det_nb.seed(7, trial=1)
    assert f'class="det-nb-trial-seed">{Lineage(7, 1).trial_seed}<' in lineage_view.value
    assert str(TRIAL_SEED) not in lineage_view.value

    [later] = shown(shell, "det_seed 9 --trial 2")
    assert later[WIDGET_VIEW]["model_id"] == on_screen.model_id  # one model: no stale copy
    assert f'class="det-nb-trial-seed">{Lineage(9, 2).trial_seed}<' in lineage_view.value
    assert dashboard_for(get_session()).seed_field.value == "9"


def test_controls_keep_per_cell_seeding_and_show_the_cell_seed(shell) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --per-cell --quiet")
    try:
        board = dashboard_for(get_session())
        board.deterministic_ops.value = True
        board.reseed_button.click()
        assert get_session().settings.per_cell is True  # no control for it: left as it was
        assert get_session().settings.deterministic_ops is True
        get_session().before_cell("x = 1")  # what IPython's pre_run_cell event does
        cell_seed = get_session().applied_seed
        assert cell_seed != TRIAL_SEED
        assert f"python random <b>{cell_seed}</b>" in board.lineage_view.value
    finally:
        shell.run_line_magic("det_seed", "42 --trial 3 --no-per-cell --no-deterministic-ops -q")


def test_worker_seeds_on_request(dashboard) -> None:
    assert "worker seeds" not in dashboard.text()
    dashboard.workers.value = 2
    assert "worker seeds: 0 -> 406353823, 1 -> 1282688488" in dashboard.text()
    assert "0: <b>406353823</b>, 1: <b>1282688488</b>" in dashboard.lineage_view.value
    dashboard.workers.value = 0


def test_unload_closes_the_dashboard_and_reload_makes_a_new_one(shell) -> None:
    old = dashboard_for(get_session())
    old_model_id = old.widget.model_id
    shell.run_line_magic("unload_ext", "det_nb")
    try:
        assert old.widget.comm is None and old.lineage_view.comm is None
        det_nb.seed(5)
        assert old.seed_field.value != "5"  # no longer follows the session
    finally:
        shell.run_line_magic("load_ext", "det_nb")
    [bundle] = shown(shell, "det_seed 42 --trial 3")
    assert dashboard_for(get_session()) is not old
    assert bundle[WIDGET_VIEW]["model_id"] != old_model_id


def test_before_seeding_controls_wait_for_the_button() -> None:
    from det_nb.dashboard import Dashboard
    from det_nb.session import Session

    session = Session()
    board = Dashboard(session)
    try:
        assert "not seeded yet" in board.text()
        board.single_thread.value = False
        board.trial_field.value = "2"
        assert session.lineage is None  # a control alone does not seed
        board.reseed_button.click()
        assert session.lineage.experiment_seed_origin == "assigned"
        assert session.lineage.trial == 2
        assert session.settings.threads is None
        assert "assigned by det_nb from the clock" in board.lineage_view.value
    finally:
        board.close()
        session.close()


def test_loading_det_nb_does_not_import_ipywidgets() -> None:
    result = run_python("""
        import json, sys
        from IPython.core.interactiveshell import InteractiveShell
        InteractiveShell.instance().run_line_magic("load_ext", "det_nb")
        print(json.dumps({"ipywidgets": "ipywidgets" in sys.modules}))
    """)
    assert result == {"ipywidgets": False}


def test_importing_keras_under_a_dashboard_warns_nothing() -> None:
    """Keras's import hook runs while TensorFlow is half-imported: views must wait for it."""
    result = run_python("""
        import json, warnings
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "det_nb")
        shell.run_line_magic("det_seed", "42 --quiet")
        import det_nb
        from det_nb.dashboard import dashboard_for
        view = dashboard_for(det_nb.get_session())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            import keras
        view.refresh()
        print(json.dumps([str(w.message) for w in caught if "det_nb" in str(w.message)]
                         + [line for line in view.text().splitlines()
                            if line.startswith("[ok  ] tensorflow threads")]))
    """)
    assert result == ["[ok  ] tensorflow threads: single-thread (intra 1, inter 1)"]
