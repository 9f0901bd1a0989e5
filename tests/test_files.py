"""User-named files: hostile paths get one line, never hang, never replace a non-file."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from det_nb import files


def promptly(call: Callable[[], object], seconds: float = 10) -> BaseException | None:
    """Run ``call`` in a thread; fail if it is still running after ``seconds``.

    Returns what it raised (None if nothing). A read that blocks on a FIFO then fails the
    test instead of hanging it; the caller's FIFO fixture unblocks the thread afterwards.
    """
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return raised[0] if raised else None


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO with no writer; a reader stuck on it is released when the test ends."""
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    yield path
    with contextlib.suppress(OSError):  # ENXIO: nobody is reading, as it should be
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sock.json"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    yield path
    server.close()


@pytest.fixture
def null_device(tmp_path: Path) -> Path:
    """A character device like /dev/null, made in tmp (the real one is never touched)."""
    path = tmp_path / "null.json"
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 64 KiB tmpfs filled to the last byte (needs root to mount)."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        filler = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(filler, b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        finally:
            os.close(filler)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def one_line(error: pytest.ExceptionInfo[ValueError]) -> str:
    message = str(error.value)
    assert "\n" not in message and message.isprintable(), message
    return message


# -- checking a path before anything changes -------------------------------------------


@pytest.mark.parametrize("path", ["", "   "])
def test_an_empty_path_is_refused_for_reading_and_writing(path: str) -> None:
    with pytest.raises(ValueError, match="no run record path given: give a file name") as error:
        files.writable_target(path, "run record")
    one_line(error)
    with pytest.raises(ValueError, match="no state file path given"):
        files.read_limited(path, "state file")


def test_an_unknown_users_home_is_one_line_not_a_runtime_error() -> None:
    with pytest.raises(ValueError, match="no user 'nosuchuser_det_nb' here") as error:
        files.writable_target("~nosuchuser_det_nb/x.json", "run record")
    one_line(error)
    with pytest.raises(ValueError, match="no user 'nosuchuser_det_nb' here"):
        files.read_limited("~nosuchuser_det_nb/x.json", "run record")


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / ("r" * 300 + ".json")
    for call in (lambda: files.write_atomically(path, b"{}"),
                 lambda: files.read_limited(path, "run record")):
        with pytest.raises(ValueError, match="the name is too long for the file system") as error:
            call()
        one_line(error)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["r" * 250 + ".json", "\U0001F600" * 62 + ".json"],
                         ids=["255 ASCII bytes", "253 bytes of emoji"])
def test_the_longest_name_the_file_system_takes_is_written(tmp_path: Path, name: str) -> None:
    """The temporary file's name must not be what pushes a legal name over the limit,
    which counts bytes, not characters."""
    path = tmp_path / name
    assert files.write_atomically(path, b"{}") == path
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.read_bytes() == b"{}"


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="it is a folder"):
        files.write_atomically(tmp_path, b"x")
    with pytest.raises(ValueError, match="is a folder, not a file"):
        files.read_limited(tmp_path, "run record")


# -- FIFOs, devices and sockets: never opened blocking, never replaced -----------------


def test_reading_a_fifo_returns_at_once_with_one_line(fifo: Path) -> None:
    error = promptly(lambda: files.read_limited(fifo, "run record"))
    assert isinstance(error, ValueError)
    assert str(error) == f"run record {str(fifo)!r} is a FIFO, not a regular file"


def test_writing_onto_a_fifo_is_refused_and_leaves_it(fifo: Path) -> None:
    error = promptly(lambda: files.write_atomically(fifo, b"{}"))
    assert isinstance(error, ValueError)
    assert "it is a FIFO, not a regular file" in str(error)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in fifo.parent.iterdir()] == [fifo.name]


