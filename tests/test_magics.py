"""%det_seed through a real InteractiveShell: draws, re-seeding, bad input, config, unload."""

from __future__ import annotations

import random
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import prng_states
from IPython.core.error import UsageError

import det_nb
from det_nb.check import MAX_RUNS
from det_nb.magics import DetMagics

TRIAL_SEED = 1129302213  # experiment 42, trial 3 (DESIGN.md)


def draws() -> dict[str, list[float]]:
    """One draw from every source, the way a user's code makes them."""
    dropout = keras.layers.Dropout(0.5)
    return {
        "random": [random.random() for _ in range(3)],
        "numpy": np.random.rand(3).tolist(),
        "tf op": tf.random.normal([3]).numpy().tolist(),
        "tf generator": tf.random.get_global_generator().normal([3]).numpy().tolist(),
        "keras dropout": dropout(np.ones((1, 16)), training=True).numpy().tolist(),
    }


def plain_seeding(seed: int) -> None:
    """What a user would write by hand with the libraries' own calls."""
    keras.utils.set_random_seed(seed)  # random, NumPy, tf.random.set_seed, Keras
    tf.random.set_global_generator(tf.random.Generator.from_seed(seed))


def test_draws_equal_plain_library_calls_with_the_trial_seed(shell) -> None:
    plain_seeding(TRIAL_SEED)
    expected = draws()
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    assert det_nb.lineage().trial_seed == TRIAL_SEED
    assert draws() == expected


def test_rerunning_det_seed_restarts_every_stream(shell) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    first = draws()
    assert draws() != first  # the streams moved on ...
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    assert draws() == first  # ... and re-seeding restarts them


def test_no_trial_behaves_like_seed_everything(shell) -> None:
    plain_seeding(42)
    expected = draws()
    shell.run_line_magic("det_seed", "42 --quiet")
    assert draws() == expected


def test_determined_scheme(shell) -> None:
    shell.run_line_magic("det_seed", "42 --trial 2 --scheme determined --quiet")
    assert det_nb.lineage().trial_seed == 1914837113


def test_assigned_seed_is_shown_so_it_can_be_repeated(shell, capsys) -> None:
    shell.run_line_magic("det_seed", "--trial 1")
    lineage = det_nb.lineage()
    assert lineage.experiment_seed_origin == "assigned"
    assert f"experiment seed {lineage.experiment_seed} (assigned)" in capsys.readouterr().out


def test_rng_is_default_rng_of_the_trial_seed_and_restarts(shell) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    generator = det_nb.rng()
    first = generator.random(4)
    np.testing.assert_array_equal(first, np.random.default_rng(TRIAL_SEED).random(4))
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    np.testing.assert_array_equal(generator.random(4), first)


def test_worker_seed(shell) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    assert [det_nb.worker_seed(w) for w in (0, 1)] == [406353823, 1282688488]


def test_summary_text_is_deterministic(shell, capsys) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3")
    first = capsys.readouterr().out
    shell.run_line_magic("det_seed", "42 --trial 3")
    assert capsys.readouterr().out == first
    assert "trial seed 1129302213" in first
    assert not re.search(r"0x[0-9a-f]{6,}|/tmp|/home|/root|\d\d:\d\d:\d\d", first)


def test_quiet_prints_nothing(shell, capsys) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    assert capsys.readouterr().out == ""


def test_status_reports_each_source_and_setting(shell) -> None:
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    report = det_nb.status()
    assert report.check("numpy").detail.startswith(f"np.random.seed({TRIAL_SEED})")
    assert "no draws since seeding" in report.check("numpy").detail
    np.random.rand()
    assert "draws made since seeding" in det_nb.status().check("numpy").detail
    # Whether TF's runtime started before det_nb first pinned it depends on which tests ran
    # first in this process; the check must say what is really in force.
    in_force = tf.config.threading.get_intra_op_parallelism_threads() == 1
    assert report.check("tensorflow threads").state == ("ok" if in_force else "warn")
    assert report.check("tensorflow op determinism").state == "off"
    assert report.check("torch").state in ("off", "ok")
    hash_check = report.check("hash randomisation")
    assert hash_check.state in ("ok", "warn")
    if hash_check.state == "warn":
        assert "PYTHONHASHSEED=0" in hash_check.fix


