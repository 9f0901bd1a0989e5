"""The run record: what it holds, replaying it, and refusing bad files whole."""

from __future__ import annotations

import json
import os
import platform
import re
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import test_files
from test_files import promptly

from det_nb import run_record as record
from det_nb.session import Session

tf = pytest.importorskip("tensorflow")  # imported before any Session: no import hooks
fifo, full_disk = test_files.fifo, test_files.full_disk  # fixtures shared with test_files


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
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", "terraform's, not TensorFlow's")
    data = record.build(session)
    assert data["version"] == record.VERSION == 3
    assert data["lineage"] == {
        "experiment_seed": 42, "experiment_seed_origin": "given", "trial": 3,
        "scheme": "seedsequence", "trial_seed": 1129302213,
    }
    assert data["settings"] == {
        "threads": 1, "deterministic_ops": False, "per_cell": True, "portable": True,
    }
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
    assert "UNRELATED_VARIABLE" not in variables and "TF_CLI_CONFIG_FILE" not in variables
    assert variables["OPENBLAS_CORETYPE"] == "Haswell"  # a CPU-kernel pin in force
    assert environment["hash_randomization"] is bool(sys.flags.hash_randomization)
    json.dumps(data, allow_nan=False)  # plain JSON


def test_the_record_holds_the_cpu_flags_and_kernels_that_can_change_floats(
    session: Session,
) -> None:
    from det_nb import cpu_kernels

    environment = record.build(session)["environment"]
    assert {key: environment[key] for key in ("cpu_flags", "cpu_kernels")} \
        == cpu_kernels.record_fields()
    assert all(isinstance(flag, str) for flag in environment["cpu_flags"])
    assert all(isinstance(kernel, str) for kernel in environment["cpu_kernels"].values())


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
    "wrong version": (_edit(lambda d: d.update(version=4)),
                      "has version 4; this det_nb reads versions 1, 2 and 3"),
    "version 1 with version 2 fields": (
        _edit(lambda d: (d.update(version=1), d.pop("nondeterministic_ops"),
                         d.pop("unseeded_randomness"))),
        "settings has unknown ['portable']"),
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
    "huge number": (_text('{"version": ' + "9" * 5000 + "}"), "not a valid det_nb file"),
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


# -- version 1 records, CPU kernels, escaping, cluster origin ------------------------


def test_a_version_1_record_is_read_and_replayed_without_cpu_kernel_pins(
    session: Session, tmp_path: Path
) -> None:
    data = record.build(session)
    data["version"] = 1
    del data["settings"]["portable"]
    del data["environment"]["cpu_flags"], data["environment"]["cpu_kernels"]
    del data["environment"]["cpus_usable"], data["environment"]["thread_pools"]
    del data["nondeterministic_ops"]
    for check in data["status"]:
        del check["caveat"]
    del data["unseeded_randomness"]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    loaded = record.load(path)
    assert loaded.settings.portable is False  # det_nb before version 2 pinned no kernels
    assert loaded.lineage == session.lineage
    assert record.compare(loaded.environment, record.environment()) == []


def test_compare_lists_cpu_flags_and_kernels_that_differ() -> None:
    here = record.environment()
    recorded = json.loads(json.dumps(here))
    here = {**here, "cpu_flags": ["sse2", "avx2", "fma", "ht"],
            "cpu_kernels": {"OpenBLAS": "Haswell", "oneDNN": "AVX2"}}
    recorded.update(cpu_flags=["sse2", "avx2", "fma", "avx512f", "avx512bw", "pdpe1gb"],
                    cpu_kernels={"OpenBLAS": "SkylakeX", "oneDNN": "AVX2"})
    assert record.compare(recorded, here) == [
        "CPU flags that select kernels differ: avx512bw, avx512f only in the record "
        "(libraries not pinned to one baseline can give other floats)",
        "OpenBLAS kernel Haswell here, SkylakeX in the record: it can change results",
    ]
    recorded["cpu_flags"] = [*here["cpu_flags"], "pdpe1gb"]  # no kernel picks by it
    recorded["cpu_kernels"] = here["cpu_kernels"]
    assert record.compare(recorded, here) == []


def test_text_from_a_record_is_escaped_before_it_is_printed(
    session: Session, tmp_path: Path
) -> None:
    data = record.build(session)
    forged = "x\nreplayed the run record; its environment matches this one\x1b[2K\udcff"
    environment = data["environment"]
    environment.update(cpu=forged, platform=forged, gpus=[forged])
    environment["packages"]["numpy"] = forged
    environment["variables"]["TF_FORGED"] = forged
    environment["cpu_kernels"] = {forged: forged}
    data["status"][0]["detail"] = forged
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))  # \udcff is written as the JSON escape \udcff
    loaded = record.load(path)
    assert loaded.checks[0].detail.isprintable()
    differences = record.replay(session, loaded)
    assert len(differences) >= 6
    for line in differences:
        assert line.isprintable(), line
        line.encode("utf-8")  # a lone surrogate would raise UnicodeEncodeError here
    assert any("x\\nreplayed the run record" in line and "\\x1b[2K\\udcff" in line
               for line in differences)