def test_writing_onto_a_socket_is_refused_and_leaves_it(unix_socket: Path) -> None:
    with pytest.raises(ValueError, match="it is a socket, not a regular file"):
        files.write_atomically(unix_socket, b"{}")
    assert stat.S_ISSOCK(os.stat(unix_socket).st_mode)
    with pytest.raises(ValueError, match="is a socket, not a regular file"):
        files.read_limited(unix_socket, "state file")


def test_writing_onto_a_character_device_is_refused_and_leaves_it(null_device: Path) -> None:
    with pytest.raises(ValueError, match="it is a character device, not a regular file"):
        files.write_atomically(null_device, b"{}")
    assert stat.S_ISCHR(os.stat(null_device).st_mode)
    with pytest.raises(ValueError, match="is a character device, not a regular file"):
        files.read_limited(null_device, "run record")


def test_a_link_to_a_regular_file_is_written_through(tmp_path: Path) -> None:
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    files.write_atomically(link, b"new")
    assert link.is_symlink() and target.read_text() == "new"


# -- failures leave no temporary file and the old file whole ---------------------------


def test_a_full_disk_leaves_the_old_file_and_no_temporary(full_disk: Path) -> None:
    path = full_disk / "run.json"
    with pytest.raises(ValueError, match="No space left on device") as error:
        files.write_atomically(path, b"x" * 20_000)
    one_line(error)
    assert sorted(p.name for p in full_disk.iterdir()) == [".filler"]


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_any_failing_step_removes_the_temporary_file(
    failing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.json"
    path.write_text("old")

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, no_space)
    with pytest.raises(ValueError, match=r"cannot write .*: No space left on device"):
        files.write_atomically(path, b"new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_file_is_written_whole_with_the_old_files_mode(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text("old")
    path.chmod(0o600)
    assert files.write_atomically(path, b"new" * 100_000) == path
    assert path.read_bytes() == b"new" * 100_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reading_refuses_missing_empty_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        files.read_limited(tmp_path / "none", "run record")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        files.read_limited(tmp_path / "empty", "run record")
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(ValueError, match="is over 10 bytes"):
        files.read_limited(tmp_path / "big", "run record", max_bytes=10)


# -- text from files, made safe to print --------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    ("plain text, é", "plain text, é"),
    ("two\nlines\r", "two\\nlines\\r"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("lone \udcff surrogate", "lone \\udcff surrogate"),
    ("line\u2028separator", "line\\u2028separator"),
])
def test_printable_escapes_what_could_forge_lines_or_fail_to_encode(text: str, shown: str) -> None:
    assert files.printable(text) == shown
    files.printable(text).encode("utf-8")  # never UnicodeEncodeError


# -- checked again at the moment of writing (issue 19) ---------------------------------


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    """The run's input, which no output may ever replace."""
    path = tmp_path / "notebook.ipynb"
    path.write_bytes(b'{"cells": []}')
    return path


def swap_during_write(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None]) -> None:
    """Run ``swap`` once while write_atomically writes: after its temporary file is written,
    before the rename (its fsync is the step between)."""
    real_fsync = os.fsync
    done: list[bool] = []

    def fsync_then_swap(handle: int) -> None:
        real_fsync(handle)
        if not done:
            done.append(True)
            swap()

    monkeypatch.setattr(os, "fsync", fsync_then_swap)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("swap", ["link to the notebook", "link elsewhere", "hard link",
                                  "fifo", "folder"])
