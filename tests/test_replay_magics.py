"""Run records and PRNG state through the magics: --save, --load and %det_state."""

from __future__ import annotations

import json
import os
import random
import stat

import numpy as np
import pytest
import test_files
from conftest import prng_states
from IPython.core.error import UsageError

import det_nb

# fixtures shared with test_files
fifo, unix_socket, full_disk = test_files.fifo, test_files.unix_socket, test_files.full_disk
promptly = test_files.promptly


def test_save_then_load_replays_lineage_and_settings(shell, tmp_path, capsys) -> None:
    path = tmp_path / "run.json"
    shell.run_line_magic("det_seed", f"42 --trial 3 --deterministic-ops --quiet --save {path}")
    assert json.loads(path.read_text())["lineage"]["trial_seed"] == 1129302213
    shell.run_line_magic("det_seed", "7 --quiet")
    shell.run_line_magic("det_seed", f"--load {path}")
    assert det_nb.lineage().trial_seed == 1129302213
    assert det_nb.get_session().settings.deterministic_ops
    assert "its environment matches this one" in capsys.readouterr().out
    shell.run_line_magic("det_seed", "42 --quiet")


@pytest.mark.parametrize("content", [b"", b'{"version": 1', b"[1, 2]", b'{"version": 99}',
                                     b"\x00\xff\x00binary"])
def test_a_bad_record_is_a_one_line_error_and_changes_nothing(shell, tmp_path, content) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(content)
    shell.run_line_magic("det_seed", "5 --quiet")
    before = (det_nb.lineage(), random.getstate())
    with pytest.raises(UsageError) as error:
        shell.run_line_magic("det_seed", f"--load {path}")
    assert "\n" not in str(error.value)
    assert (det_nb.lineage(), random.getstate()) == before


def test_load_takes_no_other_settings_and_save_needs_a_folder(shell, tmp_path) -> None:
    with pytest.raises(UsageError, match="give no seed, trial or setting with it"):
        shell.run_line_magic("det_seed", f"42 --load {tmp_path / 'run.json'}")
    shell.run_line_magic("det_seed", "5 --quiet")
    with pytest.raises(UsageError, match="does not exist"):
        shell.run_line_magic("det_seed", f"6 --save {tmp_path / 'missing' / 'run.json'}")
    assert det_nb.lineage().experiment_seed == 5


def test_a_save_that_cannot_be_written_changes_nothing(shell, tmp_path) -> None:
    shell.run_line_magic("det_seed", "5 --quiet")
    before = (det_nb.lineage(), random.getstate())
    with pytest.raises(UsageError, match="it is a folder"):
        shell.run_line_magic("det_seed", f"6 --save {tmp_path}")
    assert (det_nb.lineage(), random.getstate()) == before


