"""`aekit experiment one-class --data fashion-mnist`: one-class anomaly detection, one model per class.

For every class c: fit PCA, an AE and a VAE on the training samples of class c only, score the whole test
split (PCA and AE: reconstruction error; VAE: −ELBO, and its reconstruction error as a second column) and
report the AUROC of "not c" (anomalous) against "c" (normal).  The table has one row per class and a final
row with the mean AUROC of each method.  Options (``--set KEY=VALUE``): ``latent_dim``, ``hidden``,
``batch_size``, ``lr``, ``classes`` (e.g. ``0,3,7``), ``max_train`` (cap per class, 0 = all), ``data_dir``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch

from ..config import check, to_dict
from ..data import DataConfig, Dataset, Split, load_data
from ..errors import DataError
from ..evaluate.anomaly import anomaly_scores, detection_metrics
from ..models import build_model, get_spec
from ..train.trainer import TrainConfig, fit
from . import ExperimentContext, ExperimentResult, finding, register, too_short

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OneClassConfig:
    latent_dim: int = 16
    hidden: tuple[int, ...] = (512, 256)
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    classes: tuple[int, ...] = ()  # empty: every class of the training split
    max_train: int = 0  # cap on training samples per class (0 = all)
    data_dir: str | None = None

    def __post_init__(self) -> None:
        check(self.latent_dim >= 1, "one-class: latent_dim must be ≥ 1")
        check(self.epochs >= 1, "one-class: epochs must be ≥ 1")
        check(self.max_train >= 0, "one-class: max_train must be ≥ 0 (0 = all)")


QUICK = {"latent_dim": 4, "hidden": (32,), "epochs": 1, "batch_size": 64, "max_train": 200}

# method name -> (registry model, anomaly score, which config fields it takes)
METHODS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pca": ("pca", "recon", ("latent_dim",)),
    "ae": ("ae", "recon", ("latent_dim", "hidden")),
    "vae": ("vae", "elbo", ("latent_dim", "hidden")),
    "vae_recon": ("vae", "recon", ()),  # the VAE above, scored by reconstruction error instead
}
LABELS = {"pca": "PCA", "ae": "AE", "vae": "VAE (−ELBO)", "vae_recon": "VAE (recon. error)"}


def class_subset(split: Split, label: int, cap: int = 0) -> Split:
    """The samples of ``split`` with label ``label`` (the first ``cap`` of them when cap > 0)."""
    if split.y is None:
        raise DataError("one-class needs labelled data: use a dataset with labels (e.g. fashion-mnist)")
    idx = torch.nonzero(split.y == label).flatten()
    if cap:
        idx = idx[:cap]
    return Split(split.x[idx], split.y[idx])


def _train(model_name: str, fields: dict[str, Any], data: Dataset, cfg: OneClassConfig, seed: int,
           progress: bool) -> Any:
    spec = get_spec(model_name)
    model_cfg = spec.make_config(fields, name=model_name).resolve(data)
    with torch.random.fork_rng(devices=[]):  # the initial weights from the seed; the caller's RNG stays
        torch.manual_seed(seed)
        model = build_model(model_name, model_cfg)
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, device="cpu",
                       progress=progress)
    fit(model, data, tcfg)
    return model.eval()


@register("one-class")
def one_class(ctx: ExperimentContext) -> ExperimentResult:
    """One-class anomaly detection: PCA, an AE and a VAE trained on one class each, AUROC of every score."""
    t0 = time.perf_counter()  # the whole experiment, data load included
    cfg = ctx.config(OneClassConfig, QUICK, "one-class")
    data = load_data(DataConfig(spec=ctx.data, data_dir=cfg.data_dir))
    if data.train.y is None or data.test.y is None:
        raise DataError(f"one-class needs labelled data, {data.name!r} has no labels: use e.g. --data fashion-mnist")
    labels = sorted(int(v) for v in torch.unique(data.train.y))
    classes = list(cfg.classes) or (labels[:2] if ctx.quick else labels)
    bad = [c for c in classes if c not in labels]
    if bad:
        raise DataError(f"one-class: class {bad[0]} is not in the training labels {labels}: fix --set classes=...")
    test_y = data.test.y.numpy()
    rows: list[dict[str, Any]] = []
    model_configs: dict[str, Any] = {}
    for c in classes:
        sub = dataclasses.replace(data, train=class_subset(data.train, c, cfg.max_train),
                                  val=class_subset(data.val, c, cfg.max_train))
        name = data.classes[c] if data.classes and c < len(data.classes) else str(c)
        row: dict[str, Any] = {"class": c, "name": name, "n_train": len(sub.train)}
        trained: dict[str, Any] = {}
        is_anom = test_y != c
        for method, (model_name, score, keys) in METHODS.items():
            if model_name not in trained:
                fields = {k: getattr(cfg, k) for k in keys}
                trained[model_name] = _train(model_name, fields, sub, cfg, ctx.seed, ctx.progress)
                model_configs.setdefault(model_name, to_dict(trained[model_name].config))
            scores = anomaly_scores(trained[model_name], data.test.x, score)
            row[method] = detection_metrics(scores, is_anom)["auroc"]
        rows.append(row)
        log.info("class %s (%s): %s", c, name, "  ".join(f"{m} {row[m]:.3f}" for m in METHODS))
    elapsed = time.perf_counter() - t0
    means = {m: float(np.mean([r[m] for r in rows])) for m in METHODS}
    rows.append({"class": "mean", "name": f"{len(classes)} classes", "n_train": "", **means})
    figure = "one_class_auroc.png"
    _plot(rows[:-1], means, ctx.out / figure)
    short = too_short(ctx, cfg.epochs, OneClassConfig.epochs, "epochs")
    summary = one_class_summary(data.name, len(labels), len(test_y), len(classes), means, short) + (
        f"  Settings: latent_dim {cfg.latent_dim}, hidden {','.join(map(str, cfg.hidden))}, {cfg.epochs} epochs, "
        f"batch {cfg.batch_size}, lr {cfg.lr:g}; {elapsed:.0f} s in total.")
    return ExperimentResult("one-class", rows, summary, [figure],
                            {"config": dataclasses.asdict(cfg), "model_configs": model_configs, "means": means,
                             "seconds": elapsed})


# the finding: a method is best when its mean AUROC leads the runner-up's by at least this much
BEST_MARGIN = 0.01


def one_class_summary(data: str, n_labels: int, n_test: int, n_classes: int, means: dict[str, float],
                      short: str = "") -> str:
    """one-class's summary from the mean AUROC of each method (``pca``, ``ae``, ``vae``, ``vae_recon``)."""
    ranked = sorted(("pca", "ae", "vae"), key=lambda m: -means[m])
    lead = means[ranked[0]] - means[ranked[1]]
    return (
        f"One-class anomaly detection on {data} (normal = one class, anomalous = the other {n_labels - 1}; each "
        f"model trained on that class's training samples only; test split scored, n = {n_test}). Mean AUROC over "
        f"{n_classes} classes: PCA {means['pca']:.3f}, AE {means['ae']:.3f}, VAE (−ELBO) {means['vae']:.3f}, VAE "
        f"(recon) {means['vae_recon']:.3f}.  "
        + finding(f"{LABELS[ranked[0]]} detects best", lead >= BEST_MARGIN,
                  f"it leads {LABELS[ranked[1]]} by {lead:.3f} AUROC (threshold {BEST_MARGIN:g})",
                  negation="no method of PCA, AE and VAE (−ELBO) detects clearly best", short=short)
    )


def _plot(rows: list[dict[str, Any]], means: dict[str, float], path: Any) -> None:
    from ..viz.plots import _figure, _save

    methods = list(METHODS)
    names = [str(r["name"]) for r in rows] + ["mean"]
    x = np.arange(len(names))
    width = 0.8 / len(methods)
    fig = _figure(max(6.0, 0.75 * len(names) + 2.5), 4.0, layout="tight")
    ax = fig.add_subplot()
    for j, m in enumerate(methods):
        vals = [r[m] for r in rows] + [means[m]]
        ax.bar(x + (j - (len(methods) - 1) / 2) * width, vals, width, label=LABELS.get(m, m), color=f"C{j}")
    ax.axhline(0.5, color="0.4", linestyle=":", linewidth=1)
    tilt = max(len(n) for n in names) > 4
    ax.set_xticks(x, names, rotation=40 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
    ax.set_ylim(0.0, 1.13)
    ax.set_yticks(np.linspace(0.0, 1.0, 6))
    ax.set_ylabel("AUROC (normal = the class)")
    ax.set_title("one-class anomaly detection")
    ax.legend(fontsize=8, ncol=len(methods), loc="upper center", frameon=False)
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)
