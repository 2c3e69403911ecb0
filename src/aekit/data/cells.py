"""``cells``: procedural fluorescence-microscopy-like images with segmentation masks, generated from a seed.

Each image holds many blob-shaped cells of varied size and shape (rotated ellipses with a few random angular
harmonics on their outline), placed partly at random and partly in clusters next to an earlier cell, so cells
touch and overlap.  Cells are brighter towards a nucleus and brighter where they overlap; out-of-focus debris
(soft blobs that are *not* cells), uneven illumination (a smooth hot spot / vignette), Gaussian blur and
additive + multiplicative noise make it microscopy-like.  ``--cells-difficulty`` d ∈ [0, 1] raises noise, blur,
illumination unevenness, debris, the share of dim cells and of touching cells together.

Masks (uint8 (N, H, W), pixel value = class id): 0 background, 1 cell, and with ``--cells-borders`` 2 for the
cell pixels where two touching / overlapping cells meet (a 2-pixel line, the separation borders of Ronneberger
et al. 2015).  Options: ``--image-size`` (side, default 128), ``--cells-count`` (default 400),
``--cells-difficulty`` (default 0.5), ``--cells-borders``; ``--split-seed`` seeds the generator (image i depends
only on (seed, i)) as well as the split.  There is no test split of its own: ``--test-fraction`` is held out.

Generation is vectorised per image: every cell is evaluated on a fixed-size patch at once and scattered into
the image with ``np.maximum.at`` (the cell drawn last lies on top); there is no per-pixel Python.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .base import DataConfig, Dataset, Source, make_dataset

log = logging.getLogger(__name__)

DEFAULT_SIZE = 128
R_MIN, R_MAX = 5.0, 13.0  # cell radius range in pixels (fixed magnification: independent of the image size)
HARMONICS = (2, 3, 4)  # angular harmonics perturbing each outline
CLASSES = ("background", "cell")
BORDER_CLASSES = ("background", "cell", "border")


def _smooth_blobs(rng: np.random.Generator, h: int, w: int, n: int, sigma: tuple[float, float],
                  amp: tuple[float, float]) -> np.ndarray:
    """Σ of ``n`` isotropic Gaussians (random centres, widths, amplitudes) as an (H, W) array — separable, so
    one (H × n) @ (n × W) product instead of n full images."""
    if n <= 0:
        return np.zeros((h, w))
    cy, cx = rng.uniform(0, h, n), rng.uniform(0, w, n)
    s = rng.uniform(*sigma, n)
    a = rng.uniform(*amp, n)
    gy = np.exp(-0.5 * ((np.arange(h)[None, :] - cy[:, None]) / s[:, None]) ** 2)  # (n, H)
    gx = np.exp(-0.5 * ((np.arange(w)[None, :] - cx[:, None]) / s[:, None]) ** 2)  # (n, W)
    return gy.T @ (a[:, None] * gx)


def _cell_params(rng: np.random.Generator, h: int, w: int, d: float) -> dict[str, np.ndarray]:
    """Centres, radii, orientation, outline harmonics and brightness of the cells of one image."""
    mean_area = math.pi * (R_MIN**2 + R_MIN * R_MAX + R_MAX**2) / 3.0 * 0.8
    coverage = 0.32 + 0.12 * d
    n = max(1, int(rng.poisson(coverage * h * w / mean_area)))
    r = rng.uniform(R_MIN, R_MAX, n)
    clustered = rng.random(n) < 0.35 + 0.35 * d
    clustered[0] = False
    cx = rng.uniform(-R_MAX / 2, w + R_MAX / 2, n)
    cy = rng.uniform(-R_MAX / 2, h + R_MAX / 2, n)
    # a clustered cell sits next to an earlier one, at (0.75 .. 1.0)·(r_parent + r_child): touching / overlapping
    idx = np.flatnonzero(clustered)
    parent = np.floor(rng.random(len(idx)) * idx).astype(int)  # an earlier cell
    angle = rng.uniform(0, 2 * np.pi, len(idx))
    dist = (r[parent] + r[idx]) * rng.uniform(0.75, 1.0, len(idx))
    for j, p, a, dd in zip(idx, parent, angle, dist):  # sequential: a child may be a later cell's parent
        cx[j], cy[j] = cx[p] + dd * np.cos(a), cy[p] + dd * np.sin(a)
    return {
        "cx": cx, "cy": cy, "r": r,
        "aspect": rng.uniform(0.6, 1.0, n),
        "theta": rng.uniform(0, np.pi, n),
        "amp": rng.uniform(0.0, 0.09, (n, len(HARMONICS))),
        "phase": rng.uniform(0, 2 * np.pi, (n, len(HARMONICS))),
        "bright": rng.uniform(0.65 - 0.35 * d, 1.0, n),
    }


def _render(p: dict[str, np.ndarray], h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Instance ids (H, W) int32 (0 = none; the cell drawn last on top) and the clean cell intensity (H, W)."""
    n = len(p["r"])
    half = int(math.ceil(R_MAX * 1.35)) + 1
    off = np.arange(-half, half + 1)
    icx, icy = np.rint(p["cx"]).astype(int), np.rint(p["cy"]).astype(int)
    px = icx[:, None, None] + off[None, None, :]  # (n, 1, P)
    py = icy[:, None, None] + off[None, :, None]  # (n, P, 1)
    dx, dy = px - p["cx"][:, None, None], py - p["cy"][:, None, None]
    c, s = np.cos(p["theta"])[:, None, None], np.sin(p["theta"])[:, None, None]
    u = (c * dx + s * dy) / p["r"][:, None, None]
    v = (-s * dx + c * dy) / (p["r"] * p["aspect"])[:, None, None]
    rho = np.sqrt(u**2 + v**2)
    phi = np.arctan2(v, u)
    k = np.asarray(HARMONICS)[None, :, None, None]
    outline = 1.0 + (p["amp"][:, :, None, None] * np.cos(k * phi[:, None] + p["phase"][:, :, None, None])).sum(1)
    rn = rho / outline  # normalised radius: < 1 inside the cell
    inside = (rn < 1.0) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
    flat = (np.broadcast_to(py, rn.shape) * w + np.broadcast_to(px, rn.shape))[inside]
    prio = np.broadcast_to(np.arange(1, n + 1)[:, None, None], rn.shape)[inside]
    inst = np.zeros(h * w, np.int32)
    np.maximum.at(inst, flat, prio)
    cover = np.bincount(flat, minlength=h * w)  # cells covering each pixel
    top = inst[flat] == prio
    r_in = rn[inside]
    profile = 0.72 + 0.18 * (1.0 - r_in**2) + 0.22 * np.exp(-((r_in / 0.38) ** 2))  # cytoplasm + nucleus
    value = np.zeros(h * w)
    value[flat[top]] = (p["bright"][prio - 1] * profile)[top]
    value *= 1.0 + 0.25 * np.maximum(cover - 1, 0)  # overlapping cells add up
    return inst.reshape(h, w), value.reshape(h, w)