def test_home_relative_paths_work_for_saving_and_loading(shell, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet --save ~/run.json")
    shell.run_line_magic("det_state", "save ~/state.npz")
    shell.run_line_magic("det_seed", "7 --quiet")
    shell.run_line_magic("det_seed", "--load ~/run.json --quiet")
    assert det_nb.lineage().trial_seed == 1129302213
    shell.run_line_magic("det_state", "restore ~/state.npz")


def test_det_state_pauses_and_resumes_the_streams(shell, tmp_path) -> None:
    path = tmp_path / "state.npz"
    shell.run_line_magic("det_seed", "42 --trial 3 --quiet")
    random.random(), np.random.rand(4), det_nb.rng().random(3)
    shell.run_line_magic("det_state", f"save {path}")
    expected = (random.random(), np.random.rand(4).tolist(), det_nb.rng().random(2).tolist())
    shell.run_line_magic("det_state", f"restore {path}")
    assert (random.random(), np.random.rand(4).tolist(), det_nb.rng().random(2).tolist()) \
        == expected
    with pytest.raises(UsageError, match="invalid choice"):
        shell.run_line_magic("det_state", f"load {path}")


# -- hostile paths and files: one line, nothing changed, never a hang ------------------


def _seeded_and_moved(shell) -> tuple:
    """Seed 5 and draw, so a re-seeding would show; return every stream and the lineage."""
    shell.run_line_magic("det_seed", "5 --quiet")
    random.random(), np.random.rand(2), det_nb.rng().random()
    return prng_states(), det_nb.get_session().rng_state()


def _unchanged(before: tuple) -> bool:
    return (prng_states(), det_nb.get_session().rng_state()) == before


def test_save_onto_a_full_disk_neither_seeds_nor_leaves_a_file(shell, full_disk) -> None:
    before = _seeded_and_moved(shell)
    with pytest.raises(UsageError, match="No space left on device") as error:
        shell.run_line_magic("det_seed", f"6 --quiet --save {full_disk / 'run.json'}")
    assert "\n" not in str(error.value)
    assert _unchanged(before)
    assert sorted(p.name for p in full_disk.iterdir()) == [".filler"]


def test_save_to_a_name_too_long_for_the_file_system_seeds_nothing(shell, tmp_path) -> None:
    before = _seeded_and_moved(shell)
    with pytest.raises(UsageError, match="the name is too long for the file system"):
        shell.run_line_magic("det_seed", f"6 --quiet --save {tmp_path / ('r' * 300)}")
    assert _unchanged(before)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--save=", "--load="])
def test_an_empty_save_or_load_path_is_refused(shell, option) -> None:
    before = _seeded_and_moved(shell)
    seed = "6 " if option == "--save=" else ""
    with pytest.raises(UsageError, match="path") as error:  # the magic's or files.py's line
        shell.run_line_magic("det_seed", f"{seed}--quiet {option}")
    assert "\n" not in str(error.value)
    assert _unchanged(before)


def test_save_onto_a_fifo_or_socket_is_refused_and_leaves_it(shell, fifo, unix_socket) -> None:
    before = _seeded_and_moved(shell)
    for path, kind in ((fifo, "a FIFO"), (unix_socket, "a socket")):
        for line in (f"det_seed 6 --quiet --save {path}", f"det_state save {path}"):
            magic, arguments = line.split(" ", 1)
            error = promptly(lambda m=magic, a=arguments: shell.run_line_magic(m, a))
            assert isinstance(error, UsageError), line
            assert f"it is {kind}, not a regular file" in str(error), line
    assert _unchanged(before)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISSOCK(os.stat(unix_socket).st_mode)


def test_load_and_restore_from_a_fifo_return_at_once(shell, fifo) -> None:
    before = _seeded_and_moved(shell)
    for magic, arguments, what in (("det_seed", f"--load {fifo}", "run record"),
                                   ("det_state", f"restore {fifo}", "state file")):
        error = promptly(lambda m=magic, a=arguments: shell.run_line_magic(m, a))
        assert isinstance(error, UsageError)
        assert str(error) == f"{what} {str(fifo)!r} is a FIFO, not a regular file"
    assert _unchanged(before)


def test_a_record_with_forged_lines_and_a_lone_surrogate_prints_escaped(
    shell, tmp_path, capsys
) -> None:
    path = tmp_path / "run.json"
    shell.run_line_magic("det_seed", f"42 --quiet --save {path}")
    data = json.loads(path.read_text())
    data["environment"]["cpu"] = "x\nreplayed the run record; its environment matches\udcff"
    data["environment"]["variables"]["TF_X"] = "\x1b[2J"
    path.write_text(json.dumps(data))
    capsys.readouterr()
    shell.run_line_magic("det_seed", f"--load {path}")
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line.startswith("  - ")]
    assert any("x\\nreplayed the run record; its environment matches\\udcff" in line
               for line in listed)
    assert any("TF_X unset here, '\\x1b[2J' in the record" in line for line in listed)
    assert "\x1b" not in out and "\udcff" not in out
    out.encode("utf-8")


def test_a_cluster_record_off_the_cluster_is_replayed_as_given_with_a_note(
    shell, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("DET_TRIAL_SEED", raising=False)
    path = tmp_path / "run.json"
    shell.run_line_magic("det_seed", f"1234 --quiet --save {path}")
    data = json.loads(path.read_text())
    data["lineage"]["experiment_seed_origin"] = "cluster"
    path.write_text(json.dumps(data))
    capsys.readouterr()
    shell.run_line_magic("det_seed", f"--load {path}")
    assert det_nb.lineage().experiment_seed_origin == "given"
    assert "came from a Determined cluster; no Determined cluster here" in capsys.readouterr().out
