"""User-named files: checked before anything changes, read without blocking, written atomically.

Run records and state files go through here. A path is refused with one line (ValueError)
when it is empty, names an unknown user's home, is too long for the file system, or names
a folder or something that is not a regular file (a FIFO, a device, a socket). Such a
path is judged by ``os.stat`` and opened non-blocking, so a FIFO can never hang a read;
a write goes to a temporary file in the same folder that is renamed over the target, so
it replaces a regular file or nothing, and the temporary file is removed on any failure.
The target is checked again at the moment of the rename: a path that became a symbolic
link, or that is now one of the run's input files (the notebook), is refused then too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

#: Larger files are refused before they are read: records and state files are small.
MAX_BYTES = 1_000_000
#: Bytes a temporary file's name adds to the part of the target's name it keeps:
#: "." + name + "." + 8 random hex digits + ".tmp".
_TEMPORARY_NAME_EXTRA = 14
#: The longest file name, in bytes, where the file system does not say (POSIX's usual).
_DEFAULT_NAME_MAX = 255
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def shown(path: str | os.PathLike[str]) -> str:
    """A path for a one-line message: quoted, with control and odd characters escaped."""
    return repr(os.fspath(path))


def printable(text: str) -> str:
    """``text`` safe to print on one line: every non-printable character escaped as repr does.

    Newlines, control characters and lone surrogates become ``\\n``, ``\\x1b``, ``\\udcff``,
    so text read from a file can neither forge output lines nor fail to encode.
    """
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def user_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` with ``~`` expanded; ValueError (one line) when it is empty or the user unknown."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"no {what} path given: give a file name")
    try:
        os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate: no file system name can hold it
        raise ValueError(f"cannot use {what} {shown(text)}: the name cannot be encoded for "
                         "this file system") from None
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~nosuchuser/x": Python cannot tell whose home it is
        user = text[1:].split(os.sep, 1)[0]
        raise ValueError(f"cannot use {what} {shown(text)}: no user {user!r} here") from None


def writable_target(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` (``~`` expanded, links followed) if a file can be written there; else ValueError.

    Callers check this before changing anything, so a bad path changes nothing. What is
    there already must be a regular file: a folder, FIFO, device or socket is refused.
    """
    target = user_path(path, what)
    where = shown(target)
    try:
        status = os.stat(target)
    except FileNotFoundError:
        status = None
    except OSError as error:
        raise ValueError(f"cannot write {where}: {_reason(error)}") from None
    if status is not None and stat.S_ISDIR(status.st_mode):
        raise ValueError(f"cannot write {where}: it is a folder")
    if status is not None and not stat.S_ISREG(status.st_mode):
        raise ValueError(f"cannot write {where}: it is {_kind(status.st_mode)}, not a regular file")
    target = Path(os.path.realpath(target))  # a link: write the file it points to
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {where}: folder {shown(folder)} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {where}: folder {shown(folder)} is not writable")
    return target