def test_deterministic_ops_flag(shell) -> None:
    from tensorflow.python.framework import config

    shell.run_line_magic("det_seed", "42 --deterministic-ops --quiet")
    assert config.is_op_determinism_enabled()
    assert det_nb.status().check("tensorflow op determinism").state == "ok"
    tf.random.normal([2])  # seeded random ops still work under op determinism
    tf.random.get_global_generator().normal([2])
    shell.run_line_magic("det_seed", "42 --no-deterministic-ops --quiet")
    assert not config.is_op_determinism_enabled()


@pytest.mark.parametrize(("line", "mode"), [
    ("42 --deterministic-ops=warn", "warn"), ("--deterministic-ops=warn 42", "warn"),
    ("--deterministic-ops 42", True), ("42 --deterministic-ops", True),
    ("42 --no-deterministic-ops", False), ("42", False), ("42 -- --deterministic-ops=x", None),
])
def test_deterministic_ops_takes_on_warn_or_off_and_never_the_seed(shell, line, mode) -> None:
    """A word after --deterministic-ops is the seed; its warn mode is written with '='."""
    from tensorflow.python.framework import config

    if mode is None:  # after "--" every word is a value: here a second seed
        with pytest.raises(UsageError, match="unrecognized arguments"):
            shell.run_line_magic("det_seed", line)
        return
    try:
        shell.run_line_magic("det_seed", f"{line} --quiet")
        settings = det_nb.get_session().settings
        assert (det_nb.lineage().experiment_seed, settings.deterministic_ops) == (42, mode)
        assert config.is_op_determinism_enabled() is bool(mode)  # TF has no warn mode
    finally:
        shell.run_line_magic("det_seed", "42 --quiet")


def test_warn_mode_from_the_config_and_bad_config_values_are_refused(shell) -> None:
    from traitlets import TraitError

    magics = next(c for c in shell.configurables if isinstance(c, DetMagics))
    try:
        shell.run_line_magic("config", "DetMagics.deterministic_ops = 'warn'")
        shell.run_line_magic("det_seed", "42 --quiet")
        assert det_nb.get_session().settings.deterministic_ops == "warn"
        shell.run_line_magic("det_seed", "42 --deterministic-ops --quiet")  # the line wins
        assert det_nb.get_session().settings.deterministic_ops is True
        for bad in ("yes", "WARN", None):
            with pytest.raises(TraitError):
                magics.deterministic_ops = bad
        assert magics.deterministic_ops == "warn"
    finally:
        shell.run_line_magic("config", "DetMagics.deterministic_ops = False")
        shell.run_line_magic("det_seed", "42 --quiet")


