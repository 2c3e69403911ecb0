"""Figures of anomaly scores: histograms per class and normal vs anomalous, with the threshold drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .plots import _figure, _save

__all__ = ["plot_score_histogram"]


def plot_score_histogram(scores: Any, labels: Any, path: str | Path, *, classes: Sequence[str] | None = None,
                         threshold: float | None = None, normal_labels: Sequence[int] | None = None,
                         xlabel: str = "anomaly score", title: str | None = None) -> Path:
    """Histograms of scores, one outline per class (grey without labels), on shared bins; with
    ``normal_labels`` a second panel compares normal and anomalous samples.  ``threshold`` is drawn."""
    import matplotlib

    s = np.asarray(scores, dtype=np.float64)
    y = None if labels is None else np.asarray(labels).astype(np.int64)
    ok = np.isfinite(s)
    s = s[ok]
    y = None if y is None else y[ok]
    if len(s) == 0:
        raise DataError("no finite scores to plot")
    bins = np.histogram_bin_edges(s, bins=int(np.clip(np.sqrt(len(s)), 10, 60)))
    panels = 2 if (normal_labels is not None and y is not None) else 1
    fig = _figure(5.8 * panels, 3.9, layout="tight")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    if y is None:
        ax.hist(s, bins=bins, color="0.45")
    else:
        uniq = np.unique(y)
        cmap = matplotlib.colormaps["tab10" if len(uniq) <= 10 else "tab20"]
        for j, lab in enumerate(uniq):
            name = classes[lab] if classes is not None and 0 <= lab < len(classes) else str(lab)
            ax.hist(s[y == lab], bins=bins, histtype="step", linewidth=1.4, color=cmap(j % cmap.N), label=str(name))
        ax.legend(title="class", fontsize=7, ncol=2 if len(uniq) > 6 else 1)
    ax.set_title(title or f"anomaly scores per class (n = {len(s)})")
    axes_all = list(axes)
    if panels == 2 and y is not None:  # two panels only with labels
        ax2 = axes[1]
        normal = np.isin(y, list(normal_labels or ()))
        ax2.hist(s[normal], bins=bins, alpha=0.6, color="C0", density=True, label=f"normal (n = {int(normal.sum())})")
        ax2.hist(s[~normal], bins=bins, alpha=0.6, color="C3", density=True,
                 label=f"anomalous (n = {int((~normal).sum())})")
        ax2.set_title("normal vs anomalous")
        ax2.legend(fontsize=8)
    for a in axes_all:
        if threshold is not None and np.isfinite(threshold):
            a.axvline(threshold, color="k", linestyle="--", linewidth=1.0, label=None)
        a.set_xlabel(xlabel + ("  (dashed: threshold)" if threshold is not None else ""))
        a.set_ylabel("samples" if a is ax else "density")
        a.grid(alpha=0.3)
    return _save(fig, path)