def test_a_target_swapped_while_it_is_written_is_refused_and_nothing_written(
    swap: str, tmp_path: Path, notebook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, elsewhere = tmp_path / "out.json", tmp_path / "precious.txt"
    out.write_text("old results")
    elsewhere.write_text("precious")

    def replace_out() -> None:
        out.unlink()
        if swap == "link to the notebook":
            out.symlink_to(notebook)
        elif swap == "link elsewhere":
            out.symlink_to(elsewhere)
        elif swap == "hard link":
            os.link(notebook, out)
        elif swap == "fifo":
            os.mkfifo(out)
        else:
            out.mkdir()

    swap_during_write(monkeypatch, replace_out)
    with pytest.raises(ValueError) as refused:
        files.write_atomically(out, b'{"trials": []}', "trials output", refuse=[notebook],
                               refused_as="the notebook")
    message = one_line(refused)
    says = {"link to the notebook": "it became a symbolic link after det_nb checked it",
            "link elsewhere": "it became a symbolic link after det_nb checked it",
            "hard link": f"it is now the notebook {files.shown(notebook)}",
            "fifo": "it is now a FIFO, not a regular file",
            "folder": "it is now a folder, not a regular file"}[swap]
    assert message == f"cannot write {files.shown(out)}: {says}; nothing was written"
    assert notebook.read_bytes() == b'{"cells": []}' and elsewhere.read_text() == "precious"
    assert leftovers(tmp_path) == []


def test_a_folder_moved_while_a_file_is_written_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, other = tmp_path / "results", tmp_path / "other"
    folder.mkdir()
    other.mkdir()

    def move_folder() -> None:
        folder.rename(tmp_path / "moved")
        folder.symlink_to(other)

    swap_during_write(monkeypatch, move_folder)
    with pytest.raises(ValueError) as refused:
        files.write_atomically(folder / "out.json", b"{}")
    assert one_line(refused).endswith(": its folder was moved or replaced while det_nb wrote "
                                      "it; nothing was written")
    assert list(other.iterdir()) == [] and list((tmp_path / "moved").iterdir()) == []


@pytest.mark.parametrize("became", ["the path", "a folder on the path"])
def test_a_path_checked_at_start_that_became_a_link_is_refused(
    became: str, tmp_path: Path, notebook: Path
) -> None:
    (tmp_path / "runs").mkdir()
    out = files.writable_target(tmp_path / "runs" / "out.json", "trials output")  # at start
    if became == "the path":  # swapped during the run, for a link to the notebook
        out.symlink_to(notebook)
    else:
        (tmp_path / "runs").rename(tmp_path / "old")
        (tmp_path / "runs").symlink_to(tmp_path / "old")
    with pytest.raises(ValueError) as refused:
        files.write_atomically(out, b"{}", "trials output", refuse=[notebook],
                               refused_as="the notebook", follow_links=False)
    where = "it became" if became == "the path" else "a folder on its path became"
    assert one_line(refused) == (f"cannot write {files.shown(out)}: {where} a symbolic link "
                                 "after det_nb checked it; nothing was written")
    assert notebook.read_bytes() == b'{"cells": []}'
    assert not (tmp_path / "old" / "out.json").exists()


@pytest.mark.parametrize("given", ["the notebook", "a link to it", "a hard link to it",
                                   "its path, missing"])
def test_a_refused_input_is_never_written(given: str, tmp_path: Path, notebook: Path) -> None:
    path = {"the notebook": notebook, "its path, missing": notebook}.get(given, tmp_path / "o")
    if given == "a link to it":
        path.symlink_to(notebook)
    elif given == "a hard link to it":
        os.link(notebook, path)
    elif given == "its path, missing":
        notebook.unlink()
    with pytest.raises(ValueError) as refused:
        files.write_atomically(path, b"{}", refuse=[notebook], refused_as="the notebook")
    assert one_line(refused).endswith(f": it is the notebook {files.shown(notebook)}; nothing "
                                      "was written")
    assert not notebook.exists() if given == "its path, missing" else (
        notebook.read_bytes() == b'{"cells": []}')
    assert leftovers(tmp_path) == []


def test_a_link_given_at_the_start_of_a_write_is_still_followed(tmp_path: Path,
                                                              notebook: Path) -> None:
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    link.symlink_to(target)
    assert files.write_atomically(link, b"new", refuse=[notebook]) == target
    assert link.is_symlink() and target.read_bytes() == b"new"
