"""``seg:DIR``: your own segmentation pairs — ``DIR/images/NAME.png|jpg|jpeg`` and ``DIR/masks/NAME.png``.

A mask is a single-channel PNG (8-bit grayscale, palette or 1-bit) of the image's size whose pixel value is the
class id: 0, 1, …, K−1 (0 = background).  Ids must be contiguous (every id below the largest one occurs
somewhere); a common slip, binary masks saved as 0/255, gets its own hint.  Images load as grayscale when all
are (or with ``--grayscale``), else RGB; pairs of different sizes need ``--image-size S`` (images resized
bilinearly, masks by nearest neighbour).  Every malformed pair stops the load with one line naming the file and
the fix.  The folder has no test split of its own: ``--test-fraction`` of the pairs is held out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .base import DataConfig, Dataset, Source, make_dataset
from .images import _PIL_ERRORS, GRAY_MODES, IMAGE_SUFFIXES, _to_array

log = logging.getLogger(__name__)

MASK_MODES = frozenset({"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"})


def _files(folder: Path, suffixes: frozenset[str], what: str) -> dict[str, Path]:
    """``{stem: path}`` of the visible files in ``folder`` with one of ``suffixes`` (case-insensitive)."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in suffixes:
            continue
        if p.stem in found:
            raise DataError(f"two {what} are named {p.stem!r} ({found[p.stem].name}, {p.name}): keep one of them")
        found[p.stem] = p
    return found


def _read_mask(path: Path, size: int | None) -> np.ndarray:
    try:
        with Image.open(path) as m:
            m.load()
            if m.mode not in MASK_MODES:
                raise DataError(f"mask {path} is {m.mode}, not single-channel: save masks as grayscale (or palette) "
                                "PNGs whose pixel value is the class id")
            if size is not None and m.size != (size, size):
                m = m.resize((size, size), Image.Resampling.NEAREST)
            a = np.asarray(m)
    except _PIL_ERRORS as e:
        raise DataError(f"cannot read mask {path} ({e}): delete or replace the file") from e
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.max(initial=0) > 255:
        raise DataError(f"mask {path} holds class id {int(a.max())}: at most 256 classes (ids 0..255) are supported")
    return a.astype(np.uint8)


def load_seg_dir(directory: str, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read every pair under ``directory``: (uint8 images (N, C, H, W), uint8 masks (N, H, W), class names)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: use --data seg:DIR with DIR/images/ and DIR/masks/")
    img_dir, mask_dir = root / "images", root / "masks"
    for sub in (img_dir, mask_dir):
        if not sub.is_dir():
            raise DataError(f"{root} has no {sub.name}/ folder: put images in {img_dir} and masks (PNG, pixel "
                            f"value = class id) with the same names in {mask_dir}")
    images = _files(img_dir, IMAGE_SUFFIXES, "images")
    masks = _files(mask_dir, IMAGE_SUFFIXES, "masks")
    if not images:
        raise DataError(f"{img_dir} holds no .png/.jpg/.jpeg files: add the images of your pairs there")
    for stem, p in sorted(masks.items()):
        if p.suffix.lower() != ".png":
            raise DataError(f"mask {p} is not a PNG: save masks losslessly as masks/{stem}.png (JPEG alters class ids)")
        if stem not in images:
            raise DataError(f"mask {p} has no image: add images/{stem}.png (or .jpg), or remove the mask")
    for stem, p in sorted(images.items()):
        if stem not in masks:
            raise DataError(f"image {p} has no mask: add masks/{stem}.png (pixel value = class id), or remove the image")
    stems = sorted(images)

    # pass 1: headers only — sizes and colour modes
    def header(kind: str, p: Path) -> tuple[str, tuple[int, int]]:
        try:
            with Image.open(p) as img:
                return img.mode, img.size
        except _PIL_ERRORS as e:
            raise DataError(f"cannot read {kind} {p} ({e}): delete or replace the file") from e

    modes, sizes = [], []
    for stem in stems:
        mode, (w0, h0) = header("image", images[stem])
        _, (w1, h1) = header("mask", masks[stem])
        if (w0, h0) != (w1, h1):
            raise DataError(f"mask {masks[stem]} is {w1}×{h1} but its image {images[stem].name} is {w0}×{h0}: "
                            "a mask must have its image's size")
        modes.append(mode)
        sizes.append((w0, h0))
    size = cfg.image_size
    if size is None and len(set(sizes)) > 1:
        j = next(i for i, s in enumerate(sizes) if s != sizes[0])
        raise DataError(f"pairs in {root} have different sizes (e.g. {stems[0]} {sizes[0][0]}×{sizes[0][1]}, "
                        f"{stems[j]} {sizes[j][0]}×{sizes[j][1]}): pass --image-size N to resize them all to N×N")
    w, h = (size, size) if size is not None else sizes[0]
    channels = 1 if cfg.grayscale or all(m in GRAY_MODES for m in modes) else 3

    # pass 2: pixels into preallocated arrays
    x = np.empty((len(stems), channels, h, w), np.uint8)
    y = np.empty((len(stems), h, w), np.uint8)
    for i, stem in enumerate(stems):
        try:
            with Image.open(images[stem]) as img:
                img.load()
                x[i] = _to_array(img, channels, size).transpose(2, 0, 1)
        except _PIL_ERRORS as e:
            raise DataError(f"cannot read image {images[stem]} ({e}): delete or replace the file") from e
        y[i] = _read_mask(masks[stem], size)

    # class ids must be 0..K-1 without gaps
    present = np.bincount(y.reshape(-1), minlength=256) > 0
    k = int(np.flatnonzero(present).max()) + 1
    missing = np.flatnonzero(~present[:k])
    if len(missing):
        ids = np.flatnonzero(present).tolist()
        first = next(stems[i] for i in range(len(stems)) if (y[i] == k - 1).any())
        hint = ("binary masks saved as 0/255: divide them by 255 (0 = background, 1 = object)" if ids == [0, 255]
                else f"renumber the classes to 0..{len(ids) - 1}")
        raise DataError(f"masks in {mask_dir} use class ids {ids[:8]}{'…' if len(ids) > 8 else ''} (e.g. "
                        f"masks/{first}.png has {k - 1}) but ids must be contiguous from 0, and {int(missing[0])} "
                        f"never occurs: {hint}")
    k = max(k, 2)
    log.info("loaded %d %dx%d pairs (%d channels, %d classes) from %s", len(stems), w, h, channels, k, root)
    return x, y, tuple(str(c) for c in range(k))


def load_seg(arg: str | None, cfg: DataConfig) -> Dataset:
    if not arg:
        raise DataError("seg needs a folder: use --data seg:DIR (DIR/images/ + DIR/masks/)")
    x, y, classes = load_seg_dir(arg, cfg)
    return make_dataset(f"seg:{arg}", "image", cfg, x, y, classes=classes)


SOURCES: dict[str, Source] = {
    "seg": Source(load_seg, True, "segmentation pairs: DIR/images/NAME.png|jpg + DIR/masks/NAME.png (value = class id)"),
}
