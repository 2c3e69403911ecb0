"""Figures as pure functions: arrays / tensors and a path in, a PNG written (atomically) and its path out.

Everything is drawn on :class:`matplotlib.figure.Figure` objects with an Agg canvas, so no global pyplot
state (and no display) is ever touched.  Image inputs are (N, C, H, W) (or (N, H, W)) floats in [0, 1]
(values are clamped; ``uint8`` is scaled by 1/255); table inputs are (N, D) floats.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..fileio import atomic_path
from ..models.base import Autoencoder

log = logging.getLogger(__name__)

__all__ = [
    "make_grid",
    "loss_terms",
    "error_histogram_figure",
    "plot_error_histogram",
    "plot_interpolation",
    "plot_latent_scatter",
    "plot_losses",
    "plot_manifold",
    "plot_reconstructions",
    "plot_samples",
    "project_2d",
    "save_image_grid",
]

GRID_DPI = 100  # image grids are laid out in exact pixels at this dpi
PLOT_DPI = 110
TILE_TARGET_PX = 56  # tiny images are upscaled (nearest) until a tile is at least about this tall
MAX_SCATTER = 5000

# the order in which loss terms are shown; unknown terms follow alphabetically
_TERM_ORDER = ("loss", "recon", "kl", "elbo", "sparsity")


# ----------------------------------------------------------------------------------------------- helpers


def _numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype in (torch.bfloat16, torch.float16):
            a = a.float()
        return a.numpy()
    return np.asarray(a)


def _unit_images(images: Any) -> np.ndarray:
    """(N, C, H, W) float32 in [0, 1] from uint8 or float images (NaN → 0); (N, H, W) gains a channel."""
    a = _numpy(images)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got shape {tuple(a.shape)}")
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0)


def _is_image_batch(a: Any) -> bool:
    return _numpy(a).ndim in (3, 4)


def _figure(width_in: float, height_in: float, dpi: int = PLOT_DPI,
            layout: Literal["constrained", "compressed", "tight"] | None = None) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike, *, tight: bool | None = None, dpi: int = PLOT_DPI) -> Path:
    """Write ``fig`` as PNG to a temporary file next to ``path``, then rename it into place.

    ``tight`` (crop to the drawn content) defaults to on unless the figure has its own layout engine.
    """
    if tight is None:
        tight = fig.get_layout_engine() is None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight" if tight else None,
                    pad_inches=0.08 if tight else 0.0, facecolor="white")
    log.debug("wrote %s", path)
    return path


def _upscale_factor(h: int, w: int) -> int:
    """Integer nearest-neighbour factor that makes a tile about :data:`TILE_TARGET_PX` tall (at most 16)."""
    return int(min(16, max(1, math.ceil(TILE_TARGET_PX / max(1, min(h, w))))))


def _upscale(a: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (N, C, H, W) by an integer factor."""
    if scale <= 1:
        return a
    return a.repeat(scale, axis=2).repeat(scale, axis=3)


