"""Inference with a trained segmentation model on images of any size (``aekit segment`` uses it).

Images larger than the training images are segmented tile by tile with the overlap-tile strategy of Ronneberger
et al. (2015): tiles of ``--tile`` pixels overlap by at least twice ``--margin``, and each output pixel is taken
from the tile in which it lies farthest from the tile's edges (at least ``margin`` pixels inside), so only the
central part of every tile's prediction is kept.  The image is first reflect-padded to a multiple of 2^depth
exactly as whole-image inference does, and tiles start on multiples of 2^depth (aligned pooling grids); with
the default margin — the network's receptive radius — and batch norm in eval mode (a per-pixel affine map),
tiled inference reproduces whole-image inference up to float rounding: there are no seams by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError

__all__ = ["default_margin", "default_tile", "predict_tiled", "read_image", "segment_image", "tile_starts"]


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile offsets along one axis: 0, stride, 2·stride, … and a last tile flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _owned(starts: list[int], tile: int, size: int) -> list[tuple[int, int]]:
    """The interval of the axis each tile is responsible for: split at the middle of every overlap."""
    bounds = [0] + [(b + a + tile) // 2 for a, b in zip(starts[:-1], starts[1:])] + [size]
    return list(zip(bounds[:-1], bounds[1:]))


def default_margin(model: Any) -> int:
    return int(model.receptive_radius())


def default_tile(model: Any, margin: int | None = None) -> int:
    """Twice the training size, and at least 2·margin + 4·2^depth; a multiple of 2^depth."""
    m = model.size_multiple
    margin = default_margin(model) if margin is None else margin
    train = max(model.input_shape[1:])
    t = max(2 * train, 2 * margin + 4 * m)
    return -(-t // m) * m


@torch.no_grad()
def predict_tiled(model: Any, x: torch.Tensor, tile: int | None = None, margin: int | None = None) -> torch.Tensor:
    """Logits (B, K, H, W) of images ``x`` (B, C, H, W) float, computed tile by tile (overlap-tile)."""
    m = model.size_multiple
    margin = default_margin(model) if margin is None else int(margin)
    tile = default_tile(model, margin) if tile is None else int(tile)
    if tile % m:
        raise ConfigError(f"--tile {tile} must be a multiple of 2^depth = {m}: use --tile {-(-tile // m) * m}")
    if margin < 0:
        raise ConfigError("--margin must be ≥ 0")
    stride = (tile - 2 * margin) // m * m
    if stride < m:
        raise ConfigError(f"--tile {tile} leaves no room inside a margin of {margin} px: use --tile "
                          f"{-(-(2 * margin + 4 * m) // m) * m} or more (or a smaller --margin)")
    model.eval()
    h, w = x.shape[-2:]
    xp = model.pad_input(x)
    hp, wp = xp.shape[-2:]
    th, tw = min(tile, hp), min(tile, wp)
    ys, xs = tile_starts(hp, th, stride), tile_starts(wp, tw, stride)
    out = torch.empty(x.shape[0], model.num_classes, hp, wp, dtype=torch.float32, device=x.device)
    for y0, (a0, a1) in zip(ys, _owned(ys, th, hp)):
        for x0, (b0, b1) in zip(xs, _owned(xs, tw, wp)):
            logits = model.logits(xp[..., y0 : y0 + th, x0 : x0 + tw]).float()
            out[..., a0:a1, b0:b1] = logits[..., a0 - y0 : a1 - y0, b0 - x0 : b1 - x0]
    return out[..., :h, :w]


@torch.no_grad()
def segment_image(model: Any, image: torch.Tensor, tile: int | None = None, margin: int | None = None,
                  tiled: bool | None = None) -> tuple[torch.Tensor, bool]:
    """Class ids (H, W) for one image (C, H, W) (uint8 or float in [0, 1]) and whether it was tiled (by
    default: when it is larger than the training images)."""
    from .data import to_float

    x = to_float(image)[None].to(model.device)
    if tiled is None:
        tiled = any(s > t for s, t in zip(x.shape[-2:], model.input_shape[1:]))
    model.eval()
    logits = predict_tiled(model, x, tile, margin) if tiled else model.logits(x)
    return logits.argmax(1)[0].cpu(), tiled


def read_image(path: Path, channels: int) -> np.ndarray:
    """(C, H, W) uint8 with the model's number of channels; one-line DataError when missing or unreadable."""
    from PIL import Image

    from .data.images import _PIL_ERRORS, _to_array

    if not path.is_file():
        raise DataError(f"image {path} does not exist: pass paths of PNG/JPEG files")
    try:
        with Image.open(path) as img:
            img.load()
            return np.array(_to_array(img, channels, None).transpose(2, 0, 1))  # a writable copy
    except _PIL_ERRORS as e:
        raise DataError(f"cannot read image {path} ({e}): pass a PNG or JPEG file") from e
