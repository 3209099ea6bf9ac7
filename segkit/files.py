"""Writing a run's files so that a failure never leaves a good file replaced by a partial one.

Whole files go to a hidden temporary file beside the target (``.NAME.PID.tmp``, so that the
writer can be told from its name), are flushed to disk and renamed over the target. A line
appended to a log is cut back off if the write fails half-way, so the log never ends in a torn
line. A full disk is reported in words, naming the file, as :class:`DiskFull`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Mapping
from pathlib import Path

from segkit.errors import SegkitError

# Errors a write fails with when the disk (or the user's quota) is full.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(SegkitError):
    """A file could not be written because the disk is full."""


class WriteFailed(SegkitError):
    """A file could not be written for another reason (permissions, a missing folder, ...)."""


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL


def write_error(path: str | os.PathLike, error: OSError, what: str = "") -> SegkitError:
    """The user's message for a failed write of ``path``."""
    subject = f"{what} {path}" if what else str(path)
    if is_disk_full(error):
        return DiskFull(f"no space left on device: could not write {subject}")
    reason = error.strerror or str(error)
    return WriteFailed(f"could not write {subject}: {reason}")


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview, what: str = "") -> None:
    """Replace ``path`` by ``data`` whole or not at all."""
    atomic_write_files({Path(path): data}, what)


def atomic_write_files(contents: Mapping[Path, bytes | memoryview], what: str = "") -> None:
    """Replace every file of ``contents`` (path -> data) whole or not at all, as a set: all are
    written to temporary files first and renamed only once every one is on disk, so that a full
    disk halfway through leaves the old files as they were, not a mixture of old and new."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in contents.items():
            staged.append((_stage(path, data, what), path))
        for temporary, path in staged:
            try:
                os.replace(temporary, path)
            except OSError as error:
                raise write_error(path, error, what) from error
    finally:
        for temporary, _ in staged:  # those renamed are gone already
            temporary.unlink(missing_ok=True)
    for directory in {path.parent for path in contents}:
        sync_directory(directory)


def _stage(path: Path, data: bytes | memoryview, what: str) -> Path:
    """``data`` in the temporary file beside ``path``, flushed to disk; on failure no temporary
    file is left."""
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise write_error(path, error, what) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def atomic_write_text(path: str | os.PathLike, text: str, what: str = "") -> None:
    atomic_write_bytes(path, text.encode("utf-8"), what)


def append_line(path: str | os.PathLike, line: str, what: str = "") -> None:
    """Append ``line`` and a newline to ``path``; on failure the file is as it was."""
    path = Path(path)
    data = line.encode("utf-8") + b"\n"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise write_error(path, error, what) from error
    try:
        size = os.fstat(descriptor).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(descriptor, data[written:])
        except OSError as error:
            with contextlib.suppress(OSError):  # cutting the torn tail frees space, so it
                os.ftruncate(descriptor, size)  # works on a full disk too
            raise write_error(path, error, what) from error
    finally:
        os.close(descriptor)


def sync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.tmp\Z")


def remove_dead_writers(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporary files in ``directory`` (of the file ``name`` only, if given) whose
    writer is no longer running (a process killed with ``kill -9`` or by the OOM killer
    mid-write); those of live processes stay."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        match = _TEMPORARY.match(path.name)
        if not match or (name is not None and match.group("name") != name):
            continue
        if not _running(int(match.group("pid"))) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's
        return True
    return True
