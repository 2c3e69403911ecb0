"""`aekit anomaly RUN --data SPEC [--score recon|elbo] --out scores.csv [--normal-labels 0,1 --fpr 0.05]`.

Writes one row per sample of the scored split (``index,label,score`` and, with normal labels,
``anomalous,flagged``), a histogram of the scores per class (``<out>.png``) and, with normal labels, the
detection metrics (``<out>.json``: AUROC, AUPRC and the threshold at the chosen false-positive rate).

The threshold is computed on the **validation split's normal samples** (data the model was not fitted on and
that is not the scored split) and applied to the scored split; when the validation split has no normal samples
(or is the scored split itself) it falls back to the scored split's normal samples, and says so in the JSON.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DataError

log = logging.getLogger(__name__)


def plot_score_histogram(scores: Any, labels: Any, path: str | Path, *, classes: Sequence[str] | None = None,
                         threshold: float | None = None, normal_labels: Sequence[int] | None = None,
                         xlabel: str = "anomaly score", title: str | None = None) -> Path:
    """Histograms of scores, one outline per class (grey without labels), on shared bins; with
    ``normal_labels`` a second panel compares normal and anomalous samples.  ``threshold`` is drawn."""
    import matplotlib

    from .viz.plots import _figure, _save

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
    if panels == 2:
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


def score_run(run: Any, data: Any, *, split: str = "test", score: str = "recon",
              normal_labels: Sequence[int] | None = None, fpr: float = 0.05,
              batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Scores of ``split`` (and, with ``normal_labels``, the metrics dict; the threshold from val normals)."""
    from .evaluate.anomaly import (
        anomaly_scores,
        detection_metrics,
        get_score,
        rates_at_threshold,
        threshold_at_fpr,
    )

    spec = get_score(score)
    s = data.split(split)
    scores = anomaly_scores(run.model, s.x, score, batch_size)
    labels = None if s.y is None else s.y.numpy()
    info: dict[str, Any] = {"score": score, "unit": spec.unit, "split": split, "n": len(scores),
                            "data": data.name}
    if normal_labels is None:
        return scores, labels, info
    if labels is None:
        raise DataError(f"--normal-labels needs labelled data, but {data.name!r} has none: drop --normal-labels")
    is_anom = ~np.isin(labels, normal_labels)
    info.update({"normal_labels": list(normal_labels), **detection_metrics(scores, is_anom)})
    cal_source = None
    if split != "val" and len(data.val) and data.val.y is not None:
        val_normal = np.isin(data.val.y.numpy(), normal_labels)
        if val_normal.any():
            cal = anomaly_scores(run.model, data.val.x[_index(val_normal)], score, batch_size)
            cal_source = f"val split, {int(val_normal.sum())} normal samples"
    if cal_source is None:
        cal = scores[~is_anom]
        cal_source = f"{split} split (the scored split), {int((~is_anom).sum())} normal samples"
        log.warning("threshold picked on the scored split's own normal samples (no normal samples in the "
                    "validation split)")
    thr = threshold_at_fpr(cal, fpr)
    info.update({"fpr_target": fpr, "threshold": thr, "threshold_from": cal_source,
                 **{f"{k}_at_threshold": v for k, v in rates_at_threshold(scores, is_anom, thr).items()}})
    return scores, labels, info


def _index(mask: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.flatnonzero(mask))


def write_scores_csv(path: Path, scores: np.ndarray, labels: np.ndarray | None, info: dict[str, Any]) -> None:
    from .train.checkpoint import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    normal = info.get("normal_labels")
    w.writerow(["index", "label", "score"] + (["anomalous", "flagged"] if normal is not None else []))
    lab = [""] * len(scores) if labels is None else labels.tolist()
    extra: list[list[int]] = []
    if normal is not None:
        anom = (~np.isin(labels, normal)).astype(int).tolist()
        flag = (scores > info["threshold"]).astype(int).tolist()
        extra = [anom, flag]
    for i, (label, score, *rest) in enumerate(zip(lab, scores.tolist(), *extra)):
        w.writerow([i, label, f"{score:.7g}", *rest])
    atomic_write_text(path, buf.getvalue())


def cmd_anomaly(args: argparse.Namespace) -> int:
    from .cli import _dataset_for
    from .evaluate.anomaly import parse_labels
    from .train import load_run
    from .train.checkpoint import atomic_write_text

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {args.out}: write a .csv file, e.g. --out scores.csv")
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be ≥ 1")
    run = load_run(args.run)
    data = _dataset_for(run, args)
    normal = parse_labels(args.normal_labels, data.classes) if args.normal_labels else None
    scores, labels, info = score_run(run, data, split=args.split, score=args.score, normal_labels=normal,
                                     fpr=args.fpr, batch_size=args.batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_scores_csv(out, scores, labels, info)
    png = out.with_suffix(".png")
    plot_score_histogram(scores, labels, png, classes=data.classes, threshold=info.get("threshold"),
                         normal_labels=normal, xlabel=info["unit"])
    if normal is not None:
        atomic_write_text(out.with_suffix(".json"), json.dumps(info, indent=2))
        log.info("AUROC %.4f  AUPRC %.4f  threshold %.5g at FPR %.3g (from the %s): test TPR %.3f, FPR %.3f",
                 info["auroc"], info["auprc"], info["threshold"], args.fpr, info["threshold_from"],
                 info["tpr_at_threshold"], info["fpr_at_threshold"])
        if args.json:
            sys.stdout.write(json.dumps(info) + "\n")
    elif args.json:
        sys.stdout.write(json.dumps(info) + "\n")
    log.info("wrote %d scores to %s and the histogram to %s", len(scores), out, png)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from .evaluate.anomaly import SCORES

    p = sub.add_parser("anomaly", help="anomaly scores per sample (reconstruction error or -ELBO), AUROC/AUPRC")
    p.add_argument("run")
    p.add_argument("--data", default=None, help="dataset spec (default: the run's own data)")
    p.add_argument("--data-dir", default=None, help="where MNIST-family files are looked up / cached")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default test)")
    p.add_argument("--score", default="recon", choices=list(SCORES),
                   help="; ".join(f"{k}: {v.help}" for k, v in SCORES.items()))
    p.add_argument("--out", required=True, help="scores.csv (the histogram goes to scores.png, metrics to scores.json)")
    p.add_argument("--normal-labels", default=None, metavar="L1,L2",
                   help="labels (or class names) of normal samples: enables AUROC, AUPRC and a threshold")
    p.add_argument("--fpr", type=float, default=0.05,
                   help="target false-positive rate of the threshold, picked on the validation split's normal "
                        "samples (default 0.05)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_anomaly)


__all__ = ["cmd_anomaly", "plot_score_histogram", "register", "score_run", "write_scores_csv"]
