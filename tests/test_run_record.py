"""The run record: what it holds, replaying it, and refusing bad files whole."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from det_nb import run_record as record
from det_nb.session import Session

tf = pytest.importorskip("tensorflow")  # imported before any Session: no import hooks


@pytest.fixture
def session() -> Iterator[Session]:
    session = Session()
    session.seed(42, 3, threads=1, deterministic_ops=False, per_cell=True)
    yield session
    session.close()


def test_the_record_holds_lineage_settings_status_and_environment(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    data = record.build(session)
    assert data["version"] == record.VERSION == 1
    assert data["lineage"] == {
        "experiment_seed": 42, "experiment_seed_origin": "given", "trial": 3,
        "scheme": "seedsequence", "trial_seed": 1129302213,
    }
    assert data["settings"] == {"threads": 1, "deterministic_ops": False, "per_cell": True}
    names = [check["name"] for check in data["status"]]
    assert names == [check.name for check in session.status().checks]
    assert {"tensorflow threads", "tensorflow op determinism", "per-cell seeding",
            "hash randomisation"} <= set(names)
    environment = data["environment"]
    assert environment["python"] == f"{platform.python_version()} " \
        f"({platform.python_implementation()})"
    assert environment["cpu_count"] == os.cpu_count()
    assert environment["platform"] == platform.platform()
    packages = environment["packages"]
    assert packages["det_nb"] == sys.modules["det_nb"].__version__
    assert packages["numpy"] == np.__version__
    assert packages["tensorflow"] == tf.__version__
    assert environment["gpus"] == []
    variables = environment["variables"]
    assert variables["PYTHONHASHSEED"] == "0"
    assert variables["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert variables["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"
    assert "UNRELATED_VARIABLE" not in variables
    assert environment["hash_randomization"] is bool(sys.flags.hash_randomization)
    json.dumps(data, allow_nan=False)  # plain JSON


def test_save_load_and_replay_restore_lineage_and_settings(
    session: Session, tmp_path: Path
) -> None:
    path = record.save(session, tmp_path / "run.json")
    assert path == tmp_path / "run.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary left
    loaded = record.load(path)
    assert loaded.lineage == session.lineage
    assert loaded.settings == session.settings
    assert loaded.checks == session.status().checks
    other = Session()
    other.seed(7, threads=None, deterministic_ops=False)
    assert record.replay(other, loaded) == []  # same process: nothing differs
    assert other.lineage == session.lineage
    assert other.settings == session.settings
    other.close()


def test_an_assigned_seed_is_recorded_as_assigned(tmp_path: Path) -> None:
    session = Session()
    session.seed(None)
    loaded = record.load(record.save(session, tmp_path / "run.json"))
    assert loaded.lineage.experiment_seed_origin == "assigned"
    assert loaded.lineage.experiment_seed == session.lineage.experiment_seed
    session.close()


def test_replay_lists_each_difference_that_can_change_results(
    session: Session, tmp_path: Path
) -> None:
    data = record.build(session)
    environment = data["environment"]
    environment["packages"]["tensorflow"] = "2.20.0"
    environment["packages"]["torch"] = "2.1.0"
    environment["cpu_count"] = 64
    environment["variables"]["TF_ENABLE_ONEDNN_OPTS"] = "1"
    environment["variables"]["TF_CPP_MIN_LOG_LEVEL"] = "0"  # logging only: not listed
    environment["gpus"] = ["tensorflow /physical_device:GPU:0"]
    environment["hash_randomization"] = not environment["hash_randomization"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    differences = record.replay(session, record.load(path))
    here = record.environment()
    on = {True: "on", False: "off"}
    torch = here["packages"]["torch"] or "not installed"
    assert differences == [
        f"CPU count {os.cpu_count()} here, 64 in the record",
        f"tensorflow {tf.__version__} here, 2.20.0 in the record",
        f"torch {torch} here, 2.1.0 in the record",
        "GPUs seen by the imported frameworks: none here, tensorflow /physical_device:GPU:0 "
        "in the record",
        "TF_ENABLE_ONEDNN_OPTS unset here, '1' in the record",
        f"hash randomisation {on[here['hash_randomization']]} here, "
        f"{on[not here['hash_randomization']]} in the record",
    ]


def test_saving_before_seeding_or_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not seeded yet"):
        record.save(Session(), tmp_path / "run.json")
    session = Session()
    session.seed(1)
    with pytest.raises(ValueError, match=r"folder .* does not exist"):
        record.save(session, tmp_path / "missing" / "run.json")
    with pytest.raises(ValueError, match="it is a folder"):
        record.save(session, tmp_path)
    session.close()


def test_a_failed_write_leaves_the_old_file_whole(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.json"
    path.write_text("old record")

    def fail(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(ValueError, match=r"cannot write .*: No space left on device"):
        record.save(session, path)
    assert path.read_text() == "old record"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


# -- strict loading: every bad file is refused whole, with one line -----------------


def _valid() -> dict:
    session = Session()
    session.seed(42, 3)
    data = record.build(session)
    session.close()
    return data


def _edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    """A spoiler that writes a valid record after ``change``."""
    def spoil(path: Path) -> None:
        data = _valid()
        change(data)
        path.write_text(json.dumps(data))
    return spoil


def _text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


BAD: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (_text(""), "is empty"),
    "whitespace": (_text("  \n"), "is not valid JSON: Expecting value at line 2 column 1; it "
                   "ends too early (truncated?)"),
    "truncated": (lambda p: p.write_text(json.dumps(_valid())[:-40]),
                  "; it ends too early (truncated?)"),
    "broken": (_text('{"version": 1,, }'),
               "is not valid JSON: Expecting property name enclosed in double quotes at line 1 "
               "column 15"),
    "array": (_text("[1, 2]"), "holds a JSON array, not a det_nb record object"),
    "string": (_text('"run"'), "holds a JSON string"),
    "null": (_text("null"), "holds a JSON null"),
    "binary": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "is binary"),
    "not utf-8": (lambda p: p.write_bytes(b'{"a": "\xe9"}'), "is not UTF-8 text"),
    "oversized": (lambda p: p.write_text(json.dumps(_valid()) + " " * 1_000_000),
                  "is over 1000000 bytes"),
    "no version": (_edit(lambda d: d.pop("version")), "has no version field"),
    "wrong version": (_edit(lambda d: d.update(version=2)),
                      "has version 2; this det_nb reads version 1"),
    "version as text": (_edit(lambda d: d.update(version="1")), "has version '1'"),
    "duplicate key": (_text('{"version": 1, "version": 1}'), "key 'version' appears twice"),
    "nan": (_edit(lambda d: d["environment"].update(cpu_count=float("nan"))),
            "NaN is not a JSON number"),
    "missing field": (_edit(lambda d: d["lineage"].pop("trial")), "lineage lacks ['trial']"),
    "unknown field": (_edit(lambda d: d.update(extra=1)), "the record has unknown ['extra']"),
    "seed as text": (_edit(lambda d: d["lineage"].update(experiment_seed="42")),
                     "lineage.experiment_seed must be an integer, got '42'"),
    "seed as bool": (_edit(lambda d: d["lineage"].update(experiment_seed=True)),
                     "lineage.experiment_seed must be an integer, got True"),
    "seed out of range": (_edit(lambda d: d["lineage"].update(experiment_seed=2**31)),
                          "experiment seed must be an integer in [0, 2147483647]"),
    "bad scheme": (_edit(lambda d: d["lineage"].update(scheme="mine")),
                   "scheme must be one of seedsequence, determined"),
    "bad origin": (_edit(lambda d: d["lineage"].update(experiment_seed_origin="guessed")),
                   "experiment seed origin must be one of given, assigned"),
    "trial seed does not follow": (_edit(lambda d: d["lineage"].update(trial_seed=5)),
                                   "trial seed 5 does not follow from the lineage"),
    "zero threads": (_edit(lambda d: d["settings"].update(threads=0)),
                     "threads must be an integer in [1, 1024]"),
    "bad check state": (_edit(lambda d: d["status"][0].update(state="maybe")),
                        "state must be one of ok, warn, off"),
    "status not a list": (_edit(lambda d: d.update(status={})), "status must be an array"),
    "bad package version": (_edit(lambda d: d["environment"]["packages"].update(numpy=2)),
                            "environment.packages['numpy'] must be a string or null"),
    "variable\nwith newline": (
        _edit(lambda d: d["environment"]["variables"].update({"TF_\nX": 1})),
        "environment.variables['TF_\\nX'] must be a string, got 1",
    ),
    "nested deeply": (_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    "huge number": (_text('{"version": ' + "9" * 5000 + "}"), "not a valid det_nb record"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_record_gets_one_line_and_changes_nothing(
    case: str, session: Session, tmp_path: Path
) -> None:
    spoil, message = BAD[case]
    path = tmp_path / "run.json"
    spoil(path)
    lineage, settings = session.lineage, session.settings
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        record.replay(session, record.load(path))
    assert "\n" not in str(error.value)
    assert str(error.value).startswith(f"run record {str(path)!r}")
    assert (session.lineage, session.settings) == (lineage, settings)


def test_missing_and_folder_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        record.load(tmp_path / "none.json")
    with pytest.raises(ValueError, match="is a folder, not a file"):
        record.load(tmp_path)


def test_the_size_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as file:
        file.truncate(1 << 40)  # a sparse terabyte: reading it would not end
    with pytest.raises(ValueError, match="is over 1000000 bytes"):
        record.load(path)
