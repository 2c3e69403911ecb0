"""Checked, resumable, bounded file downloads with the standard library (``urllib``) and a tqdm progress bar.

A download streams into a partial file next to the destination (``.NAME.part``), is verified against the
expected checksum(s) and only then moved into place with :func:`os.replace`, so an interrupted or corrupt
download never leaves a file that looks complete.

- **Resume.**  A download cut short (network error, kill) keeps its ``.part``; the next call asks the server for
  the rest (HTTP ``Range``) and, when it honours the request (``206`` with a matching ``Content-Range``),
  appends to it; the checksum covers the whole file, so a resumed file is accepted only when it is exactly
  right.  A server that ignores ``Range`` (``200``) sends the whole body again: the partial file is restarted.
  Resuming needs a checksum (without one a stale part could not be told from a good one): unchecked downloads
  always start over.  A checksum mismatch removes the partial file.
- **Size cap.**  A body is read only up to ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`; callers that know
  the expected size pass a bound derived from it); more is refused with one line and the partial file removed,
  so an endless body cannot fill the disk.
- The partial file is opened without following symlinks and locked while it is written (a second process
  downloading the same file is refused, not interleaved).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import DataError
from ..fileio import file_mode

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
USER_AGENT = "aekit (python urllib)"
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: the most any download reads unless its caller gives a tighter bound
PART_SUFFIX = ".part"


def _progress_disabled() -> bool:
    """No progress bar on CI or when stderr is not a terminal (logs stay clean)."""
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def part_path(dest: Path) -> Path:
    """The partial file of a download of ``dest``: ``.NAME.part`` beside it (a fixed name, so that it can be
    resumed)."""
    return dest.with_name(f".{dest.name}{PART_SUFFIX}")


@contextlib.contextmanager
def _open_part(part: Path) -> Iterator[int]:
    """The partial file's descriptor (created if missing, never through a symlink), locked exclusively."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(part, flags, 0o600)
    except OSError as e:
        raise DataError(f"cannot write {part} ({e.strerror or e}): remove it, or pass --data-dir with a writable "
                        "folder") from None
    try:
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise DataError(f"{part} is being written by another download: wait for it to finish") from None
        yield fd
    finally:
        os.close(fd)


def _remove_old_parts(dest: Path) -> None:
    """Partial files of older aekit versions (``.NAME.<random>.part``, never resumable): removed."""
    pattern = re.compile(re.escape(f".{dest.name}.") + r"[A-Za-z0-9_]+" + re.escape(PART_SUFFIX))
    for p in dest.parent.iterdir():
        if pattern.fullmatch(p.name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            logger.info("removed %s, left over from an interrupted download", p)


def _content_range_start(value: str | None) -> int | None:
    m = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*", value or "")
    return int(m.group(1)) if m else None


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    md5: str | None = None,
    desc: str | None = None,
    timeout: float = 60.0,
    max_bytes: int | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically and return ``dest``.

    The body is streamed in chunks into ``dest``'s partial file (resumed when one is left over and a checksum
    is given), hashed, checked against ``sha256`` and/or ``md5`` (hex digests, when given) and moved into place
    with :func:`os.replace`.  At most ``max_bytes`` are accepted (default :data:`DEFAULT_MAX_BYTES`).  Any
    failure raises one :class:`DataError` naming the URL and the fix; a network failure keeps the partial file
    for the next attempt, every other failure removes it.
    """
    dest = Path(dest)
    limit = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the download folder {dest.parent} ({e.strerror or e}): "
            "pass --data-dir with a writable folder"
        ) from e
    expected = {k: v.lower() for k, v in (("sha256", sha256), ("md5", md5)) if v}
    manual = f"download it manually into {dest.parent} (or a folder passed with --data-dir)"
    _remove_old_parts(dest)
    part = part_path(dest)
    with _open_part(part) as fd:
        try:
            _fetch(url, fd, part, expected, limit, timeout, desc or dest.name, manual)
            os.fsync(fd)
            os.chmod(part, file_mode())  # a downloaded file gets the umask's permissions, not 0600
            os.replace(part, dest)
        except BaseException as e:
            # a network failure or an interrupt keeps a checked download's partial file for the next attempt
            if not (expected and isinstance(e, (_Resumable, KeyboardInterrupt))):
                part.unlink(missing_ok=True)
            raise
    return dest


def _hashers() -> dict[str, Any]:
    return {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}


def _fetch(url: str, fd: int, part: Path, expected: dict[str, str], limit: int, timeout: float, desc: str,
           manual: str) -> None:
    """Fill the partial file ``fd`` with the body of ``url`` (after what it holds, when the server honours the
    range) and verify it; raises DataError (:class:`_Resumable` for network failures)."""
    hashes = _hashers()
    have = os.fstat(fd).st_size if expected else 0  # resume only what a checksum will verify
    if have > limit:
        have = 0
    if have:  # hash what is already there: the checksum covers the whole file
        os.lseek(fd, 0, os.SEEK_SET)
        for block in iter(lambda: os.read(fd, CHUNK_SIZE), b""):
            for h in hashes.values():
                h.update(block)
    if have and all(hashes[k].hexdigest() == v for k, v in expected.items()):
        logger.info("%s is already complete (killed before it was moved into place)", part)
        return  # the partial file is the whole, verified file: no request (a Range past its end gets 416)
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    logger.info("downloading %s%s", url, f" (resuming at byte {have})" if have else "")
    received = have
    try:
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            e.close()  # the error carries the open response
            if e.code == 416 and have:  # nothing left to send past our partial file: start over next time
                raise DataError(f"cannot resume the download of {url} (HTTP 416): retry, or {manual}") from None
            raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}; {manual}") from None
        with response:
            if have and not (response.status == 206
                             and _content_range_start(response.headers.get("Content-Range")) == have):
                have = received = 0  # the server sent the whole body again: restart the partial file
                hashes = _hashers()
            os.ftruncate(fd, have)
            os.lseek(fd, have, os.SEEK_SET)
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            if total is not None and total > limit:
                raise DataError(f"download of {url} is {total} bytes, more than the {limit} expected at most: the "
                                f"mirror is not serving the right file; {manual}")
            with tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                      disable=_progress_disabled(), leave=False) as bar:
                while chunk := response.read(min(CHUNK_SIZE, limit + 1 - received)):
                    received += len(chunk)
                    if received > limit:
                        raise DataError(f"download of {url} sent more than the {limit} bytes expected at most: the "
                                        f"mirror is not serving the right file; {manual}")
                    os.write(fd, chunk)
                    for h in hashes.values():
                        h.update(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise _Resumable(f"download of {url} was cut short (got {received} of {total} bytes): retry to resume "
                             f"it, or {manual}")
    except DataError:
        raise
    except urllib.error.URLError as e:
        raise _Resumable(f"cannot download {url}: {e.reason}; check your network (a retry resumes) or "
                         f"{manual}") from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # reset, timeout, disk full, bad URL
        raise _Resumable(f"cannot download {url}: {e}; check your network (a retry resumes) or {manual}") from None
    for kind, want in expected.items():
        got = hashes[kind].hexdigest()
        if got != want:
            raise DataError(f"checksum mismatch for {url}: expected {kind} {want}, got {got}; the mirror may be "
                            f"corrupt, retry or place the file manually in {part.parent}")


class _Resumable(DataError):
    """A network failure: the partial file stays, and the next download of the same file resumes it."""
