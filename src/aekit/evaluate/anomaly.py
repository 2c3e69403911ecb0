"""Anomaly scores and detection metrics as pure functions (no files, no CLI).

A score is *higher for more anomalous* samples:

- ``recon``: the sum of squared errors of the deterministic reconstruction per sample (the unit of
  ``sse_per_image``: inputs in [0, 1] for images, standardised units for tables), for every model;
- ``elbo``: −ELBO per sample in nats (VAEs): −log p(x|z) + KL(q(z|x) ‖ p(z)), averaged over ``samples``
  posterior draws from a fixed seed, so scores are reproducible.

A ``conditional`` model (a cVAE) scores a row with its label when ``labels=`` are given.  Without labels (``aekit
anomaly`` never needs an anomaly's label) the K per-class scores s_c(x) are combined by what the score is
(:func:`combine_class_scores`):

- a score in nats (a negative log-likelihood or its bound: ``elbo``) is marginalised over the classes,
  −log Σ_c p(c)·exp(−s_c(x)) = −logsumexp_c(−s_c(x) + log p(c)), with p(c) the class frequencies of the training
  split (:func:`score_run`) or uniform when they are not known: the score of p(x) = Σ_c p(c) p(x|c)
  (with the ELBO an upper bound on −log p(x), as each −ELBO_c bounds −log p(x|c));
- any other score (``recon``, squared error: no likelihood to add up) takes the lowest over the classes, the
  class that explains the row best.

Detection metrics take "anomalous" as the positive class: AUROC and AUPRC (average precision) from
scikit-learn, and :func:`threshold_at_fpr` picks the threshold whose false-positive rate on a set of *normal*
scores is at most the target (flag = score > threshold).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..data import iterate_batches, to_float
from ..errors import ConfigError, DataError
from ..models.base import ID_FORM, INTEGER, Autoencoder, label_id
from ..registry import Registry
from .metrics import sse_per_sample

__all__ = [
    "SCORES", "anomaly_scores", "class_frequencies", "combine_class_scores", "detection_metrics", "neg_elbo_scores",
    "parse_labels", "rates_at_threshold", "recon_scores", "score_run", "threshold_at_fpr", "write_scores_csv",
]


def _model_input(x: torch.Tensor, model: Autoencoder) -> torch.Tensor:
    """uint8 images → [0, 1]; floats in the model's own dtype (float64 models score float64 tables)."""
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    return (to_float(x) if x.dtype == torch.uint8 else x).to(device=model.device, dtype=dtype)


