"""Run records and PRNG state through the magics: --save, --load and %det_state."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from IPython.core.error import UsageError

import det_nb


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
