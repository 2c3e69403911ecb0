"""Figures (PNG, matplotlib Agg without pyplot) and the static HTML report of a run."""

from __future__ import annotations

from .plots import (
    loss_terms,
    make_grid,
    plot_error_histogram,
    plot_interpolation,
    plot_latent_scatter,
    plot_losses,
    plot_manifold,
    plot_reconstructions,
    plot_samples,
    project_2d,
    save_image_grid,
)
from .report import REPORT, write_report

__all__ = [
    "REPORT",
    "loss_terms",
    "make_grid",
    "plot_error_histogram",
    "plot_interpolation",
    "plot_latent_scatter",
    "plot_losses",
    "plot_manifold",
    "plot_reconstructions",
    "plot_samples",
    "project_2d",
    "save_image_grid",
    "write_report",
]