@torch.no_grad()
def recon_scores(model: Autoencoder, x: torch.Tensor, batch_size: int = 1000, labels: torch.Tensor | None = None,
                 **_: Any) -> torch.Tensor:
    """Per-sample SSE of the deterministic reconstruction, float64 (N,) (``labels``: a conditional model's)."""
    model.eval()
    out = []
    for idx in iterate_batches(len(x), batch_size, shuffle=False):
        xb = _model_input(x[idx], model)
        kw = model.label_kwargs(None if labels is None else labels[idx.to(labels.device)])
        out.append(sse_per_sample(model.reconstruct(xb, **kw), xb).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def neg_elbo_scores(model: Autoencoder, x: torch.Tensor, batch_size: int = 1000, samples: int = 4,
                    seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
    """−ELBO per sample in nats, float64 (N,), averaged over ``samples`` draws z ~ q(z|x) (fixed ``seed``;
    sample i always gets the same noise, whatever the batch size)."""
    if not model.posterior:
        raise ConfigError(f"--score elbo needs a model with a posterior and a likelihood (a VAE), not "
                          f"{model.registry_name or type(model).__name__}: use --score recon")
    model.eval()
    # the noise of every sample is drawn up front, so a sample's score does not depend on the batching
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(max(1, samples), len(x), model.latent_dim, generator=g, dtype=torch.float64)
    out = []
    for idx in iterate_batches(len(x), batch_size, shuffle=False):
        xb = _model_input(x[idx], model)
        kw = model.label_kwargs(None if labels is None else labels[idx.to(labels.device)])
        q = model.encode(xb, **kw)
        e = eps[:, idx].to(device=q.mean.device, dtype=q.mean.dtype)
        nll = torch.stack([model.nll(model.decode_logits(q.mean + q.std * e_k, **kw), xb) for e_k in e]).mean(0)
        out.append((nll + q.kl()).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@dataclasses.dataclass(frozen=True)
class ScoreSpec:
    fn: Callable[..., torch.Tensor]
    help: str
    unit: str
    nats: bool = False  # a negative log-likelihood (or its bound) in nats: label-free conditional scores marginalise


SCORES: Registry[ScoreSpec] = Registry("anomaly score")
SCORES.register("recon", ScoreSpec(recon_scores, "reconstruction error (sum of squared errors per sample; a "
                                   "conditional run without labels: the lowest over its classes)",
                                   "sum of squared errors per sample"))
SCORES.register("elbo", ScoreSpec(neg_elbo_scores, "−ELBO per sample in nats (VAE; a conditional run: marginal over "
                                  "its classes, −log Σ_c p(c)·exp(−ELBO score of class c), p(c) the training class "
                                  "frequencies)", "−ELBO per sample (nats)", nats=True))


def get_score(name: str) -> ScoreSpec:
    return SCORES.get_entry(name)


def class_frequencies(y: Any, num_classes: int) -> np.ndarray | None:
    """p(c): the share of each class 0 … K−1 among the (training) labels ``y``; None without labels."""
    if y is None or len(y) == 0:
        return None
    ids = np.asarray(y, dtype=np.int64).reshape(-1)
    ids = ids[(ids >= 0) & (ids < num_classes)]
    if len(ids) == 0:
        return None
    return np.bincount(ids, minlength=num_classes)[:num_classes] / len(ids)


def combine_class_scores(per_class: Any, nats: bool, class_prior: Any = None) -> np.ndarray:
    """One label-free score per row from the scores of every class, ``per_class`` (K, N), float64 (N,).

    ``nats``: the scores are negative log-likelihoods (or bounds) in nats, combined as the marginal
    −log Σ_c p(c)·exp(−s_c) = −logsumexp_c(−s_c + log p(c)), ``class_prior`` p(c) (K,) the class frequencies
    (counts are normalised; a class with p(c) = 0 drops out) or uniform when None.  Otherwise (squared errors) the
    lowest score over the classes."""
    s = torch.as_tensor(np.asarray(per_class, dtype=np.float64))
    if s.ndim != 2:
        raise ValueError(f"per-class scores must be (K, N), got shape {tuple(s.shape)}")
    k = s.shape[0]
    if not nats:
        return s.min(0).values.numpy()
    if class_prior is None:
        prior = torch.full((k,), 1.0 / k, dtype=torch.float64)
    else:
        prior = torch.as_tensor(np.asarray(class_prior, dtype=np.float64)).reshape(-1)
        if len(prior) != k or not bool(torch.isfinite(prior).all()) or bool((prior < 0).any()) or prior.sum() <= 0:
            raise ConfigError(f"class prior {prior.tolist()}: give {k} non-negative class frequencies, not all 0")
        prior = prior / prior.sum()
    return (-torch.logsumexp(-s + prior.log()[:, None], 0)).numpy()


def anomaly_scores(model: Autoencoder, x: torch.Tensor, score: str = "recon", batch_size: int = 1000,
                   class_prior: Any = None, **kwargs: Any) -> np.ndarray:
    """Scores (higher = more anomalous) of every row of ``x`` (uint8 images or float tables), float64 (N,).

    A ``conditional`` model scores with ``labels=`` (N,) when given; without them every class is scored and
    :func:`combine_class_scores` makes one score of them (a score in nats: the marginal over the classes with
    ``class_prior`` p(c), uniform when None; other scores: the lowest over the classes), so an anomaly's label is
    never needed."""
    spec = get_score(score)
    if model.conditional and kwargs.get("labels") is None:
        kwargs.pop("labels", None)
        per_class = [spec.fn(model, x, batch_size=batch_size, labels=torch.full((len(x),), k, dtype=torch.long),
                             **kwargs) for k in range(len(model.label_names))]
        return combine_class_scores(torch.stack(per_class).numpy(), spec.nats, class_prior)
    return spec.fn(model, x, batch_size=batch_size, **kwargs).numpy()


def parse_labels(text: str, classes: Sequence[str] | None = None) -> list[int]:
    """``"0,1"`` (or class names, ``"T-shirt/top,Trouser"``) → label ids; bad tokens raise ConfigError.

    The rule of :meth:`Autoencoder.label_index <aekit.models.base.Autoencoder.label_index>`: a token equal to a
    class name is that class (also an integer naming a class of another id, as a table's label values −1, 3, 7
    are ids 0, 1, 2), ``id:N`` is id N, and any other integer is an id — unless some class names are integers
    other than their ids, where a bare integer naming no class is an error (write ``id:N``).  A name matches in
    any letter case when only one class matches it so (:func:`~aekit.models.base.class_named`); with ``classes``
    given, an id outside 0 … K−1 is an error naming the valid labels (:func:`~aekit.models.base.label_id`).
    Without class names (None or empty) only integers and ``id:N`` are labels, and ids are not checked here:
    :func:`score_run` warns of a normal label that no sample has."""
    out: list[int] = []
    names = tuple(classes) if classes else None  # no class names (or none known): integers and id:N only
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        if names is not None:
            out.append(label_id(tok, names, "--normal-labels", of="this data"))
            continue
        m = ID_FORM.fullmatch(tok)
        if not (m or INTEGER.fullmatch(tok)):
            raise ConfigError(f"--normal-labels: {tok!r} is not a label: this data has no class names, so give "
                              "class ids (integers, or id:N), e.g. --normal-labels 0,1")
        out.append(int(m.group(1) if m else tok))
    if not out:
        raise ConfigError("--normal-labels is empty: give the labels of normal samples, e.g. --normal-labels 0,1")
    return sorted(set(out))


def detection_metrics(scores: Any, is_anomaly: Any) -> dict[str, float | int]:
    """AUROC and AUPRC (average precision) with anomalies as the positive class."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    s = np.asarray(scores, dtype=np.float64)
    a = np.asarray(is_anomaly, dtype=bool)
    n_anom, n_norm = int(a.sum()), int((~a).sum())
    if n_anom == 0 or n_norm == 0:
        raise DataError(f"AUROC needs normal and anomalous samples, got {n_norm} normal and {n_anom} anomalous: "
                        "check --normal-labels against the labels of the scored split")
    if not np.isfinite(s).all():
        raise DataError("some anomaly scores are not finite (NaN or inf): the model diverged; retrain it")
    return {"auroc": float(roc_auc_score(a, s)), "auprc": float(average_precision_score(a, s)),
            "n_normal": n_norm, "n_anomalous": n_anom}


def threshold_at_fpr(normal_scores: Any, fpr: float) -> float:
    """The smallest threshold t among the scores with at most ⌊fpr·n⌋ normal scores above it (flag = score > t).

    On the calibration scores themselves the false-positive rate is therefore ≤ ``fpr``.
    """
    if not 0.0 <= fpr < 1.0:
        raise ConfigError(f"--fpr {fpr}: choose a false-positive rate in [0, 1), e.g. --fpr 0.05")
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if len(s) == 0:
        raise DataError("no normal samples to pick a threshold from: check --normal-labels")
    k = int(np.floor(fpr * len(s) + 1e-9))  # normal samples allowed above the threshold
    return float(s[len(s) - 1 - k])


def rates_at_threshold(scores: Any, is_anomaly: Any, threshold: float) -> dict[str, float]:
    """True/false-positive rates and precision of the rule ``score > threshold``."""
    s = np.asarray(scores, dtype=np.float64)
    a = np.asarray(is_anomaly, dtype=bool)
    flag = s > threshold
    tp, fp = int((flag & a).sum()), int((flag & ~a).sum())
    return {"tpr": tp / max(1, int(a.sum())), "fpr": fp / max(1, int((~a).sum())),
            "precision": tp / max(1, tp + fp), "flagged": int(flag.sum())}


# ------------------------------------------------------------------------------------------------ a run's scores


def score_run(run: Any, data: Any, *, split: str = "test", score: str = "recon",
              normal_labels: Sequence[int] | None = None, fpr: float = 0.05,
              batch_size: int = 1000, train_labels: Any = "data",
              no_labels_reason: str = "no training labels") -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Scores of ``split`` (and, with ``normal_labels``, the metrics dict; the threshold from val normals).

    The threshold is computed on the **validation split's normal samples** (data the model was not fitted on
    and that is not the scored split) and applied to the scored split; when the validation split has no normal
    samples (or is the scored split itself) it falls back to the scored split's normal samples, and says so in
    ``info["threshold_from"]``.

    A ``conditional`` run's rows are scored without their labels (:func:`anomaly_scores`); a score in nats is the
    marginal over the classes with p(c) = the class frequencies of the run's training labels (``info["class_prior"]``),
    any other the lowest over the classes; ``info["conditional"]`` says which.  ``train_labels``: those labels
    (an array of class ids), ``"data"`` (the default) for ``data``'s training split — right when ``data`` is the
    run's own data — or None for a uniform p(c); ``no_labels_reason`` says why in ``info["conditional"]`` when
    there are none (e.g. the run's data could not be read).
    """
    import logging

    spec = get_score(score)
    s = data.split(split)
    prior, how = None, None
    if run.model.conditional:  # rows are scored without their labels (see combine_class_scores)
        k = len(run.model.label_names)
        if isinstance(train_labels, str) and train_labels == "data":
            train_labels = None if data.train.y is None else data.train.y.numpy()
        prior = class_frequencies(train_labels, k) if spec.nats else None
        if spec.nats and prior is None:
            if train_labels is not None and len(train_labels):
                no_labels_reason = f"no training label is a class id 0 … {k - 1} of this run"
            logging.getLogger(__name__).warning("p(c) of the marginal score is uniform: %s", no_labels_reason)
        how = (("marginal over the classes, −log Σ_c p(c)·exp(−score_c), p(c) = "
                + ("the training labels' class frequencies" if prior is not None else f"uniform ({no_labels_reason})"))
               if spec.nats else "lowest score over the classes (not a likelihood: no marginal)")
    scores = anomaly_scores(run.model, s.x, score, batch_size, class_prior=prior)
    labels = None if s.y is None else s.y.numpy()
    info: dict[str, Any] = {"score": score, "unit": spec.unit, "split": split, "n": len(scores),
                            "data": data.name}
    if how is not None:
        info["conditional"] = how
    if prior is not None:
        info["class_prior"] = [round(float(p), 6) for p in prior]
    if normal_labels is None:
        return scores, labels, info
    if labels is None:
        raise DataError(f"--normal-labels needs labelled data, but {data.name!r} has none: drop --normal-labels")
    absent = sorted(set(normal_labels) - {int(v) for v in np.unique(labels)})
    if absent:
        names = data.classes or ()
        shown = ", ".join(f"{c} ({names[c]})" if 0 <= c < len(names) else str(c) for c in absent)
        logging.getLogger(__name__).warning("--normal-labels: class id(s) %s occur in no sample of the %s split: "
                                            "check --normal-labels and --split", shown, split)
    is_anom = ~np.isin(labels, normal_labels)
    info.update({"normal_labels": list(normal_labels), **detection_metrics(scores, is_anom)})
    cal_source = None
    if split != "val" and len(data.val) and data.val.y is not None:
        val_normal = np.isin(data.val.y.numpy(), normal_labels)
        if val_normal.any():
            cal = anomaly_scores(run.model, data.val.x[torch.from_numpy(np.flatnonzero(val_normal))], score,
                                 batch_size, class_prior=prior)
            cal_source = f"val split, {int(val_normal.sum())} normal samples"
    if cal_source is None:
        cal = scores[~is_anom]
        cal_source = f"{split} split (the scored split), {int((~is_anom).sum())} normal samples"
        logging.getLogger(__name__).warning("threshold picked on the scored split's own normal samples (no normal "
                                            "samples in the validation split)")
    thr = threshold_at_fpr(cal, fpr)
    info.update({"fpr_target": fpr, "threshold": thr, "threshold_from": cal_source,
                 **{f"{k}_at_threshold": v for k, v in rates_at_threshold(scores, is_anom, thr).items()}})
    return scores, labels, info


def write_scores_csv(path: Any, scores: np.ndarray, labels: np.ndarray | None, info: dict[str, Any]) -> None:
    """One row per sample: ``index,label,score`` and, with normal labels, ``anomalous,flagged`` (atomic write)."""
    import csv
    import io

    from ..fileio import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    normal = info.get("normal_labels")
    w.writerow(["index", "label", "score"] + (["anomalous", "flagged"] if normal is not None else []))
    lab = [""] * len(scores) if labels is None else labels.tolist()
    extra: list[list[int]] = []
    if normal is not None:
        if labels is None:  # score_run records normal_labels only for labelled data
            raise DataError("scores with normal_labels need the labels to write the anomalous column")
        anom = (~np.isin(labels, normal)).astype(int).tolist()
        flag = (scores > info["threshold"]).astype(int).tolist()
        extra = [anom, flag]
    for i, (label, score, *rest) in enumerate(zip(lab, scores.tolist(), *extra)):
        w.writerow([i, label, f"{score:.7g}", *rest])
    atomic_write_text(path, buf.getvalue())
