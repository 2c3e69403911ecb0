"""Checked, atomic file downloads with the standard library (``urllib``) and a tqdm progress bar.

A download streams into a temporary file next to the destination, is verified against the expected
checksum(s) and only then moved into place with :func:`os.replace`, so an interrupted or corrupt download
never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import DataError
from ..fileio import file_mode

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
USER_AGENT = "aekit (python urllib)"


def _progress_disabled() -> bool:
    """No progress bar on CI or when stderr is not a terminal (logs stay clean)."""
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    md5: str | None = None,
    desc: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically and return ``dest``.

    The body is streamed in chunks into a temporary file in ``dest``'s folder, hashed on the fly, checked
    against ``sha256`` and/or ``md5`` (hex digests, when given) and moved into place with :func:`os.replace`.
    Any failure removes the temporary file and raises :class:`DataError` naming the URL and the fix.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the download folder {dest.parent} ({e.strerror or e}): "
            "pass --data-dir with a writable folder"
        ) from e
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    expected = {k: v.lower() for k, v in (("sha256", sha256), ("md5", md5)) if v}
    manual = f"download it manually into {dest.parent} (or a folder passed with --data-dir)"
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    logger.info("downloading %s -> %s", url, dest)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc or dest.name,
                disable=_progress_disabled(),
                leave=False,
            ) as bar:
                received = 0
                while chunk := response.read(CHUNK_SIZE):
                    out.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DataError(
                f"download of {url} was cut short (got {received} of {total} bytes): retry, or {manual}"
            )
        for kind, want in expected.items():
            got = hashes[kind].hexdigest()
            if got != want:
                raise DataError(
                    f"checksum mismatch for {url}: expected {kind} {want}, got {got}; "
                    f"the mirror may be corrupt, retry or place the file manually in {dest.parent}"
                )
        os.chmod(tmp, file_mode())  # a downloaded file gets the umask's permissions, not mkstemp's 0600
        os.replace(tmp, dest)
    except urllib.error.HTTPError as e:
        e.close()  # the error carries the open response
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}; {manual}") from e
    except urllib.error.URLError as e:
        raise DataError(f"cannot download {url}: {e.reason}; check your network or {manual}") from e
    except (OSError, ValueError, http.client.HTTPException) as e:  # reset, timeout, disk full, bad URL
        raise DataError(f"cannot download {url}: {e}; check your network or {manual}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return dest
