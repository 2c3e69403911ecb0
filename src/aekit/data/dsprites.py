"""``dsprites``: a procedural generator of the dSprites factors (Matthey et al. 2017), 64×64 binary images.

Factors and their values (the original's, colour omitted), stored per sample as indices in ``Split.factors``
(int64, (N, 5), columns :data:`FACTOR_NAMES`); ``Split.y`` is the shape index:

========  ====  ============================================
shape      3    square, ellipse, heart
scale      6    0.5, 0.6, …, 1.0
orient.   40    linspace(0, 2π, 40) (0 and 2π both present, as in the original)
posX      32    linspace(0, 1, 32)
posY      32    linspace(0, 1, 32)
========  ====  ============================================

Every combination appears exactly once: 3·6·40·32·32 = 737,280 images, sample ``i`` having the factor
indices ``np.unravel_index(i, FACTOR_SIZES)`` (posY fastest, as in the original file).

**How sprites are drawn.**  Each of the 720 (shape, scale, orientation) sprites is rasterised once on a 32×32
canvas centred at (16, 16): every pixel is sampled at 4×4 sub-pixel points, each point is rotated by −θ
into the shape's own frame (u right, v up) and tested against the shape's implicit inequality, and the pixel
is on when at least half of its 16 points are inside (area coverage ≥ ½).  The shapes at scale s, in pixels:
square |u|, |v| ≤ 7s; ellipse (u/10s)² + (v/5s)² ≤ 1; heart (x² + y² − 1)³ ≤ x² y³ with
(x, y) = (u/7.5s, v/7.5s + 0.118) (upright at θ = 0, bounding box centred).  Orientation turns counter-clockwise on screen.  Every sprite
fits within a radius of 12 px, so a canvas placed with its top-left corner at (posY, posX) pixels — integer
translations 0…31 — never crosses the 64×64 border; the sprite's centre runs over pixels 16…47, one pixel per
position step (the original chose its values as "the smallest step changes while ensuring that all pixel
outputs were different"; a public re-implementation, disco's InfiniteDSprites, also centres at 16 + 32·pos).
Placement is pure translation, so an image is a shifted copy of its sprite (vectorised fancy indexing;
no per-sample Python).

**Storage.**  With ``--subsample N`` (recommended: the full set is 3 GB as uint8) the N images (a
deterministic random subset, seed ``split_seed``) are rendered directly in memory, in well under a minute.
The full set (no ``--subsample``) is first written once as a packed bit array (``np.packbits``, 512 bytes
per image, 377 MB) to ``--data-dir``/dsprites, ``$AEKIT_DATA/dsprites`` or ``~/.cache/aekit/dsprites`` and
read from there (memory-mapped); an existing cache is also used for subsamples.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path

import numpy as np
import torch

from .base import DataConfig, Dataset, Source, Split, make_dataset

log = logging.getLogger(__name__)

FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
SHAPES: tuple[str, ...] = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2.0 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
N_IMAGES = int(np.prod(FACTOR_SIZES))  # 737,280
IMAGE = 64
CANVAS = 32  # sprite canvas; translations 0 … IMAGE − CANVAS − 1 = 31 pixels
SUPERSAMPLE = 4
CACHE_FILE = "dsprites_v1_packbits.npy"  # rename (v2, …) whenever the drawing changes


def factors_of(index: np.ndarray) -> np.ndarray:
    """Factor indices (n, 5) int64 of global sample indices."""
    return np.stack(np.unravel_index(np.asarray(index, dtype=np.int64), FACTOR_SIZES), axis=1).astype(np.int64)


def index_of(factors: np.ndarray) -> np.ndarray:
    """Global sample indices of factor-index rows (n, 5)."""
    f = np.asarray(factors, dtype=np.int64)
    return np.ravel_multi_index(tuple(f.T), FACTOR_SIZES).astype(np.int64)


def factor_values(factors: np.ndarray) -> np.ndarray:
    """Factor values (n, 5) float64 (shape as 0/1/2, scale, orientation in radians, posX, posY in [0, 1])."""
    f = np.asarray(factors, dtype=np.int64)
    return np.stack([f[:, 0].astype(np.float64), SCALES[f[:, 1]], ORIENTATIONS[f[:, 2]], POSITIONS[f[:, 3]],
                     POSITIONS[f[:, 4]]], axis=1)


def _inside(shape: str, u: np.ndarray, v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The shape's implicit inequality in its own frame (pixels, v up), scale ``s`` broadcastable."""
    if shape == "square":
        return (np.abs(u) <= 7.0 * s) & (np.abs(v) <= 7.0 * s)
    if shape == "ellipse":
        return (u / (10.0 * s)) ** 2 + (v / (5.0 * s)) ** 2 <= 1.0
    # heart curve; its bounding box y ∈ [−1, 1.236] is shifted by 0.118 to centre it on the canvas
    x, y = u / (7.5 * s), v / (7.5 * s) + 0.118
    return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0