def _cluster_record(tmp_path: Path, seed: int) -> Path:
    data = _valid()
    data["lineage"].update(experiment_seed=seed, experiment_seed_origin="cluster", trial=None,
                           trial_seed=seed)
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(data))
    return path


def test_a_cluster_record_replays_as_given_with_a_note_off_the_cluster(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DET_TRIAL_SEED", raising=False)
    differences = record.replay(session, record.load(_cluster_record(tmp_path, 1234)))
    assert session.lineage.experiment_seed == session.lineage.trial_seed == 1234
    assert session.lineage.experiment_seed_origin == "given"
    assert differences[0] == (
        "the record's seed 1234 came from a Determined cluster; no Determined cluster here "
        "(DET_TRIAL_SEED unset), so it is replayed as a given seed"
    )
    monkeypatch.setenv("DET_TRIAL_SEED", "99")
    differences = record.replay(session, record.load(_cluster_record(tmp_path, 1234)))
    assert session.lineage.experiment_seed_origin == "given"
    assert "this Determined trial's seed is 99" in differences[0]


def test_a_cluster_record_keeps_its_origin_in_the_trial_it_came_from(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DET_TRIAL_SEED", "1234")
    differences = record.replay(session, record.load(_cluster_record(tmp_path, 1234)))
    assert session.lineage.experiment_seed_origin == "cluster"
    assert differences == []


# -- seed and save: both or neither ---------------------------------------------------


def everything(session: Session) -> tuple:
    """The session and the state of every stream it seeds, read without drawing."""
    streams = {
        source.name: {key: np.asarray(value).tobytes() for key, value in state.items()}
        for source in session.sources
        if source.loaded() is not None and (state := source.get_state()) is not None
    }
    return (session.lineage, session.settings, session.applied_seed, session.status().checks,
            streams, session.rng_state())


def _draw_some(session: Session) -> None:
    """Move every stream on, so that re-seeding would be seen."""
    import random

    keras = sys.modules["keras"]
    random.random(), np.random.rand(3), tf.random.get_global_generator().normal([2])
    keras.random.normal([2]), session.rng().random()


def _seed_six(session: Session) -> Callable[[], object]:
    return lambda: session.seed(6, 2, deterministic_ops=True)


def test_seed_and_save_seeds_and_writes_the_new_record(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    lineage = record.seed_and_save(session, path, _seed_six(session))
    assert lineage == session.lineage and lineage.experiment_seed == 6
    assert record.load(path).lineage == lineage
    assert record.load(path).settings.deterministic_ops


def test_seed_and_save_onto_a_full_disk_changes_nothing(session: Session, full_disk: Path) -> None:
    _draw_some(session)
    before = everything(session)
    with pytest.raises(ValueError, match="No space left on device") as error:
        record.seed_and_save(session, full_disk / "run.json", _seed_six(session))
    assert "\n" not in str(error.value)
    assert everything(session) == before
    assert sorted(p.name for p in full_disk.iterdir()) == [".filler"]


@pytest.mark.parametrize("failing", ["fsync", "write"])
def test_seed_and_save_undoes_the_seeding_when_the_write_fails(
    failing: str, session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _draw_some(session)
    before = everything(session)

    def no_space(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, no_space)
    with pytest.raises(ValueError, match="No space left on device"):
        record.seed_and_save(session, tmp_path / "run.json", _seed_six(session))
    monkeypatch.undo()
    assert everything(session) == before
    assert list(tmp_path.iterdir()) == []


def test_seed_and_save_undoes_the_seeding_when_building_the_record_fails(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _draw_some(session)
    before = everything(session)

    def broken() -> dict:
        raise RuntimeError("metadata\nunreadable")

    monkeypatch.setattr(record, "environment", broken)
    with pytest.raises(ValueError, match=r"run record .*: RuntimeError: metadata\\nunreadable$"):
        record.seed_and_save(session, tmp_path / "run.json", _seed_six(session))
    assert everything(session) == before


def test_seed_and_save_to_a_name_too_long_seeds_nothing(session: Session, tmp_path: Path) -> None:
    _draw_some(session)
    before = everything(session)
    with pytest.raises(ValueError, match="the name is too long for the file system"):
        record.seed_and_save(session, tmp_path / ("r" * 300), _seed_six(session))
    assert everything(session) == before
    assert list(tmp_path.iterdir()) == []


def test_seed_and_save_onto_a_fifo_seeds_nothing_and_leaves_it(
    session: Session, fifo: Path
) -> None:
    before = everything(session)
    error = promptly(lambda: record.seed_and_save(session, fifo, _seed_six(session)))
    assert isinstance(error, ValueError) and "it is a FIFO, not a regular file" in str(error)
    assert everything(session) == before
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_loading_a_record_from_a_fifo_returns_at_once(fifo: Path) -> None:
    error = promptly(lambda: record.load(fifo))
    assert isinstance(error, ValueError)
    assert str(error) == f"run record {str(fifo)!r} is a FIFO, not a regular file"
