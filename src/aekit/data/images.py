"""``images:DIR``: a folder of PNG / JPEG files, with labels from first-level sub-folder names when present.

All images must share one size unless ``--image-size S`` resizes them to S×S.  They load as one channel
when every file is grayscale (or with ``--grayscale``), else as RGB.  The result is one uint8 array
(N, C, H, W); the folder has no test split of its own, so ``test_fraction`` of it is held out.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .base import DataConfig, Dataset, Source, make_dataset

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N"})
_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, case-insensitive suffix, hidden entries skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / f)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _unreadable(path: Path, err: BaseException) -> DataError:
    return DataError(f"cannot read image {path} ({err}): delete or replace the file")


def _to_array(img: Image.Image, channels: int, size: int | None) -> np.ndarray:
    """One image as uint8 (H, W, C): 16/32-bit grayscale scaled to 8 bits, alpha dropped, optional resize."""
    if img.mode.startswith("I"):  # 16-bit PNGs load as "I" or "I;16*": map 0..65535 onto 0..255
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
    if channels == 1:
        img = img.convert("L")
    elif img.mode != "RGB":
        # palette images may carry transparency: go through RGBA so Pillow keeps the colours right
        img = (img.convert("RGBA") if img.mode == "P" else img).convert("RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def read_image(path: Path, channels: int, size: int | None) -> np.ndarray:
    """One image file as uint8 (C, H, W) (see :func:`_to_array`); a one-line DataError when unreadable."""
    try:
        with Image.open(path) as img:
            img.load()
            return _to_array(img, channels, size).transpose(2, 0, 1)
    except _PIL_ERRORS as e:
        raise _unreadable(path, e) from e


def load_image_dir(
    directory: str | os.PathLike[str], cfg: DataConfig
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None]:
    """Read every image under ``directory``: (uint8 (N, C, H, W), int64 labels or None, class names or None)."""
    scan = scan_image_dir(directory, cfg)
    files, channels, (h, w), size, root = scan.files, scan.channels, scan.hw, scan.resize, scan.root

    from .stream import check_memory

    check_memory(scan.nbytes, f"reading {len(files)} images of {channels}×{h}×{w} pixels from {root}",
                 "pass a smaller --image-size, or --memory-budget to stream them", error=DataError)
    # pass 2: pixels, written straight into one preallocated array
    x = np.empty((len(files), channels, h, w), dtype=np.uint8)
    for i, p in enumerate(files):
        x[i] = read_image(p, channels, size)

    if scan.y is None:
        logger.info("loaded %d unlabelled %dx%d images (%d channels) from %s", len(files), w, h, channels, root)
        return x, None, None
    logger.info(
        "loaded %d %dx%d images (%d channels) in %d classes from %s", len(files), w, h, channels,
        len(scan.classes or ()), root
    )
    return x, scan.y, scan.classes


@dataclasses.dataclass(frozen=True)
class ImageScan:
    """What pass 1 (headers only) learns about an image folder: files, channels, size, labels."""

    root: Path
    files: list[Path]
    channels: int
    hw: tuple[int, int]
    resize: int | None
    y: np.ndarray | None
    classes: tuple[str, ...] | None

    @property
    def nbytes(self) -> int:
        return len(self.files) * self.channels * self.hw[0] * self.hw[1]


def scan_image_dir(directory: str | os.PathLike[str], cfg: DataConfig) -> ImageScan:
    """Pass 1 over an image folder: headers only (Pillow opens lazily), no pixels."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: use --data images:DIR with a folder of PNG/JPEG files")
    files = find_images(root)
    if not files:
        raise DataError(f"{root} holds no .png/.jpg/.jpeg files: point --data images:DIR at a folder of images")
    top = [p for p in files if p.parent == root]
    nested = [p for p in files if p.parent != root]
    if top and nested:
        raise DataError(
            f"{root} has images both at its top level (e.g. {top[0].name}) and in sub-folders "
            f"(e.g. {nested[0].relative_to(root)}): move all of them into class sub-folders, or none"
        )

    # pass 1: headers only (Pillow opens lazily) to choose channels and check sizes
    modes, sizes = [], []
    for p in files:
        try:
            with Image.open(p) as img:
                modes.append(img.mode)
                sizes.append(img.size)
        except _PIL_ERRORS as e:
            raise _unreadable(p, e) from e
    channels = 1 if cfg.grayscale or all(m in GRAY_MODES for m in modes) else 3
    size = cfg.image_size
    if size is None and len(set(sizes)) > 1:
        other = next(i for i, s in enumerate(sizes) if s != sizes[0])
        (w0, h0), (w1, h1) = sizes[0], sizes[other]
        raise DataError(
            f"images in {root} have different sizes (e.g. {files[0].relative_to(root)} {w0}×{h0}, "
            f"{files[other].relative_to(root)} {w1}×{h1}): pass --image-size N to resize them all to N×N"
        )
    w, h = (size, size) if size is not None else sizes[0]
    if not nested:
        return ImageScan(root, files, channels, (h, w), size, None, None)
    folder = [p.relative_to(root).parts[0] for p in files]
    classes = tuple(sorted(set(folder)))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[f] for f in folder], dtype=np.int64)
    return ImageScan(root, files, channels, (h, w), size, y, classes)


def load_images(arg: str | None, cfg: DataConfig) -> Dataset:
    """``images:DIR`` as an image dataset; ``test_fraction`` of it is held out as the test split."""
    if not arg:
        raise DataError("images needs a folder: use --data images:DIR")
    from .stream import budget_of

    budget = budget_of(cfg)
    if budget is not None:  # larger than --memory-budget: stream it in shuffled chunks instead of loading it whole
        scan = scan_image_dir(arg, cfg)
        if scan.nbytes > budget:
            from .stream import ImageRows, streamed_dataset

            rows = ImageRows(scan.files, scan.channels, scan.hw[0], scan.hw[1], scan.resize)
            return streamed_dataset(f"images:{arg}", cfg, rows, scan.y, scan.classes, budget)
    x, y, classes = load_image_dir(arg, cfg)
    return make_dataset(f"images:{arg}", "image", cfg, x, y, classes=classes)


SOURCES: dict[str, Source] = {
    "images": Source(load_images, True, "a folder of PNG/JPEG images; sub-folder names become labels"),
}