def test_keras_layers_built_before_seeding_are_reported(shell) -> None:
    shell.run_cell("import keras\n%det_seed 42 --quiet\nearly = keras.layers.Dropout(0.5)")
    shell.run_line_magic("det_seed", "42 --quiet")
    check = det_nb.status().check("keras layers")
    assert check.state == "warn"
    assert "after %det_seed" in check.fix
    shell.run_cell("del early\nimport gc\ngc.collect()")  # a built layer sits in cycles
    assert det_nb.status().check("keras layers").state == "ok"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("abc", r"experiment seed must be an integer in \[0, 2147483647\], got 'abc'"),
        ("4.5", r"experiment seed must be an integer in \[0, 2147483647\], got '4.5'"),
        ("1e3", r"experiment seed must be an integer in \[0, 2147483647\], got '1e3'"),
        ("-1", r"experiment seed must be an integer in \[0, 2147483647\], got '-1'"),
        ("2147483648", r"must be an integer in \[0, 2147483647\], got '2147483648'"),
        ("+-5", r"experiment seed must be an integer in \[0, 2147483647\], got '\+-5'"),
        ("9" * 5000, r"experiment seed must be .*, got '9999.*\.\.\. \(5002 characters\)$"),
        ("٤٢", r"experiment seed must be an integer in \[0, 2147483647\], got '٤٢'"),
        ("4_2", r"experiment seed must be an integer in \[0, 2147483647\], got '4_2'"),
        ("42 43", "unrecognized arguments: 43"),
        ("42 --trial x", r"trial must be an integer in \[0, 2147483647\], got 'x'"),
        ("42 --trial 2147483648", r"trial must be an integer in \[0, 2147483647\]"),
        ("42 --scheme mt", "invalid choice: 'mt'"),
        ("42 --trial 0 --scheme determined", r"counts created trials from 1"),
        ("42 --frobnicate", "unrecognized arguments: --frobnicate"),
        ("42 --threads 0", r"threads must be an integer in \[1, 1024\] \(or --no-single-thread "
                           r"to leave the libraries' thread pools alone\), got '0'$"),
        ("42 --threads two", r"threads must be an integer in \[1, 1024\]"),
        ("42 --threads 99999999999", r"threads must be an integer in \[1, 1024\]"),
        ("42 --threads ²", r"threads must be an integer in \[1, 1024\]"),
        ("42 --trial ²", r"trial must be an integer in \[0, 2147483647\]"),
        ("42 --threads 2 --no-single-thread", "give one of them"),
        # Whole option names only, each once.
        ("--tri 3", "unrecognized arguments: --tri"),
        ("42 --thread 4", "unrecognized arguments: --thread 4"),
        ("42 --deterministic 4", "unrecognized arguments: --deterministic"),
        ("42 --trial 3 --trial 4", r"argument --trial/-t: given more than once"),
        ("42 --trial 3 -t 3", r"argument --trial/-t: given more than once"),
        ("42 --threads 2 --threads 2", r"argument --threads: given more than once"),
        ("42 --per-cell --no-per-cell", r"argument --per-cell/--no-per-cell: given more than"),
        ("42 --portable --no-portable", r"argument --portable/--no-portable: given more than"),
        # Quotes: shell-like, and an unterminated one is a usage error.
        ('42 --save "my run.json', r"unterminated quote in '42 --save \"my run.json'"),
        ("42 --save 'x", "unterminated quote"),
        # An empty path is a mistake, not "no path".
        ("42 --save=", r"--save needs a file path, got ''$"),
        ('42 --save ""', r"--save needs a file path, got ''$"),
        ("--load=", r"--load needs a file path, got ''$"),
        ("--load ' '", r"--load needs a file path, got ' '$"),
        ("--load x.json --portable", "--load replays the recorded seed and settings"),
        ("--load x.json --no-portable", "--load replays the recorded seed and settings"),
        ("--load x.json --deterministic-ops=warn", "--load replays the recorded seed and"),
        # Deterministic ops: on, =warn or off, nothing else.
        ("42 --deterministic-ops=maybe", r"^--deterministic-ops takes no value, or =warn \(ops "
         r"without a deterministic kernel run and are listed\), got '--deterministic-ops=maybe'$"),
        ("42 --deterministic-ops=WARN", r"got '--deterministic-ops=WARN'$"),
        ("42 --deterministic-ops=", r"got '--deterministic-ops='$"),
        ("42 --deterministic-ops warn", r"^write --deterministic-ops=warn \(with '='\): a word "
         r"after --deterministic-ops is the seed$"),
        ("42 --deterministic-ops --deterministic-ops=warn",
         r"argument --deterministic-ops/--deterministic-ops=warn/--no-deterministic-ops: given "
         r"more than once"),
        ("42 --no-deterministic-ops=warn", "ignored explicit argument 'warn'"),
    ],
)
def test_bad_input_is_a_one_line_usage_error_and_changes_nothing(shell, line, message) -> None:
    shell.run_line_magic("det_seed", "7 --trial 1 --quiet")
    random.random()
    np.random.rand()
    before = prng_states()
    with pytest.raises(UsageError, match=message) as error:
        shell.run_line_magic("det_seed", line)
    assert "\n" not in str(error.value)
    assert prng_states() == before


def test_usage_error_shows_as_one_line_in_a_cell(shell, capsys) -> None:
    shell.run_cell("%det_seed 4.5")
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert text.startswith("UsageError:") and "Traceback" not in text
    assert len(text.splitlines()) == 1


def test_python_api_raises_value_error(shell) -> None:
    before = prng_states()
    for kwargs in ({"seed": -1}, {"seed": 1, "trial": 2.5}, {"seed": 1, "threads": 0},
                   {"seed": 1, "scheme": "nope"}, {"seed": np.array([5])},
                   {"seed": 1, "trial": np.array([1, 2])}, {"seed": 1, "portable": "yes"}):
        with pytest.raises(ValueError) as error:
            det_nb.seed(**kwargs)
        assert "\n" not in str(error.value)
    assert prng_states() == before
    with pytest.raises(ValueError, match=r"\(or None to leave the libraries' thread pools alone\)"):
        det_nb.seed(1, threads=0)  # the API's word for "leave alone" is None


def test_python_api_takes_numpy_integers_alike(shell) -> None:
    try:
        lineage = det_nb.seed(np.int64(5), np.int32(2), threads=np.int64(4))
        assert (lineage.experiment_seed, lineage.trial) == (5, 2)
        assert det_nb.get_session().settings.threads == 4
        assert type(det_nb.get_session().settings.threads) is int
    finally:
        shell.run_line_magic("det_seed", "42 --quiet")