def _imshow_args(grid: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    if grid.shape[2] == 1:
        return grid[:, :, 0], {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    return grid, {}


# ----------------------------------------------------------------------------------------------- grids


def make_grid(images: Any, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images into one (H, W, C) float array in [0, 1], ``nrow`` images per row (as torchvision).

    ``images`` is (N, C, H, W) (or (N, H, W)) with C = 1 (grayscale, C stays 1), 3 (RGB) or 4 (alpha is
    dropped); other channel counts show their first channel.  Tile ``i`` has its top-left corner at
    ``(padding + (i // cols)·(H + padding), padding + (i % cols)·(W + padding))`` with
    ``cols = min(nrow, N)``; the result is ``(rows·(H + padding) + padding, cols·(W + padding) + padding, C)``
    and unused cells and padding hold ``pad_value``.
    """
    a = _unit_images(images)
    n, c, h, w = a.shape
    if n == 0:
        raise ValueError("make_grid needs at least one image")
    if nrow < 1:
        raise ValueError(f"nrow must be ≥ 1, got {nrow}")
    if padding < 0:
        raise ValueError(f"padding must be ≥ 0, got {padding}")
    if c == 4:
        a = a[:, :3]
    elif c not in (1, 3):
        log.debug("make_grid: %d channels, showing the first", c)
        a = a[:, :1]
    c = a.shape[1]
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), pad_value, np.float32)
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[y : y + h, x : x + w] = a[i].transpose(1, 2, 0)
    return grid


def _render_grid(grid: np.ndarray, path: str | os.PathLike, *, title: str | None = None,
                 row_labels: Sequence[tuple[float, str]] = ()) -> Path:
    """Draw a tiled image at exactly one figure pixel per grid pixel (plus a title band / label margin)."""
    h, w = grid.shape[:2]
    title_px = 30 if title else 0
    # the label margin fits the longest label line (≈ 7 px a character at 10 pt)
    longest = max((len(line) for _, text in row_labels for line in text.split("\n")), default=0)
    label_px = max(118, 12 + 7 * longest) if row_labels else 0
    width = max(w + label_px, 260 if title else 0)
    height = h + title_px
    left = label_px + (width - w - label_px) // 2
    fig = _figure(width / GRID_DPI, height / GRID_DPI, dpi=GRID_DPI)
    ax = fig.add_axes((left / width, 0.0, w / width, h / height))
    img, kw = _imshow_args(grid)
    ax.imshow(img, interpolation="nearest", aspect="auto", **kw)
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1.0 - 0.5 * title_px / height, title, ha="center", va="center", fontsize=11)
    for y_px, text in row_labels:  # y_px: row centre, pixels from the top of the grid
        fig.text((left - 6) / width, (h - y_px) / height, text, ha="right", va="center", fontsize=10)
    return _save(fig, path, tight=False, dpi=GRID_DPI)


def save_image_grid(images: Any, path: str | os.PathLike, nrow: int = 8, title: str | None = None, *,
                    padding: int = 2, scale: int | None = None) -> Path:
    """Save images (floats in [0, 1], clamped) as a grid PNG, ``nrow`` per row.

    Small images are upscaled by an integer factor with nearest-neighbour interpolation (``scale``; by
    default enough to make 8×8 digits readable) before tiling, so padding stays thin.  Without a title the
    PNG is exactly ``make_grid(upscaled, nrow, padding)`` in pixels.
    """
    a = _unit_images(images)
    if len(a) == 0:
        raise ValueError("save_image_grid needs at least one image")
    s = _upscale_factor(*a.shape[2:]) if scale is None else int(scale)
    grid = make_grid(_upscale(a, s), nrow, padding)
    return _render_grid(grid, path, title=title)


# ----------------------------------------------------------------------------------------------- curves


def loss_terms(rows: Sequence[dict[str, float]]) -> list[str]:
    """The loss terms with ``train_`` / ``val_`` columns in metrics rows, in display order."""
    found = {k.split("_", 1)[1] for r in rows for k in r if k.startswith(("train_", "val_"))}
    known = [t for t in _TERM_ORDER if t in found]
    return known + sorted(found - set(known))


def plot_losses(metrics_rows: Sequence[dict[str, float]], path: str | os.PathLike, title: str | None = None) -> Path:
    """Training curves from ``metrics.csv`` rows: one panel per term (loss, recon, kl, ...), train solid and
    validation dashed, against the epoch.  Raises ``ValueError`` when there are no rows or no terms."""
    rows = list(metrics_rows)
    terms = loss_terms(rows)
    if not rows or not terms:
        raise ValueError("no training metrics to plot (metrics rows are empty or have no train_/val_ columns)")
    epochs = np.array([float(r.get("epoch", i + 1)) for i, r in enumerate(rows)])
    ncols = min(3, len(terms))
    nrows = math.ceil(len(terms) / ncols)
    fig = _figure(4.3 * ncols, 3.2 * nrows, layout="tight")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    few = len(rows) <= 30
    for ax, term in zip(axes.flat, terms, strict=False):
        values_all = []
        for split, style, color in (("train", "-", "C0"), ("val", "--", "C1")):
            ys = np.array([float(r.get(f"{split}_{term}", np.nan)) for r in rows])
            ok = np.isfinite(ys)
            if not ok.any():
                continue
            values_all.append(ys[ok])
            ax.plot(epochs[ok], ys[ok], linestyle=style, color=color, marker="o" if few else None,
                    markersize=3.5, label=split)
        vals = np.concatenate(values_all) if values_all else np.array([])
        if vals.size and (vals > 0).all() and vals.max() / vals.min() > 100:
            ax.set_yscale("log")
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{term} (per sample)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(terms):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------- reconstructions


def plot_reconstructions(x: Any, recon: Any, path: str | os.PathLike, n: int = 10, *, title: str | None = None,
                         feature_names: Sequence[str] | None = None, sample_names: Sequence[str] | None = None,
                         value_label: str = "value (standardised units)") -> Path:
    """Originals above their reconstructions (images), or, for tables (N, D), small multiples of line plots
    of original vs reconstructed feature vectors for a few samples (titled by ``sample_names``)."""
    xa, ra = _numpy(x), _numpy(recon)
    n = min(n, len(xa), len(ra))
    if n < 1:
        raise ValueError("plot_reconstructions needs at least one sample")
    if _is_image_batch(xa):
        a = _unit_images(xa[:n])
        b = _unit_images(ra[:n]).reshape(a.shape)
        s = _upscale_factor(*a.shape[2:])
        pad = 2
        grid = make_grid(_upscale(np.concatenate([a, b]), s), nrow=n, padding=pad)
        th = a.shape[2] * s
        labels = [(pad + th / 2, "original"), (2 * pad + th + th / 2, "reconstruction")]
        return _render_grid(grid, path, title=title, row_labels=labels)
    xa = xa.reshape(len(xa), -1).astype(np.float64)
    ra = ra.reshape(len(ra), -1).astype(np.float64)
    k = min(n, 6)
    d = xa.shape[1]
    ncols = min(3, k)
    nrows = math.ceil(k / ncols)
    fig = _figure(4.2 * ncols, 2.9 * nrows, layout="tight")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    idx = np.arange(d)
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.set_axis_off()
            continue
        ax.plot(idx, xa[i], "-o", color="C0", markersize=3, label="original")
        ax.plot(idx, ra[i], "--s", color="C1", markersize=3, label="reconstruction")
        ax.set_title(sample_names[i] if sample_names is not None and i < len(sample_names) else f"sample {i}")
        if feature_names is not None and len(feature_names) == d and d <= 16:
            ax.set_xticks(idx, [str(f) for f in feature_names], rotation=60, fontsize=7)
            ax.set_xlabel("feature")
        else:
            ax.set_xlabel("feature index")
        ax.set_ylabel(value_label)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------- latent space


def project_2d(codes: Any) -> tuple[np.ndarray, tuple[str, str]]:
    """Codes (N, k) → (N, 2) points and axis labels (units named z0, z1, … as ``encode`` and ``traverse`` do).
    k = 2: as is; k = 1: code vs uniform jitter;
    k > 2: the first two principal components (SVD of the centred codes), labelled "PC1 of codes"."""
    z = _numpy(codes).astype(np.float64)
    z = z.reshape(len(z), -1)
    k = z.shape[1]
    if k == 1:
        jitter = np.random.default_rng(0).uniform(-1.0, 1.0, size=len(z))
        return np.stack([z[:, 0], jitter], 1), ("z0", "jitter (no meaning)")
    if k == 2:
        return z, ("z0", "z1")
    zc = z - z.mean(0, keepdims=True)
    if len(z) < 2:
        return zc[:, :2], ("PC1 of codes", "PC2 of codes")
    _, s, vt = np.linalg.svd(zc, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(1)])  # deterministic orientation
    signs[signs == 0] = 1
    xy = zc @ (comps * signs[:, None]).T
    var = s**2
    frac = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return xy, (f"PC1 of codes ({100 * frac[0]:.0f}% var.)", f"PC2 of codes ({100 * frac[1]:.0f}% var.)")


def plot_latent_scatter(codes: Any, labels: Any, classes: Sequence[str] | None, path: str | os.PathLike,
                        title: str | None = None, *, max_points: int = MAX_SCATTER, seed: int = 0) -> Path:
    """2-D scatter of codes coloured by label (tab10 / tab20, legend with class names; grey without
    labels).  Codes with more than two dimensions are projected on their first two principal components;
    one-dimensional codes are plotted against random jitter.  At most ``max_points`` points are drawn."""
    z = _numpy(codes)
    z = z.reshape(len(z), -1)
    y = None if labels is None else _numpy(labels).reshape(-1).astype(np.int64)
    if y is not None and len(y) != len(z):
        raise ValueError(f"{len(z)} codes but {len(y)} labels")
    if len(z) == 0:
        raise ValueError("plot_latent_scatter needs at least one code")
    if len(z) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(z), max_points, replace=False))
        z = z[keep]
        y = None if y is None else y[keep]
    xy, (xlabel, ylabel) = project_2d(z)
    fig = _figure(6.8, 5.4)
    ax = fig.add_subplot()
    size = 10 if len(xy) <= 2000 else 5
    if y is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, c="0.45", alpha=0.6, linewidths=0)
    else:
        uniq = np.unique(y)
        if len(uniq) <= 20:
            cmap = matplotlib.colormaps["tab10" if len(uniq) <= 10 else "tab20"]
            for j, lab in enumerate(uniq):
                m = y == lab
                name = classes[lab] if classes is not None and 0 <= lab < len(classes) else str(lab)
                ax.scatter(xy[m, 0], xy[m, 1], s=size, color=cmap(j), alpha=0.75, linewidths=0, label=str(name))
            ax.legend(title="class", fontsize=8, markerscale=2.0, loc="center left", bbox_to_anchor=(1.01, 0.5),
                      frameon=False)
        else:
            sc = ax.scatter(xy[:, 0], xy[:, 1], s=size, c=y, cmap="viridis", alpha=0.75, linewidths=0)
            fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"latent codes (n = {len(xy)})")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_interpolation(strip: Any, path: str | os.PathLike, title: str | None = None, *,
                       value_label: str = "value (standardised units)") -> Path:
    """Decoded points along a latent path: one row of images, or (tables) one line per step coloured by t."""
    a = _numpy(strip)
    if len(a) == 0:
        raise ValueError("plot_interpolation needs at least one step")
    if _is_image_batch(a):
        return save_image_grid(a, path, nrow=len(a), title=title)
    a = a.reshape(len(a), -1)
    fig = _figure(7.0, 3.8)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    ts = np.linspace(0.0, 1.0, len(a))
    for t, row in zip(ts, a, strict=True):
        ax.plot(np.arange(a.shape[1]), row, color=cmap(t), linewidth=1.3)
    fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=ax, label="interpolation t (0 → start, 1 → end)")
    ax.set_xlabel("feature index")
    ax.set_ylabel(value_label)
    ax.set_title(title or "latent interpolation")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_samples(samples: Any, path: str | os.PathLike, nrow: int = 8, title: str | None = None) -> Path:
    """A grid of generated images (floats in [0, 1])."""
    if not _is_image_batch(samples):
        raise ValueError("plot_samples draws images (N, C, H, W); table samples have no image form")
    return save_image_grid(samples, path, nrow=nrow, title=title)


@torch.no_grad()
def plot_manifold(model: Autoencoder, path: str | os.PathLike, n: int = 15, title: str | None = None) -> Path:
    """Decode an n×n grid of N(0, 1) quantiles (linspace(0.05, 0.95, n)) of a 2-D latent space and tile the
    images, z0 left → right, z1 bottom → top (Kingma & Welling, 2014, fig. 4)."""
    if model.latent_dim != 2:
        raise ValueError(f"plot_manifold needs latent_dim == 2, the model has {model.latent_dim}")
    if len(model.input_shape) not in (2, 3):
        raise ValueError(f"plot_manifold needs image-shaped outputs, the model's input shape is {model.input_shape}")
    model.eval()
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n, dtype=torch.float64)).float()
    z0 = q.repeat(n)  # columns: z0 ascending
    z1 = q.flip(0).repeat_interleave(n)  # rows: z1 descending, so up means larger z1
    z = torch.stack([z0, z1], 1).to(model.device)
    dec = model.decode(z).float().cpu()
    a = _unit_images(dec.reshape(n * n, *model.input_shape))
    s = _upscale_factor(*a.shape[2:])
    s = max(1, min(s, 600 // max(1, n * a.shape[2])))  # keep the whole manifold near ≤ 600 px
    th, tw = a.shape[2] * s, a.shape[3] * s
    pad = 1  # a hairline between tiles keeps neighbouring digits apart
    grid = make_grid(_upscale(a, s), nrow=n, padding=pad, pad_value=0.5)
    side = max(4.0, grid.shape[1] / PLOT_DPI)
    fig = _figure(side + 0.9, side * grid.shape[0] / grid.shape[1] + 0.9)
    ax = fig.add_subplot()
    img, kw = _imshow_args(grid)
    ax.imshow(img, interpolation="nearest", **kw)
    ticks = list(range(0, n, 2)) if n > 8 else list(range(n))
    ax.set_xticks([pad + k * (tw + pad) + tw / 2 - 0.5 for k in ticks], [f"{q[k]:.2g}" for k in ticks], fontsize=8)
    ax.set_yticks([pad + k * (th + pad) + th / 2 - 0.5 for k in ticks], [f"{q.flip(0)[k]:.2g}" for k in ticks],
                  fontsize=8)
    ax.set_xlabel("z0 (N(0, 1) quantiles 0.05 … 0.95)")
    ax.set_ylabel("z1 (N(0, 1) quantiles 0.05 … 0.95)")
    ax.set_title(title or f"decoded latent manifold ({n}×{n})")
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------- errors


def plot_error_histogram(errors: Any, path: str | os.PathLike, labels: Any = None, *,
                         classes: Sequence[str] | None = None, title: str | None = None,
                         xlabel: str = "SSE per sample (sum of squared errors)", short: str = "SSE") -> Path:
    """Histogram of per-sample reconstruction errors (mean and median marked); with labels, a second
    panel shows the mean error per class.  ``xlabel`` names the quantity and its units, ``short`` abbreviates
    it in the per-class panel's title.  Every label lies inside the written PNG."""
    return _save(error_histogram_figure(errors, labels, classes=classes, title=title, xlabel=xlabel, short=short),
                 path, tight=True)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def error_histogram_figure(errors: Any, labels: Any = None, *, classes: Sequence[str] | None = None,
                           title: str | None = None, xlabel: str = "SSE per sample (sum of squared errors)",
                           short: str = "SSE") -> Figure:
    """The figure of :func:`plot_error_histogram` (constrained layout: the labels fit inside the figure)."""
    e = _numpy(errors).reshape(-1).astype(np.float64)
    e = e[np.isfinite(e)] if labels is None else e
    if len(e) == 0:
        raise ValueError("plot_error_histogram needs at least one error value")
    y = None if labels is None else _numpy(labels).reshape(-1).astype(np.int64)
    if y is not None:
        if len(y) != len(e):
            raise ValueError(f"{len(e)} errors but {len(y)} labels")
        ok = np.isfinite(e)
        e, y = e[ok], y[ok]
        if len(e) == 0:
            raise ValueError("plot_error_histogram: no finite error values")
    panels = 2 if y is not None else 1
    fig = _figure(5.6 * panels, 3.8, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    bins = int(np.clip(np.sqrt(len(e)) * 1.5, 10, 60))
    ax.hist(e, bins=bins, color="C0", alpha=0.85)
    mean, median = float(e.mean()), float(np.median(e))
    ax.axvline(mean, color="C3", linestyle="-", label=f"mean {mean:.4g}")
    ax.axvline(median, color="C2", linestyle="--", label=f"median {median:.4g}")
    ax.set_xlabel(_wrap(xlabel, 60))
    ax.set_ylabel("number of samples")
    ax.set_title(title or f"reconstruction error (n = {len(e)})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if y is not None:
        ax2 = axes[1]
        uniq = np.unique(y)
        means = [float(e[y == u].mean()) for u in uniq]
        names = [classes[u] if classes is not None and 0 <= u < len(classes) else str(u) for u in uniq]
        cmap = matplotlib.colormaps["tab10" if len(uniq) <= 10 else "tab20"]
        colors = [cmap(j % cmap.N) for j in range(len(uniq))]
        ax2.bar(np.arange(len(uniq)), means, color=colors)
        tilt = len(uniq) > 6 and max(len(str(s)) for s in names) > 3
        ax2.set_xticks(np.arange(len(uniq)), [str(s) for s in names], rotation=45 if tilt else 0,
                       ha="right" if tilt else "center", fontsize=8)
        ax2.set_xlabel("class")
        ax2.set_ylabel(_wrap(f"class mean of the {xlabel}", 34))
        ax2.set_title(f"mean {short} per class")
        ax2.grid(alpha=0.3, axis="y")
    return fig
