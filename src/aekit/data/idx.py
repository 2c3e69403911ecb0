"""MNIST-format IDX files and the MNIST family: ``fashion-mnist``, ``mnist``, ``kmnist`` and ``idx:DIR``.

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), one big-endian
``uint32`` per dimension and the row-major payload; the MNIST releases are gzip-compressed.  A folder counts
as a dataset when it holds the four files of :data:`IDX_FILES`, each optionally with a ``.gz`` suffix.

Named datasets are looked up in ``--data-dir``, ``$AEKIT_DATA/<name>``, ``$AEKIT_DATA``,
``~/.cache/aekit/<name>`` and ``/usr/share/datasets/<name>`` (the Debian ``dataset-fashion-mnist``
package), and downloaded from :data:`MIRRORS` (checked against :data:`MD5`) when none has them.
``$AEKIT_MNIST_MIRROR`` or ``$AEKIT_DATA_MIRROR`` replaces the mirror list by one base URL.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import DataConfig, Dataset, Source, check_class_count, make_dataset
from .download import download

logger = logging.getLogger(__name__)

#: The four files of an MNIST-format dataset, keyed by role.
IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: IDX type code → big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

CLASSES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(i) for i in range(10)),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}

#: Base URLs tried in order for each named dataset (the file name is appended).
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "kmnist": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
}

#: MD5 of each published ``.gz`` file (the same values torchvision checks).
MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "kmnist": {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
}

#: System-wide folders searched last (``<dir>/<name>``); Debian installs Fashion-MNIST here.
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets")]

MIRROR_ENV_VARS = ("AEKIT_MNIST_MIRROR", "AEKIT_DATA_MIRROR")
#: The most bytes one download of the family may send: its largest file (Fashion-MNIST's training images,
#: 26.4 MB) with room to spare; a mirror sending more (an endless body) is stopped there.
MAX_DOWNLOAD_BYTES = 64 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DEFLATE_RATIO = 1100  # deflate cannot expand more than ~1032:1; bounds the payload of a .gz file


# ----------------------------------------------------------------------------------------------- reading


def _read_exact(f: io.BufferedIOBase, out: memoryview) -> int:
    """Fill ``out`` from ``f``; return the number of bytes read (less than ``len(out)`` only at EOF)."""
    pos = 0
    while pos < len(out):
        n = f.readinto(out[pos:])
        if not n:
            break
        pos += n
    return pos


def _parse_idx(f: io.BufferedIOBase, where: str, file_size: int, compressed: bool) -> np.ndarray:
    """Parse one IDX stream; the file's size bounds the size its header may declare (catches garbage dims)."""
    redownload = "delete it and download again"
    magic = f.read(4)
    if len(magic) < 4:
        raise DataError(f"{where} is truncated (no complete IDX header): {redownload}")
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_DTYPES:
        raise DataError(
            f"{where} is not an IDX file (magic bytes {magic.hex()}, expected 0000, a type code 08-0e and the "
            f"number of dimensions): {redownload}, or point aekit at MNIST-format files"
        )
    dtype, ndim = IDX_DTYPES[magic[2]], magic[3]
    if ndim == 0:
        raise DataError(f"{where} declares 0 dimensions: {redownload}")
    dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{where} is truncated (its header of {ndim} dimensions is cut short): {redownload}")
    shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    header = 4 + 4 * ndim
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: dimensions of 2**31 do not overflow
    if not compressed and expected > file_size:
        raise DataError(f"{where} is truncated (expected {expected} bytes, got {file_size}): {redownload}")
    if compressed and expected > file_size * _MAX_DEFLATE_RATIO:
        raise DataError(
            f"{where} is truncated (its header declares shape {shape}, {expected} bytes, more than a "
            f"{file_size}-byte gzip file can hold): {redownload}"
        )
    out = np.empty(shape, dtype=dtype)
    got = _read_exact(f, memoryview(out.reshape(-1)).cast("B"))  # type: ignore[arg-type]  # numpy stubs: 3.12+
    if got < out.nbytes:
        raise DataError(f"{where} is truncated (expected {expected} bytes, got {header + got}): {redownload}")
    if f.read(1):
        raise DataError(f"{where} has trailing data after the {expected} bytes its header declares: {redownload}")
    return out.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed, detected by its magic bytes) into a native-endian array.

    The header (magic, type code, number of dimensions) is validated and the payload must match the
    dimensions exactly: a truncated file or trailing bytes raise :class:`DataError`.
    """
    path = Path(path)
    where = f"{path.name} in {path.parent}"
    try:
        size = path.stat().st_size
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if not compressed:
                return _parse_idx(raw, where, size, compressed=False)
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _parse_idx(f, where, size, compressed=True)
    except FileNotFoundError as e:
        raise DataError(f"{path} does not exist: check the path") from e
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(
            f"{where} is a corrupt or truncated gzip file ({e}): delete it and download again"
        ) from e
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e}): check the file and its permissions") from e


# ----------------------------------------------------------------------------------------------- folders


def find_idx_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """The IDX files present in ``directory`` (raw preferred over ``.gz``) and the names of missing ones."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, base in IDX_FILES.items():
        for candidate in (directory / base, directory / f"{base}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(base)
    return found, missing


def load_idx_dir(
    directory: str | os.PathLike[str],
    name: str,
    cfg: DataConfig,
    classes: tuple[str, ...] | None = None,
) -> Dataset:
    """Load the four MNIST-format files in ``directory`` as an image dataset called ``name``.

    ``classes`` names the labels (default: ``"0"`` … up to the largest label); labels outside it raise
    :class:`DataError`.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"{directory} is not a folder: pass a folder holding the four MNIST-format IDX files")
    files, missing = find_idx_files(directory)
    if missing:
        raise DataError(
            f"{directory} is missing {', '.join(missing)} (each may end in .gz): "
            "put all four MNIST-format IDX files in that folder"
        )
    arrays = {role: read_idx(path) for role, path in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        xf, yf = files[f"{split}_images"].name, files[f"{split}_labels"].name
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(
                f"{xf} in {directory} holds {x.dtype} data of shape {x.shape}, expected uint8 images (N, H, W): "
                "use MNIST-format image files"
            )
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise DataError(
                f"{yf} in {directory} holds {y.dtype} data of shape {y.shape}, expected integer labels (N,): "
                "use MNIST-format label files"
            )
        if len(x) != len(y):
            raise DataError(
                f"{xf} has {len(x)} images but {yf} has {len(y)} labels in {directory}: "
                "the files do not belong together, replace them with a matching set"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"train images are {arrays['train_images'].shape[1:]} but test images are "
            f"{arrays['test_images'].shape[1:]} in {directory}: replace them with a matching set"
        )
    y_train = arrays["train_labels"].astype(np.int64)
    y_test = arrays["test_labels"].astype(np.int64)
    labels = np.concatenate([y_train, y_test])
    lo, hi = (int(labels.min()), int(labels.max())) if len(labels) else (0, 0)
    if lo < 0:
        raise DataError(f"labels in {directory} include {lo}: class ids must be 0 or more, fix the label files")
    if classes is None:
        check_class_count(hi, str(directory))
        classes = tuple(str(i) for i in range(hi + 1))
    elif hi >= len(classes):
        raise DataError(
            f"labels in {directory} go up to {hi} but {name!r} has {len(classes)} classes: these are not "
            f"{name} files, use --data idx:{directory} instead"
        )
    logger.info("loaded %s from %s: %d train, %d test images", name, directory, len(y_train), len(y_test))
    return make_dataset(
        name, "image", cfg, arrays["train_images"], y_train, arrays["test_images"], y_test, classes=classes
    )


# ---------------------------------------------------------------------------------------- named datasets


def cache_dir(name: str) -> Path:
    """The per-user download cache for ``name``: ``~/.cache/aekit/<name>``."""
    return Path.home() / ".cache" / "aekit" / name


def candidate_dirs(name: str, cfg: DataConfig) -> list[Path]:
    """Folders searched for ``name``'s files, in order (duplicates removed)."""
    dirs: list[Path] = []
    if cfg.data_dir:
        base = Path(cfg.data_dir).expanduser()
        dirs += [base, base / name]
    env = os.environ.get("AEKIT_DATA")
    if env:
        base = Path(env).expanduser()
        dirs += [base / name, base]
    dirs.append(cache_dir(name))
    dirs += [d / name for d in SYSTEM_DATA_DIRS]
    return list(dict.fromkeys(dirs))


def mirrors(name: str) -> list[str]:
    """Base URLs for ``name``: the environment override when set, else :data:`MIRRORS`."""
    for var in MIRROR_ENV_VARS:
        url = os.environ.get(var)
        if url:
            return [url if url.endswith("/") else url + "/"]
    return list(MIRRORS[name])


def fetch(name: str, dest: Path) -> None:
    """Download whichever of ``name``'s four ``.gz`` files ``dest`` lacks, trying each mirror in turn."""
    _, missing = find_idx_files(dest)
    urls = mirrors(name)
    checksums = MD5.get(name, {})
    for base in missing:
        filename = f"{base}.gz"
        last: DataError | None = None
        for i, url in enumerate(urls):
            try:
                download(url + filename, dest / filename, md5=checksums.get(filename), desc=f"{name} {filename}",
                         max_bytes=MAX_DOWNLOAD_BYTES)
                break
            except DataError as e:
                if i + 1 < len(urls):  # the last failure is the error itself: printed once, by the caller
                    logger.warning("%s; trying the next mirror", e)
                last = e
        else:
            assert last is not None
            if len(urls) == 1:
                raise last
            raise DataError(f"all {len(urls)} mirrors failed for {name}; last error: {last}") from last


def load_named(name: str, cfg: DataConfig) -> Dataset:
    """Load ``fashion-mnist`` / ``mnist`` / ``kmnist`` from the first folder that has it, else download it."""
    dirs = candidate_dirs(name, cfg)
    for d in dirs:
        if d.is_dir() and not find_idx_files(d)[1]:
            return load_idx_dir(d, name, cfg, classes=CLASSES[name])
    if not cfg.download:
        raise DataError(
            f"{name} files not found in {', '.join(str(d) for d in dirs)}: put the four IDX files "
            f"({', '.join(IDX_FILES.values())}, optionally .gz) in one of them or in a folder passed with "
            f"--data-dir, or allow downloading (drop --no-download; a run's recorded data is never downloaded: "
            f"pass --data {name} to allow it)"
        )
    dest = Path(cfg.data_dir).expanduser() / name if cfg.data_dir else cache_dir(name)
    logger.info("%s not found locally; downloading into %s", name, dest)
    fetch(name, dest)
    return load_idx_dir(dest, name, cfg, classes=CLASSES[name])


def _named_loader(name: str) -> Source:
    def load(arg: str | None, cfg: DataConfig) -> Dataset:
        return load_named(name, cfg)

    load.__name__ = load.__qualname__ = f"load_{name.replace('-', '_')}"
    load.__doc__ = f"Load {name} (local folders, then a checked download)."
    return Source(load, False, f"{name} (60k/10k 28x28 grayscale; local folders, then a checked download)")


def load_idx(arg: str | None, cfg: DataConfig) -> Dataset:
    """``idx:DIR``: any folder with the four MNIST-format IDX files."""
    if not arg:
        raise DataError("idx needs a folder: use --data idx:DIR")
    return load_idx_dir(arg, f"idx:{arg}", cfg)


SOURCES: dict[str, Source] = {
    "fashion-mnist": _named_loader("fashion-mnist"),
    "mnist": _named_loader("mnist"),
    "kmnist": _named_loader("kmnist"),
    "idx": Source(load_idx, True, "a folder with the four MNIST-format IDX files (optionally .gz)"),
}