def test_quoted_paths_with_spaces_name_one_file(shell, tmp_path) -> None:
    shell.run_line_magic("det_seed", f'42 --trial 3 --save "{tmp_path}/my run.json" --quiet')
    shell.run_line_magic("det_seed", f"42 --save='{tmp_path}/other run.json' --quiet")
    shell.run_line_magic("det_state", f'save "{tmp_path}/my state.npz"')
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "my run.json", "my state.npz", "other run.json"]
    shell.run_line_magic("det_seed", "7 --quiet")
    shell.run_line_magic("det_seed", f'--load "{tmp_path}/my run.json" --quiet')
    assert det_nb.lineage().trial_seed == TRIAL_SEED
    shell.run_line_magic("det_seed", "42 --quiet")  # the lineage the state was saved under
    shell.run_line_magic("det_state", f"restore '{tmp_path}/my state.npz'")


def test_unterminated_quote_is_one_line_in_a_cell(shell, capsys) -> None:
    shell.run_cell('%det_seed 42 --save "my run.json')
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert text.startswith("UsageError: unterminated quote") and "Traceback" not in text
    assert len(text.splitlines()) == 1


@pytest.mark.parametrize(("line", "message"), [
    ('save "x.npz', "unterminated quote"),
    ("save a.npz b.npz", "unrecognized arguments: b.npz"),
    ("sav x.npz", "invalid choice: 'sav'"),
])
def test_det_state_line_errors_are_usage_errors(shell, line, message) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("det_state", line)


@pytest.mark.parametrize(("line", "message"), [
    ("--runs ٣", r"--runs must be an integer in \[2, 1000\], got '٣'"),
    ("--runs 1_0", r"--runs must be an integer in \[2, 1000\], got '1_0'"),
    ("--runs 1", r"--runs must be an integer in \[2, 1000\], got '1'"),
    ("--runs 2 --runs 3", "argument --runs/-n: given more than once"),
    ("--run 3", "unrecognized arguments: --run 3"),
    ('--runs "3', "unterminated quote"),
])
def test_det_check_line_uses_the_shared_checks(shell, line, message) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_cell_magic("det_check", line, "x = 1")


@pytest.mark.parametrize(("kind", "magic", "line"), [
    ("line", "det_seed", "--help"),
    ("line", "det_seed", "7 --trial 1 -h --save run.json"),
    ("line", "det_state", "-h"),
    ("line", "det_state", "save run.json --help"),
    ("cell", "det_check", "--help"),
    ("cell", "det_check", "--runs 3 -h"),
    ("line", "det_status", "--help"),
])
def test_help_options_point_to_the_question_mark_and_change_nothing(
    shell, tmp_path, monkeypatch, kind: str, magic: str, line: str
) -> None:
    """A magic's help is ``%magic?``: -h/--help anywhere among the options says so in
    one line, before anything runs, is seeded or is written."""
    monkeypatch.chdir(tmp_path)
    shell.run_line_magic("det_seed", "42 --quiet")
    shell.user_ns["runs_made"] = 0
    before = prng_states()
    typed = ("%%" if kind == "cell" else "%") + magic
    asked = "-h" if "-h" in line.split() else "--help"
    with pytest.raises(UsageError) as error:
        if kind == "cell":
            shell.run_cell_magic(magic, line, "runs_made += 1")
        else:
            shell.run_line_magic(magic, line)
    assert str(error.value) == f"{typed} has no {asked} option: for its help, run {typed}?"
    assert prng_states() == before
    assert shell.user_ns["runs_made"] == 0
    assert list(tmp_path.iterdir()) == []