def write_atomically(
    path: str | os.PathLike[str],
    data: bytes,
    what: str = "file",
    *,
    refuse: Sequence[str | os.PathLike[str]] = (),
    refused_as: str = "an input file",
    follow_links: bool = True,
) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    Readers see the old file or the new one, never a part. The target's folder is opened
    once and the temporary file made in it; just before the rename the final name is
    checked again with ``lstat``: a symbolic link that appeared meanwhile, something that
    is not a regular file, a folder that was moved, or one of the ``refuse`` files (the
    user's inputs, called ``refused_as`` in the message, e.g. "the notebook"; links and
    hard links count) is refused and nothing is written. A link at ``path`` when the call
    starts is followed (its file is written), unless ``follow_links`` is False: then
    ``path`` is one :func:`writable_target` resolved when the run began, and a link found
    on it now appeared since. ValueError (one line); the temporary file never outlives a
    failure.
    """
    given = user_path(path, what)
    if not follow_links:
        _refuse_new_links(given)
    target = writable_target(given, what)
    where = shown(target)
    refused = [user_path(item, refused_as) for item in refuse]
    _check_final_name(target, None, refused, refused_as)
    try:
        folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise ValueError(f"cannot write {where}: {_reason(error)}") from None
    try:
        try:
            mode = stat.S_IMODE(os.stat(target.name, dir_fd=folder).st_mode)
        except FileNotFoundError:
            mode = 0o644
        except OSError as error:
            raise ValueError(f"cannot write {where}: {_reason(error)}") from None
        temporary, handle = _create_temporary(folder, target)
        try:
            try:
                _write_all(handle, data)
                os.fchmod(handle, mode)
                os.fsync(handle)
            finally:
                os.close(handle)
            _check_final_name(target, folder, refused, refused_as)
            os.replace(target.parent / temporary, target)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=folder)
            if isinstance(error, OSError):
                raise ValueError(f"cannot write {where}: {_reason(error)}") from None
            raise
        _sync_folder(folder)
    finally:
        os.close(folder)
    return target


def _refuse_new_links(path: Path) -> None:
    """ValueError if ``path`` (resolved when it was checked) now passes through a link."""
    absolute = Path(os.path.abspath(path))
    if os.path.realpath(absolute) == str(absolute):
        return
    what = ("it became a symbolic link" if absolute.is_symlink()
            else "a folder on its path became a symbolic link")
    raise ValueError(f"cannot write {shown(absolute)}: {what} after det_nb checked it; "
                     "nothing was written")


def _check_final_name(target: Path, folder: int | None, refused: Sequence[Path],
                      refused_as: str) -> None:
    """ValueError unless ``target`` is still a regular file or nothing, and none of ``refused``.

    With ``folder`` (the target's folder, opened before the temporary file was made) the
    name is looked up in that very folder, and the folder must still be at its path.
    """
    where = shown(target)
    try:
        if folder is None:
            now = os.lstat(target)
        else:
            now = os.stat(target.name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        now = None
    if folder is not None:
        try:
            same_folder = os.path.samestat(os.fstat(folder), os.stat(target.parent))
        except OSError:
            same_folder = False
        if not same_folder:
            raise ValueError(f"cannot write {where}: its folder was moved or replaced while "
                             "det_nb wrote it; nothing was written")
    if now is not None and stat.S_ISLNK(now.st_mode):
        raise ValueError(f"cannot write {where}: it became a symbolic link after det_nb "
                         "checked it; nothing was written")
    if now is not None and not stat.S_ISREG(now.st_mode):
        kind = "a folder" if stat.S_ISDIR(now.st_mode) else _kind(now.st_mode)
        raise ValueError(f"cannot write {where}: it is now {kind}, not a regular file; "
                         "nothing was written")
    for item in refused:
        if _same_file(now, target, item):
            became = "is now" if folder is not None else "is"
            raise ValueError(f"cannot write {where}: it {became} {refused_as} {shown(item)}; "
                             "nothing was written")


def _same_file(now: os.stat_result | None, target: Path, other: Path) -> bool:
    """Whether the file at ``target`` (``now``, its lstat) is ``other`` (links followed)."""
    try:
        theirs = os.stat(other)
    except OSError:  # gone or unreadable: the same path is the same file
        return os.path.realpath(other) == os.path.realpath(target)
    return now is not None and os.path.samestat(now, theirs)


def _create_temporary(folder: int, target: Path) -> tuple[str, int]:
    """A new, private file in the open ``folder``: its name and a descriptor to write it."""
    stem = _temporary_stem(target)
    for _ in range(100):
        name = f".{stem}.{secrets.token_hex(4)}.tmp"
        try:
            handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=folder)
        except FileExistsError:
            continue
        except OSError as error:
            raise ValueError(f"cannot write {shown(target)}: {_reason(error)}") from None
        return name, handle
    raise ValueError(f"cannot write {shown(target)}: no free temporary name in its folder")


def _temporary_stem(target: Path) -> str:
    """As much of ``target``'s name as its temporary file's name can keep and still fit
    the folder's NAME_MAX, which counts bytes (a 253-byte emoji name is legal)."""
    try:
        name_max = os.pathconf(target.parent, "PC_NAME_MAX")
    except (OSError, ValueError):  # the system cannot say
        name_max = -1
    if name_max <= 0:  # unknown or unlimited
        name_max = _DEFAULT_NAME_MAX
    stem = target.name
    while stem and len(os.fsencode(stem)) > name_max - _TEMPORARY_NAME_EXTRA:
        stem = stem[:-1]
    return stem


def read_limited(path: str | os.PathLike[str], what: str, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``; ValueError (one line) for anything else.

    Missing, unreadable, a folder, a FIFO, device or socket, empty, or over ``max_bytes``:
    judged by ``os.stat`` before opening, opened non-blocking, and confirmed on the open
    descriptor, so nothing here waits on a writer.
    """
    source = user_path(path, what)
    where = f"{what} {shown(source)}"
    try:
        status = os.stat(source)
        _check_readable(status, where, max_bytes)
        handle = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ValueError(f"{where} does not exist") from None
    except OSError as error:
        raise ValueError(f"cannot read {where}: {_reason(error)}") from None
    try:
        _check_readable(os.fstat(handle), where, max_bytes)  # the file opened is the one judged
        data = _read_at_most(handle, max_bytes + 1)
    except OSError as error:
        raise ValueError(f"cannot read {where}: {_reason(error)}") from None
    finally:
        os.close(handle)
    if len(data) > max_bytes:  # it grew while being read
        raise ValueError(f"{where} is over {max_bytes} bytes: not a det_nb file")
    if not data:
        raise ValueError(f"{where} is empty")
    return data


def parse_json(raw: bytes, where: str) -> object:
    """Strict JSON from bytes: UTF-8 text, no NUL, no duplicate keys, no NaN or Infinity."""
    if b"\0" in raw:
        raise ValueError(f"{where} is binary, not JSON text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{where} is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"{where} is nested too deeply to be a det_nb file") from None
    except json.JSONDecodeError as error:
        ends = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")
        raise ValueError(
            f"{where} is not valid JSON: {error.msg} at line {error.lineno} column "
            f"{error.colno}{'; it ends too early (truncated?)' if ends else ''}"
        ) from None
    except ValueError as error:  # duplicate keys, NaN, numbers too long
        raise ValueError(f"{where} is not a valid det_nb file: {printable(str(error))}") from None


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _check_readable(status: os.stat_result, where: str, max_bytes: int) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise ValueError(f"{where} is a folder, not a file")
    if not stat.S_ISREG(status.st_mode):
        raise ValueError(f"{where} is {_kind(status.st_mode)}, not a regular file")
    if status.st_size > max_bytes:
        raise ValueError(f"{where} is over {max_bytes} bytes: not a det_nb file")


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _reason(error: OSError) -> str:
    """An OSError in words, on one line (ENAMETOOLONG said plainly)."""
    if error.errno == errno.ENAMETOOLONG:
        return "the name is too long for the file system"
    return printable(error.strerror or str(error))


def _write_all(handle: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view):]


def _read_at_most(handle: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(handle, min(limit - size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _sync_folder(folder: int) -> None:
    """Make the rename durable; where the file system cannot, the rename still stands."""
    with contextlib.suppress(OSError):
        os.fsync(folder)


# -- JSON schemas (records and state metadata) -------------------------------------------


class MapOf:
    """Schema of an object whose keys are free strings and whose values share a schema."""

    def __init__(self, values: object) -> None:
        self.values = values


class AnyJSON:
    """Schema leaf for a value of any JSON type (bounding its depth is the caller's job)."""


_TYPE_NAMES = {
    int: "an integer", float: "a number", str: "a string", bool: "true or false",
    dict: "an object", None: "null",
}


def check_fields(value: object, schema: object, where: str, whole: str = "the record") -> None:
    """ValueError naming the first field of ``value`` that does not fit ``schema``.

    Leaves are types (None for null) or tuples of them, or :class:`AnyJSON`; a dict has
    exactly its keys; a one-item list is an array of that; :class:`MapOf` an object with
    free keys. ``whole`` names the top level in messages.
    """
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{where or whole} must be an object")
        missing, unknown = schema.keys() - value.keys(), value.keys() - schema.keys()
        if missing or unknown:
            problem = f"lacks {sorted(missing)}" if missing else f"has unknown {sorted(unknown)}"
            raise ValueError(f"{where or whole} {problem}")
        for key, item in schema.items():
            check_fields(value[key], item, f"{where}.{key}" if where else key)
    elif schema is AnyJSON:
        return
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise ValueError(f"{where} must be an array")
        for index, item in enumerate(value):
            check_fields(item, schema[0], f"{where}[{index}]")
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be an object")
        for key, item in value.items():
            check_fields(item, schema.values, f"{where}[{key!r}]")
    else:
        allowed = schema if isinstance(schema, tuple) else (schema,)
        if not any(value is None if t is None else type(value) is t for t in allowed):
            wanted = " or ".join(_TYPE_NAMES[t] for t in allowed)
            raise ValueError(f"{where} must be {wanted}, got {value!r:.60}")


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type (for "holds a JSON array" messages)."""
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
