"""Segmentation figures: masks overlaid on images, as pure functions (arrays in, PNG written, path out).

``overlay`` tints every non-background class with its colour (``alpha``) and draws the class outlines at full
colour, so the boundary of each predicted region is easy to judge against the image.  Class 0 (background)
stays untinted.  Grids use the exact-pixel renderer of :mod:`aekit.viz.plots`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_path
from . import plots

# class id -> RGB in [0, 1]; class 0 (background) is never tinted
PALETTE = np.array([
    [0.0, 0.0, 0.0], [0.10, 0.85, 0.25], [1.0, 0.15, 0.75], [0.15, 0.55, 1.0], [1.0, 0.75, 0.05],
    [0.95, 0.25, 0.15], [0.55, 0.25, 1.0], [0.0, 0.9, 0.9], [0.6, 0.6, 0.6],
], dtype=np.float32)
ERROR_RGB = np.array([1.0, 0.1, 0.1], np.float32)


def class_color(c: int) -> np.ndarray:
    return PALETTE[c % len(PALETTE)] if c < len(PALETTE) else PALETTE[1 + (c - 1) % (len(PALETTE) - 1)]


def _colors(k: int) -> np.ndarray:
    return np.stack([class_color(c) for c in range(max(k, 1))])


def _rgb(image: Any) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from (C, H, W) / (H, W) floats or uint8."""
    a = plots._unit_images(np.asarray(plots._numpy(image))[None] if plots._numpy(image).ndim in (2, 3) else image)[0]
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return a[:3].transpose(1, 2, 0)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Bool (H, W): pixels with a 4-neighbour of another class (image edges excluded)."""
    m = np.pad(mask, 1, mode="edge")
    c = m[1:-1, 1:-1]
    return (m[:-2, 1:-1] != c) | (m[2:, 1:-1] != c) | (m[1:-1, :-2] != c) | (m[1:-1, 2:] != c)


def overlay(image: Any, mask: Any, alpha: float = 0.35, outline: bool = True) -> np.ndarray:
    """Image (C, H, W) or (H, W) in [0, 1] (or uint8) with ``mask`` (H, W) class ids tinted on top: (H, W, 3)."""
    rgb = _rgb(image)
    m = np.asarray(plots._numpy(mask)).astype(np.int64)
    colors = _colors(int(m.max(initial=0)) + 1)[m]  # (H, W, 3)
    fg = (m > 0)[..., None]
    out = np.where(fg, (1 - alpha) * rgb + alpha * colors, rgb)
    if outline:
        edge = (_outline(m) & (m > 0))[..., None]
        out = np.where(edge, colors, out)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def error_overlay(image: Any, pred: Any, target: Any, alpha: float = 0.6) -> np.ndarray:
    """The image with wrongly labelled pixels in red: (H, W, 3)."""
    rgb = _rgb(image)
    wrong = (np.asarray(plots._numpy(pred)) != np.asarray(plots._numpy(target)))[..., None]
    return np.where(wrong, (1 - alpha) * rgb + alpha * ERROR_RGB, rgb).astype(np.float32)


def _grid_rows(rows: Sequence[tuple[str, list[np.ndarray]]], path: str | os.PathLike, title: str | None) -> Path:
    """Rows of (H, W, 3) panels (all one size) as one exact-pixel grid with row labels."""
    n = len(rows[0][1])
    panels = np.stack([p for _, ps in rows for p in ps]).transpose(0, 3, 1, 2)  # (R·n, 3, H, W)
    scale = plots._upscale_factor(*panels.shape[2:])
    panels = plots._upscale(panels, scale)
    pad = 2
    grid = plots.make_grid(panels, nrow=n, padding=pad)
    h = panels.shape[2]
    labels = [(pad + r * (h + pad) + h / 2, name) for r, (name, _) in enumerate(rows)]
    return plots._render_grid(grid, path, title=title, row_labels=labels)


def _legend(class_names: Sequence[str] | None, k: int) -> str:
    names = list(class_names) if class_names else [str(c) for c in range(k)]
    colour = {1: "green", 2: "magenta", 3: "blue", 4: "yellow"}
    return ", ".join(f"{names[c]} = {colour.get(c, f'colour {c}')}" for c in range(1, min(k, len(names))))


def plot_segmentations(images: Any, target: Any, pred: Any, path: str | os.PathLike, *,
                       title: str | None = None) -> Path:
    """One column per sample: the image, the ground truth overlaid, the prediction overlaid, the errors (red)."""
    x, t, p = plots._numpy(images), plots._numpy(target), plots._numpy(pred)
    if len(x) == 0:
        raise ValueError("plot_segmentations needs at least one image")
    rows = [
        ("image", [_rgb(a) for a in x]),
        ("ground truth", [overlay(a, m) for a, m in zip(x, t)]),
        ("prediction", [overlay(a, m) for a, m in zip(x, p)]),
        ("errors", [error_overlay(a, q, m) for a, q, m in zip(x, p, t)]),
    ]
    return _grid_rows(rows, path, title)


def plot_method_comparison(images: Any, target: Any, preds: Mapping[str, Any], path: str | os.PathLike, *,
                           title: str | None = None) -> Path:
    """The same images segmented by several models: rows image, ground truth, then one row per model."""
    x, t = plots._numpy(images), plots._numpy(target)
    rows = [("image", [_rgb(a) for a in x]), ("ground truth", [overlay(a, m) for a, m in zip(x, t)])]
    rows += [(name, [overlay(a, m) for a, m in zip(x, plots._numpy(p))]) for name, p in preds.items()]
    return _grid_rows(rows, path, title)


def _save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path


def save_mask_png(mask: Any, path: str | os.PathLike) -> Path:
    """A mask (H, W) as a single-channel PNG whose pixel value is the class id (readable by ``seg:DIR``)."""
    return _save_png(np.asarray(plots._numpy(mask)).astype(np.uint8), path)


def save_overlay_png(image: Any, mask: Any, path: str | os.PathLike) -> Path:
    """The image with its mask overlaid, at the image's own resolution, as an RGB PNG."""
    return _save_png(np.rint(overlay(image, mask) * 255).astype(np.uint8), path)


def segmentation_figures(model: Any, dataset: Any, split: str = "test", n: int = 6
                         ) -> list[tuple[str, str, Callable[[Path], Any]]]:
    """The report's figures for a segmentation model: ``(file name, caption, draw(path))``."""
    s = dataset.split(split)
    idx = torch.arange(min(n, len(s)))
    if len(idx) == 0:
        return []

    def draw(path: Path) -> None:
        from ..evaluate.segmentation import predict_masks

        pred = predict_masks(model, s.x[idx])
        plot_segmentations(s.x[idx], s.y[idx], pred, path, title=f"{split} images: ground truth vs prediction")

    legend = _legend(dataset.classes, model.num_classes)
    return [("segmentations.png",
             f"The first {len(idx)} {split} images (top), their ground-truth masks and the predicted masks overlaid "
             f"({legend}; outlines at full colour), and the wrongly labelled pixels in red (bottom).", draw)]