def test_a_file_named_like_an_option_can_follow_a_double_dash(shell, tmp_path,
                                                             monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shell.run_line_magic("det_seed", "42 --quiet")
    shell.run_line_magic("det_state", "save -- --help")
    assert [path.name for path in tmp_path.iterdir()] == ["--help"]


def test_quiet_still_shows_an_assigned_seed_in_one_line(shell, capsys) -> None:
    shell.run_line_magic("det_seed", "--trial 1 --quiet")
    lineage = det_nb.lineage()
    assert lineage.experiment_seed_origin == "assigned"
    out = capsys.readouterr().out
    assert out == (f"experiment seed {lineage.experiment_seed} assigned from the clock; "
                   f"repeat with: %det_seed {lineage.experiment_seed} --trial 1\n")
    shell.run_line_magic("det_seed", "42 --quiet")
    assert capsys.readouterr().out == ""  # a given seed needs no reminder


def test_portable_flag_and_trait(shell) -> None:
    session = det_nb.get_session()
    try:
        shell.run_line_magic("det_seed", "42 --no-portable --quiet")
        assert session.settings.portable is False
        shell.run_line_magic("det_seed", "42 --portable --quiet")
        assert session.settings.portable is True
        shell.run_line_magic("config", "DetMagics.portable = False")
        shell.run_line_magic("det_seed", "42 --quiet")
        assert session.settings.portable is False
        shell.run_line_magic("det_seed", "42 --portable --quiet")
        assert session.settings.portable is True
    finally:
        shell.run_line_magic("config", "DetMagics.portable = True")
        shell.run_line_magic("det_seed", "42 --quiet")
    assert session.settings.portable is True


def test_help_is_generated_from_the_arguments(shell) -> None:
    doc = shell.find_line_magic("det_seed").__doc__
    for flag in ("--trial", "--scheme", "--threads", "--no-single-thread",
                 "--deterministic-ops", "--no-deterministic-ops", "--portable", "--no-portable",
                 "--quiet"):
        assert flag in doc
    assert "[--deterministic-ops | --deterministic-ops=warn | --no-deterministic-ops]" in doc
    usage = doc.split("\n\n")[1]
    assert usage.rstrip().endswith("[seed]")  # one optional seed
    assert "seed ..." not in doc
    assert "  --scheme {seedsequence,determined}\n" in doc
    assert "<" not in doc
    check_doc = shell.find_cell_magic("det_check").__doc__
    assert f"(2 to {MAX_RUNS}, default 2)" in check_doc  # the cap run_check enforces


def test_config_changes_defaults(shell) -> None:
    try:
        shell.run_line_magic("config", "DetMagics.single_thread = False")
        shell.run_line_magic("det_seed", "42 --quiet")
        assert det_nb.get_session().settings.threads is None
        shell.run_line_magic("config", "DetMagics.deterministic_ops = True")
        shell.run_line_magic("det_seed", "42 --quiet")
        assert det_nb.get_session().settings.deterministic_ops
        shell.run_line_magic("det_seed", "42 --single-thread --no-deterministic-ops --quiet")
        assert det_nb.get_session().settings.threads == 1
        assert not det_nb.get_session().settings.deterministic_ops
    finally:  # back to the defaults, in the config too (a reload reads it)
        shell.run_line_magic("config", "DetMagics.single_thread = True")
        shell.run_line_magic("config", "DetMagics.deterministic_ops = False")
    shell.run_line_magic("det_seed", "42 --quiet")


def test_threads_after_tf_started_are_reported_too_late_not_raised(shell) -> None:
    # TF's runtime started with default pools at this module's first op; see
    # test_processes.py for threads pinned in a fresh kernel.
    shell.run_line_magic("det_seed", "42 --threads 4 --quiet")
    check = det_nb.status().check("tensorflow threads")
    assert check.state == "warn"
    assert "could not pin to 4" in check.detail
    assert "restart" in check.fix and "TF_NUM_INTRAOP_THREADS=4" in check.fix
    shell.run_line_magic("det_seed", "42 --no-single-thread --quiet")
    assert det_nb.status().check("tensorflow threads").state == "off"


def test_load_twice_registers_once_and_reload_works(shell) -> None:
    def registered() -> int:
        return sum(isinstance(c, DetMagics) for c in shell.configurables)

    det_nb.load_ipython_extension(shell)
    assert registered() == 1
    shell.run_line_magic("reload_ext", "det_nb")
    assert registered() == 1
    shell.run_line_magic("unload_ext", "det_nb")
    assert registered() == 0
    assert shell.find_line_magic("det_seed") is None
    with pytest.raises(UsageError):
        shell.run_line_magic("det_seed", "42")
    shell.run_line_magic("load_ext", "det_nb")
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    assert det_nb.lineage().trial_seed == TRIAL_SEED


def test_save_that_fails_after_seeding_leaves_the_previous_seed(shell, tmp_path,
                                                              monkeypatch) -> None:
    from det_nb import run_record

    def disk_full(session, path):
        raise OSError(28, "No space left on device")

    shell.run_line_magic("det_seed", "7 --trial 1 --quiet")
    random.random()
    np.random.rand()
    before = prng_states()
    monkeypatch.setattr(run_record, "save", disk_full)
    with pytest.raises(UsageError, match="No space left on device") as error:
        shell.run_line_magic("det_seed", f"6 --save {tmp_path}/run.json")
    assert "\n" not in str(error.value)
    assert prng_states() == before
    assert list(tmp_path.iterdir()) == []