def instance_masks(inst: np.ndarray, borders: bool) -> np.ndarray:
    """Class ids from instance ids (..., H, W): 1 inside any cell, and with ``borders`` 2 where a cell pixel has
    an 8-neighbour in another cell."""
    mask = (inst > 0).astype(np.uint8)
    if borders:
        pad = np.pad(inst, [(0, 0)] * (inst.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
        h, w = inst.shape[-2:]
        touch = np.zeros(inst.shape, bool)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                nb = pad[..., dy : dy + h, dx : dx + w]
                touch |= (nb > 0) & (nb != inst)
        mask[touch & (inst > 0)] = 2
    return mask


def generate_cells(n: int, size: int | tuple[int, int] = DEFAULT_SIZE, difficulty: float = 0.5,
                   borders: bool = False, seed: int = 0, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (uint8 (n, H, W), 0..255) and masks (uint8 (n, H, W), class ids); image ``i`` depends only on
    ``(seed, start + i)``, the size and the difficulty."""
    from scipy.ndimage import gaussian_filter  # here, not at module level: scipy adds ~15 % to `import aekit`

    h, w = (size, size) if isinstance(size, int) else size
    d = float(difficulty)
    images = np.empty((n, h, w), np.uint8)
    masks = np.empty((n, h, w), np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, start + i])
        p = _cell_params(rng, h, w, d)
        inst, cells = _render(p, h, w)
        # illumination: a smooth hot spot over a floor of 1 − u (vignetting / uneven excitation)
        u = 0.15 + 0.55 * d
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        spread = rng.uniform(0.5, 1.0) * max(h, w)
        illum = (1 - u) + u * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread**2))
        scale = h * w / DEFAULT_SIZE**2
        background = 0.05 + 0.05 * d + _smooth_blobs(rng, h, w, int(rng.poisson(4 * d * scale)), (4.0, 9.0),
                                                       (0.08, 0.12 + 0.25 * d))  # out-of-focus debris
        img = (background + cells) * illum
        img = gaussian_filter(img, 0.5 + 1.0 * d, mode="reflect")
        noise = 0.01 + 0.06 * d
        img = img * (1 + 0.5 * noise * rng.standard_normal((h, w))) + noise * rng.standard_normal((h, w))
        images[i] = np.clip(np.rint(img * 235.0), 0, 255).astype(np.uint8)
        masks[i] = instance_masks(inst, borders)
    return images, masks


def load_cells(arg: str | None, cfg: DataConfig) -> Dataset:
    size = cfg.image_size or DEFAULT_SIZE
    x, y = generate_cells(cfg.cells_count, size, cfg.cells_difficulty, cfg.cells_borders, seed=cfg.split_seed)
    log.info("generated %d %dx%d cells images (difficulty %g%s)", len(x), size, size, cfg.cells_difficulty,
             ", with borders" if cfg.cells_borders else "")
    return make_dataset("cells", "image", cfg, x, y, classes=BORDER_CLASSES if cfg.cells_borders else CLASSES)


SOURCES: dict[str, Source] = {
    "cells": Source(load_cells, False, "procedural microscopy-like cells with segmentation masks (--cells-count, "
                                       "--cells-difficulty, --cells-borders, --image-size)"),
}
