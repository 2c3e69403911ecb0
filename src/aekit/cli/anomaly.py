"""``aekit anomaly RUN [--score recon|elbo] --out scores.csv [--normal-labels 0,1 --fpr 0.05]``.

Writes one row per sample of the scored split (``index,label,score`` and, with normal labels,
``anomalous,flagged``), a histogram of the scores per class (``<out>.png``) and, with normal labels, the
detection metrics (``<out>.json``: AUROC, AUPRC and the threshold at the chosen false-positive rate, picked on
the validation split's normal samples: see :func:`aekit.evaluate.anomaly.score_run`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import AekitError, ConfigError
from ._common import add_data_flags, check_out_file, dataset_for

log = logging.getLogger("aekit")


def _score_help(argv: Sequence[str]) -> str:
    """The registered scores, one clause each (imported only for --help: the scores' module imports torch)."""
    if "-h" not in argv and "--help" not in argv:
        return "anomaly score (default recon)"
    from ..evaluate.anomaly import SCORES

    return "; ".join(f"{k}: {v.help}" for k, v in SCORES.items()) + " (default recon)"


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory")
    add_data_flags(p, split_help="split to score (default test)")
    p.add_argument("--score", default="recon", metavar="NAME", help=_score_help(argv))
    p.add_argument("--out", required=True, help="scores.csv (the histogram goes to scores.png, metrics to scores.json)")
    p.add_argument("--normal-labels", default=None, metavar="L1,L2",
                   help="labels (class names, or ids; id:N is always id N) of normal samples: enables AUROC, AUPRC "
                        "and a threshold")
    p.add_argument("--fpr", type=float, default=0.05,
                   help="target false-positive rate of the threshold, picked on the validation split's normal "
                        "samples (default 0.05)")
    p.add_argument("--batch-size", type=int, default=1000, help="samples per forward pass (default 1000)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


NO_LABELS = "no training labels"


def _run_train_labels(run: Any) -> tuple[Any, str]:
    """The training labels of the run's own data (scoring other ``--data``: p(c) stays the run's), or None
    (a uniform p(c)) when that data cannot be read here, with what to say about a uniform p(c) (score_run logs
    it and writes it to scores.json)."""
    try:
        y = run.dataset().train.y
    except AekitError as e:
        return None, f"the run's own training data could not be read: {e}"
    return (None, "the run's own data has no labels") if y is None else (y.numpy(), NO_LABELS)


def cmd_anomaly(args: argparse.Namespace) -> int:
    from ..evaluate.anomaly import get_score, parse_labels, score_run, write_scores_csv
    from ..train import load_run
    from ..train.checkpoint import atomic_write_text
    from ..viz.anomaly import plot_score_histogram

    out = check_out_file(args.out, (".csv",), also=(".png", ".json"))  # before any work
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be ≥ 1")
    get_score(args.score)  # an unknown score fails before the run is loaded
    run = load_run(args.run)
    data = dataset_for(run, args)
    normal = parse_labels(args.normal_labels, data.classes) if args.normal_labels else None
    train_labels: Any = "data"  # p(c) of a conditional run's label-free score: its own training labels
    reason = NO_LABELS
    if run.model.conditional and args.data and get_score(args.score).nats:
        train_labels, reason = _run_train_labels(run)
    scores, labels, info = score_run(run, data, split=args.split, score=args.score, normal_labels=normal,
                                     fpr=args.fpr, batch_size=args.batch_size, train_labels=train_labels,
                                     no_labels_reason=reason)
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
    log.info("wrote %d scores to %s and the histogram to %s", len(scores), out, png)
    return 0