@functools.lru_cache(maxsize=1)
def sprite_bank() -> np.ndarray:
    """All 720 sprites, bool (3, 6, 40, 32, 32): [shape, scale, orientation, row, column]."""
    k = SUPERSAMPLE
    sub = (np.arange(CANVAS * k) + 0.5) / k - CANVAS / 2  # sub-pixel centres relative to the canvas centre
    dx = sub[None, :]  # columns, right
    dy = -sub[:, None]  # rows, up
    th = ORIENTATIONS[:, None, None]
    c, s_ = np.cos(th), np.sin(th)
    u = c * dx + s_ * dy  # rotate the sample points by −θ: the shape turns by +θ (counter-clockwise)
    v = -s_ * dx + c * dy
    scale = SCALES[:, None, None, None]
    bank = np.empty((len(SHAPES), len(SCALES), len(ORIENTATIONS), CANVAS, CANVAS), dtype=bool)
    for i, name in enumerate(SHAPES):  # 3 vectorised evaluations over (scale, orientation, points)
        inside = _inside(name, u[None], v[None], scale)  # (6, 40, 32k, 32k)
        cover = inside.reshape(len(SCALES), len(ORIENTATIONS), CANVAS, k, CANVAS, k).sum((3, 5))
        bank[i] = cover * 2 >= k * k
    return bank


def render(index: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Images (n, 64, 64) uint8 in {0, 1} of global sample indices, by translating their sprites."""
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    bank = sprite_bank()
    out = np.zeros((len(index), IMAGE, IMAGE), dtype=np.uint8)
    ar = np.arange(CANVAS)
    for start in range(0, len(index), chunk):
        f = factors_of(index[start : start + chunk])
        n = len(f)
        rows = (f[:, 4][:, None] + ar)[:, :, None]  # posY → row offset
        cols = (f[:, 3][:, None] + ar)[:, None, :]  # posX → column offset
        out[np.arange(start, start + n)[:, None, None], rows, cols] = bank[f[:, 0], f[:, 1], f[:, 2]]
    return out


def _packed_block(sprite: np.ndarray) -> np.ndarray:
    """The 1,024 translations of one sprite as packed bits (1024, 512), ordered [posX, posY] (posY fastest)."""
    pad = IMAGE - CANVAS - 1  # 31
    b = np.zeros((IMAGE + pad, IMAGE + pad), dtype=bool)
    b[pad : pad + CANVAS, pad : pad + CANVAS] = sprite
    w = np.lib.stride_tricks.sliding_window_view(b, (IMAGE, IMAGE))  # w[a, c] = b[a:a+64, c:c+64]
    block = w[::-1, ::-1].transpose(1, 0, 2, 3)  # [posX, posY]: image with the canvas at (posY, posX)
    return np.packbits(block, axis=-1).reshape(-1, IMAGE * IMAGE // 8)


def cache_path(cfg: DataConfig) -> Path:
    if cfg.data_dir:
        base = Path(cfg.data_dir).expanduser()
    elif os.environ.get("AEKIT_DATA"):
        base = Path(os.environ["AEKIT_DATA"]).expanduser()
    else:
        base = Path.home() / ".cache" / "aekit"
    return base / "dsprites" / CACHE_FILE


def build_cache(path: Path) -> Path:
    """Write all 737,280 images as packed bits (N, 512) to ``path`` (atomically: temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    log.info("dsprites: rendering %d images into %s (once, ~377 MB)", N_IMAGES, path)
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(N_IMAGES, IMAGE * IMAGE // 8))
        bank = sprite_bank().reshape(-1, CANVAS, CANVAS)
        per = CANVAS * CANVAS  # 1,024 translations per sprite
        for sid, sprite in enumerate(bank):
            arr[sid * per : (sid + 1) * per] = _packed_block(sprite)
        arr.flush()
        del arr
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _from_cache(path: Path, index: np.ndarray) -> np.ndarray:
    packed = np.load(path, mmap_mode="r")
    if packed.shape != (N_IMAGES, IMAGE * IMAGE // 8) or packed.dtype != np.uint8:
        from ..errors import DataError

        raise DataError(f"{path} is not an aekit dSprites cache (shape {packed.shape}): delete it to regenerate")
    out = np.empty((len(index), IMAGE, IMAGE), dtype=np.uint8)
    for start in range(0, len(index), 1 << 16):
        rows = np.asarray(packed[index[start : start + (1 << 16)]])
        out[start : start + len(rows)] = np.unpackbits(rows, axis=1).reshape(-1, IMAGE, IMAGE)
    return out


def load_dsprites(arg: str | None, cfg: DataConfig) -> Dataset:
    """The dSprites dataset (or a deterministic ``cfg.subsample`` of it), 20 % held out as test."""
    if cfg.subsample is not None and cfg.subsample < N_IMAGES:
        index = np.sort(np.random.default_rng(cfg.split_seed + 2).choice(N_IMAGES, cfg.subsample, replace=False))
    else:
        index = np.arange(N_IMAGES, dtype=np.int64)
    path = cache_path(cfg)
    if path.exists() or (len(index) == N_IMAGES and cfg.download):  # no cache written for a run's data
        if not path.exists():
            build_cache(path)
        bits = _from_cache(path, index)
    else:
        bits = render(index)
    x = bits * np.uint8(255)  # (n, 64, 64) uint8, 0 / 255
    del bits
    factors = factors_of(index)
    rows = np.arange(len(index))
    ds = make_dataset("dsprites", "image", cfg, x, rows, classes=SHAPES)

    def with_factors(s: Split) -> Split:
        f = torch.from_numpy(factors[s.y.numpy()])  # type: ignore[union-attr]  # make_dataset got rows: y is set
        return Split(s.x, f[:, 0].clone(), f)

    return dataclasses.replace(ds, train=with_factors(ds.train), val=with_factors(ds.val), test=with_factors(ds.test),
                               factor_names=FACTOR_NAMES)


SOURCES: dict[str, Source] = {
    "dsprites": Source(load_dsprites, False, "procedural dSprites: 64x64 binary sprites with 5 known factors "
                                             "(use --subsample N)"),
}
