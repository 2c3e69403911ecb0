"""Latent traversals: each latent unit swept over [−span, span] around one code, one image row per unit.

Rows are ordered by how much the unit is used: for a VAE by its KL E_x KL(q(z_j|x) ‖ N(0, 1)) (highest first;
units with KL ≈ 0 are collapsed and decode to the same image along the row), for other models by the
variance of the code over the data.  The other units stay at the code (posterior mean) of the chosen sample.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import latent
from ..models.base import Autoencoder
from .plots import _render_grid, _unit_images, _upscale, _upscale_factor, make_grid

__all__ = ["plot_traversal", "traversal_figure", "unit_usage"]


@torch.no_grad()
def unit_usage(model: Autoencoder, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[np.ndarray, str]:
    """Per-unit usage over the rows of ``x`` and its name: KL per dim (nats) for a VAE, else code variance;
    ``labels``: the rows' class ids, for a ``conditional`` model."""
    if model.posterior:
        from ..evaluate.likelihood import kl_per_dim, posterior_stats

        mean, logvar = posterior_stats(model, x, labels=labels)
        return kl_per_dim(mean, logvar).numpy(), "KL"
    codes = latent.encode_all(model, x, labels=labels).double()
    var = codes.var(0).numpy() if len(codes) > 1 else np.zeros(model.latent_dim)
    return var, "var"


def plot_traversal(images: Any, steps: int, path: str | os.PathLike, *, row_labels: list[str] | None = None,
                   title: str | None = None) -> Path:
    """Tile traversal images (rows·steps, C, H, W), ``steps`` per row, with a label left of each row."""
    a = _unit_images(images)
    if len(a) == 0 or len(a) % steps:
        raise ValueError(f"plot_traversal needs a multiple of steps={steps} images, got {len(a)}")
    s = _upscale_factor(*a.shape[2:])
    pad = 2
    grid = make_grid(_upscale(a, s), nrow=steps, padding=pad)
    th = a.shape[2] * s
    labels = [(pad + r * (th + pad) + th / 2, text) for r, text in enumerate(row_labels or [])]
    return _render_grid(grid, path, title=title, row_labels=labels)


@torch.no_grad()
def traversal_figure(model: Autoencoder, x: torch.Tensor, reference: torch.Tensor, path: str | os.PathLike, *,
                     n_dims: int | None = None, steps: int = 9, span: float = 3.0,
                     title: str | None = None, unit_notes: list[str] | None = None, label: int | None = None,
                     reference_labels: torch.Tensor | None = None,
                     path_label: int | None = None) -> tuple[Path, list[int]]:
    """Sweep the ``n_dims`` most used units (usage measured on ``reference`` rows) around the code of the
    float sample ``x`` (one sample, shaped like the input).  ``unit_notes`` (one string per latent unit, e.g.
    the factors a unit carries) are added to the row labels.  A ``conditional`` model encodes ``x`` with the
    class id ``label`` and decodes the traversal with ``path_label`` (default ``label``; the rule of
    :func:`aekit.latent.traversal_labels` gives both), and ranks its units on ``reference`` with
    ``reference_labels``.  Returns the PNG path and the units shown, in row order."""
    if len(model.input_shape) not in (2, 3):
        raise ValueError(f"traversals are drawn as images; the model's input shape is {model.input_shape}")
    usage, what = unit_usage(model, reference, reference_labels)
    order = [int(j) for j in np.argsort(-usage, kind="stable")]
    dims = order[: n_dims or len(order)]
    imgs = latent.traverse(model, x.to(model.device), dims=dims, steps=steps, span=span, label=label,
                           path_label=path_label).float().cpu()
    labels = [f"z{j}  {what} {usage[j]:.3g}" + (f"\n{unit_notes[j]}" if unit_notes and unit_notes[j] else "")
              for j in dims]
    title = title or f"traversals {-span:g} … {span:g} ({steps} steps), rows by {what}"
    return plot_traversal(imgs, steps, path, row_labels=labels, title=title), dims
