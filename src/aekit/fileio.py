"""The one atomic-write helper: every file aekit writes goes through :func:`atomic_path`.

A file is written to a unique temporary name in its own directory (``tempfile.mkstemp``: ``O_CREAT | O_EXCL``,
so an existing file or a symlink planted there is never followed), flushed to disk, given the permissions any
tool would give a new file (``0o666`` less the umask, not mkstemp's ``0o600``) and renamed over the target: a
kill at any moment leaves the old file or the new one, never half of one, and no temporary under a real name.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a newly created regular file gets here: 0o666 less the process umask."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write it inside the block; it replaces ``path`` on success and
    is removed on any error."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete this helper's leftovers (``.NAME.*.tmp`` from a killed write) in ``directory``; returns them."""
    d = Path(directory)
    if not d.is_dir():
        return []
    stale = [p for p in d.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# ----------------------------------------------------------------------------------------------- directory locks

LOCK_NAME = ".lock"


class DirectoryLock:
    """An exclusive, non-blocking lock on a directory (``DIR/.lock``), held until :meth:`release`.

    POSIX: ``fcntl.flock`` on the lock file (released by the kernel when the process dies, so a killed run
    never leaves a stale lock).  Windows: ``msvcrt.locking`` on its first byte.  The holder's PID is written
    into the file so that a second writer can name it.  The lock file is opened without following symlinks
    and is never deleted (deleting it would let two processes lock two different files).
    """

    def __init__(self, directory: str | os.PathLike[str], what: str = "run directory"):
        self.directory = Path(directory)
        self.what = what
        self.fd: int | None = None

    def acquire(self) -> DirectoryLock:
        from .errors import ConfigError, RunError

        path = self.directory / LOCK_NAME
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
            fd = os.open(path, flags, 0o666)
        except OSError as e:
            raise ConfigError(f"cannot create {self.what} {self.directory} ({e.strerror or e}): choose a writable "
                              "directory path") from None
        try:
            locked = _try_lock(fd)
        except OSError as e:
            os.close(fd)
            raise RunError(f"cannot lock {path} ({e.strerror or e}): use a run directory on a local disk") from None
        if not locked:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise RunError(f"{self.what} {self.directory} is in use by {who} (it holds {path}): wait for it to "
                           "finish or stop it, or choose another --out")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> DirectoryLock:
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_directory(directory: str | os.PathLike[str], what: str = "run directory") -> DirectoryLock:
    """Take the exclusive lock of ``directory`` (created if missing) or raise a one-line RunError naming the PID
    that holds it; use as ``with lock_directory(run_dir): ...``."""
    return DirectoryLock(directory, what).acquire()


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import errno
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, hex (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- strict JSON


def finite_json(value: object) -> object:
    """``value`` with every non-finite float (NaN, ±inf) replaced by ``None``: standard JSON (``null``) when
    dumped, instead of Python's non-standard ``NaN`` / ``Infinity``."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def dumps_json(value: object, **kwargs: object) -> str:
    """Standard JSON text of ``value`` (non-finite numbers as ``null``; never ``NaN``)."""
    import json

    return json.dumps(finite_json(value), allow_nan=False, **kwargs)  # type: ignore[arg-type]
