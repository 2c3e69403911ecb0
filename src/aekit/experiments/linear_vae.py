"""``linear-vae``: a linear Gaussian VAE is probabilistic PCA (shared noise σ²) or factor analysis (per-dim Ψ).

``aekit experiment linear-vae --data digits --out DIR`` trains the VAE with a linear encoder x → [μ, log σ²]
(``hidden=()``), a linear decoder z → Wz + b with no output activation, a Gaussian p(x|z) and

- (a) one shared learned noise variance σ² (``learn_scale=True``): the generative model N(b, WWᵀ + σ²I) is
  probabilistic PCA (Tipping & Bishop 1999), whose maximum-likelihood solution is in closed form:
  W = U_q (Λ_q − σ²I)^½ (any rotation R on the right), σ² = the mean of the d − q discarded eigenvalues of the
  training covariance S (1/N: the ML estimate), b = the training mean;
- (b) a learned variance per dimension (``scale_shape="per-dim"``): N(b, WWᵀ + Ψ) is factor analysis, whose
  maximum-likelihood fit has no closed form: the reference is EM on the training covariance (Rubin & Thayer
  1982, :func:`fa_em`, from the pPCA fit until an iteration gains < 10⁻⁹ nats per sample), with ψᵢ ≥ e⁻¹⁴, the
  VAE's own floor (``VAE.nll`` clamps log σ at −7).  scikit-learn's ``FactorAnalysis`` with its defaults is a
  check column: it stops earlier (tol 10⁻² on the total log-likelihood; on the digits 0.015 nats per training
  sample below the EM fit, 0.5 per test sample), and floors ψ at 10⁻¹².

This is the one model whose log-likelihood is known exactly, so the ELBO and the IWAE estimate
(:func:`aekit.evaluate.likelihood.iwae_nll`) can be checked against it.  Everything is fitted on the training
split; the figures are nats per sample on the test split:

- ``elbo``: the test ELBO of the trained VAE, in closed form (for a linear decoder E_q[log p(x|z)] is exact:
  −½ Σᵢ [((xᵢ − (Wμ + b)ᵢ)² + Σⱼ Wᵢⱼ² sⱼ²) / σᵢ² + log 2πσᵢ²], no sampling noise); ``elbo_mc`` is
  :func:`aekit.evaluate.evaluate`'s Monte-Carlo ELBO for comparison;
- ``iwae``: −``nll`` of the IWAE estimate with ``iwae_samples`` importance samples;
- ``vae_exact``: the exact log p(x) of the trained VAE's own generative model N(b, WWᵀ + Ψ): the ELBO and the
  IWAE estimate are lower bounds on it (a value above it, beyond its sampling error, is a bug);
- ``closed_form``: the maximum-likelihood model's test log-likelihood (pPCA's formula; FA's EM fit);
  ``sklearn_score``: scikit-learn's ``PCA(n_components=q).score`` / ``FactorAnalysis.score`` (pPCA with the
  1/(N − 1) covariance, hence not identical to the 1/N ML formula);
- the principal angles (largest, mean) between the column space of the decoder's W and PCA's top-q subspace
  (for FA also the ML FA loadings' subspace).

**Constant columns.**  Pixels that never vary on the training split (digits: 3 of 64) have an unbounded
factor-analysis likelihood (Ψᵢ → 0); they are dropped for every method alike, and the dimension d is the rest.

**q** (``latent_dim = 0``): the smallest q whose principal components hold 90% of the training variance
(``variance_share``), the same q for (a) and (b).  The closed-form validation log-likelihood cannot choose q on
the digits: it rises all the way to q = d − 1 (the quantised, nearly constant border pixels reward ever smaller
noise); its table is in ``extra.json`` and the summary names its maximum.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import numpy as np
import torch

from ..config import check
from ..data import DataConfig, Dataset, load_data, to_float
from ..data.base import Split
from ..errors import DataError
from ..evaluate import evaluate
from ..evaluate.likelihood import iwae_nll
from ..evaluate.metrics import principal_angles
from ..models.vae import VAE, VAEConfig
from ..train.callbacks import Callback
from ..train.config import TrainConfig
from ..train.trainer import fit
from . import ExperimentContext, ExperimentResult, finding, register, steps_of, too_short

log = logging.getLogger(__name__)

LOG_2PI = math.log(2.0 * math.pi)

# the findings' thresholds (nats per test sample; degrees)
GAP_NATS = 0.5  # the ELBO / IWAE estimate within this of the exact maximum-likelihood test log-likelihood
SPAN_DEGREES = 5.0  # (a): the decoder spans PCA's top-q subspace when its largest principal angle is below this
MIN_STEPS_FINDING = 5000  # a run with fewer optimiser steps is too short to tell


# ----------------------------------------------------------------------------------------------- closed forms


def gaussian_loglik(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x | mean, cov) per row of ``x`` (N, d), float64 nats, by a Cholesky factor of ``cov``."""
    x, mean, cov = (np.asarray(a, dtype=np.float64) for a in (x, mean, cov))
    chol = np.linalg.cholesky(cov)
    sol = np.linalg.solve(chol, (x - mean).T)  # L⁻¹(x − mean), (d, N)
    logdet = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * (sol**2).sum(0) - 0.5 * logdet - 0.5 * x.shape[1] * LOG_2PI


def ppca_fit(x: np.ndarray, q: int, ddof: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Maximum-likelihood probabilistic PCA (Tipping & Bishop 1999, eqs. 7–8) of the rows of ``x`` (N, d):
    ``(mean, W, σ²)`` with W = U_q (Λ_q − σ²I)^½ and σ² = the mean of the d − q smallest eigenvalues of the
    covariance S = XcᵀXc / (N − ddof) (ddof 0: the ML estimate; 1: scikit-learn's)."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    check(1 <= q < d, f"pPCA: q = {q} must be in 1 … {d - 1} (below the dimension {d})")
    mean = x.mean(0)
    xc = x - mean
    evals, evecs = np.linalg.eigh(xc.T @ xc / (n - ddof))
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    sigma2 = float(evals[q:].mean())
    w = evecs[:, :q] * np.sqrt(np.clip(evals[:q] - sigma2, 0.0, None))
    return mean, w, sigma2


def ppca_loglik(x: np.ndarray, mean: np.ndarray, w: np.ndarray, sigma2: float) -> np.ndarray:
    """log N(x | mean, WWᵀ + σ²I) per row, float64 nats."""
    return gaussian_loglik(x, mean, w @ w.T + sigma2 * np.eye(len(mean)))


# the VAE's noise floor: VAE.nll clamps log σ at −7, so σ² ≥ e⁻¹⁴; factor analysis gets the same floor on Ψ
PSI_FLOOR = math.exp(-14.0)


def fa_loglik_cov(s: np.ndarray, w: np.ndarray, psi: np.ndarray) -> float:
    """The average log-likelihood −½ [d log 2π + log|C| + tr(C⁻¹S)] of data with ML covariance ``s`` under
    N(·, WWᵀ + diag(ψ)), by the Woodbury identity and the determinant lemma (O(d²q))."""
    d, q = w.shape
    pw = w / psi[:, None]  # Ψ⁻¹W
    a = np.eye(q) + w.T @ pw
    sign, logdet_a = np.linalg.slogdet(a)
    trace = float((np.diag(s) / psi).sum() - np.trace(np.linalg.solve(a, pw.T @ s @ pw)))
    return float(-0.5 * (d * LOG_2PI + np.log(psi).sum() + logdet_a + trace))


def fa_em(x: np.ndarray, q: int, tol: float = 1e-9, max_iter: int = 50000,
          floor: float = PSI_FLOOR) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Maximum-likelihood factor analysis by EM on the covariance (Rubin & Thayer 1982), started from the pPCA
    fit: ``(mean, W, ψ, iterations)``; the log-likelihood is checked every 10 iterations, and EM stops when 10
    iterations together raise the average log-likelihood by less than ``tol`` nats (stricter than a per-iteration
    gain < ``tol``), or at ``max_iter``; ψ ≥ ``floor``.  O(d²q) per iteration, independent of N."""
    x = np.asarray(x, dtype=np.float64)
    mean, w, s2 = ppca_fit(x, q)
    xc = x - mean
    s = xc.T @ xc / len(x)
    diag = np.diag(s).copy()
    psi = np.maximum(np.full(len(diag), s2), floor)
    old = -math.inf
    it = 0
    for it in range(1, max_iter + 1):
        pw = w / psi[:, None]
        a = np.eye(q) + w.T @ pw
        beta = np.linalg.solve(a, pw.T)  # (q, d) = Wᵀ C⁻¹
        sbt = s @ beta.T  # (d, q)
        ezz = np.eye(q) - beta @ w + beta @ sbt
        w = np.linalg.solve(ezz, sbt.T).T  # S βᵀ E[zzᵀ]⁻¹
        psi = np.maximum(diag - (w * sbt).sum(1), floor)
        if it % 10 == 0 or it == max_iter:
            ll = fa_loglik_cov(s, w, psi)
            if ll - old < tol:
                break
            old = ll
    return mean, w, psi, it


def fa_fit(x: np.ndarray, q: int, seed: int = 0, tol: float = 1e-2, max_iter: int = 20000) -> Any:
    """scikit-learn's maximum-likelihood factor analysis (exact SVD, ``tol`` on the log-likelihood change)."""
    import warnings

    from sklearn.decomposition import FactorAnalysis

    fa = FactorAnalysis(n_components=q, tol=tol, max_iter=max_iter, svd_method="lapack", random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fa.fit(np.asarray(x, dtype=np.float64))
    if any("did not converge" in str(w.message) for w in caught):
        log.warning("FactorAnalysis(q=%d) did not converge in %d iterations (tol %g)", q, max_iter, tol)
    return fa


# ----------------------------------------------------------------------------------------------- the VAE's side


def linear_vae_config(q: int, d: int, scale_shape: str) -> VAEConfig:
    """The linear Gaussian VAE of this experiment: no hidden layers, a learned shared or per-dim scale."""
    return VAEConfig(input_shape=(d,), hidden=(), latent_dim=q, activation="linear", likelihood="gaussian",
                     learn_scale=True, scale_shape=scale_shape)  # type: ignore[arg-type]


def decoder_params(model: VAE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W (d, q), b (d,), noise variances (d,)) of a linear VAE's generative model, float64
    (:meth:`aekit.models.vae.VAE.linear_gaussian`)."""
    w, b, var = model.linear_gaussian()
    return w.numpy(), b.numpy(), var.numpy()


@torch.no_grad()
def analytic_elbo(model: VAE, x: torch.Tensor) -> np.ndarray:
    """The ELBO of a linear Gaussian VAE per row of ``x`` (N, d), float64 nats, with no sampling:
    E_q[log p(x|z)] − KL(q ‖ N(0, I)), E_q[log p(x|z)] = −½ Σᵢ [((xᵢ − (Wμ + b)ᵢ)² + Σⱼ Wᵢⱼ² sⱼ²)/σᵢ² + log 2πσᵢ²]."""
    model.eval()
    w, b, var = (torch.from_numpy(a) for a in decoder_params(model))
    q = model.encode(x.to(model.device).float())
    mu, s2 = q.mean.double().cpu(), q.logvar.double().exp().cpu()
    xd = x.double().cpu()
    resid = (xd - mu @ w.T - b).pow(2) + s2 @ (w.pow(2)).T  # (N, d)
    expected = -0.5 * (resid / var + torch.log(var) + LOG_2PI).sum(1)
    kl = 0.5 * (mu.pow(2) + s2 - 1.0 - torch.log(s2)).sum(1)
    return (expected - kl).numpy()


def vae_exact_loglik(model: VAE, x: np.ndarray) -> np.ndarray:
    """The exact log p(x) of a linear Gaussian VAE's generative model, N(b, WWᵀ + diag(σᵢ²)), per row."""
    w, b, var = decoder_params(model)
    return gaussian_loglik(x, b, w @ w.T + np.diag(var))


class _Curve(Callback):
    """Every ``every`` epochs (and at the last): the test ELBO (closed form) and IWAE estimate of the model."""

    def __init__(self, x: torch.Tensor, every: int, epochs: int, k: int, seed: int):
        self.x, self.every, self.epochs, self.k, self.seed = x, every, epochs, k, seed
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, trainer: Any, row: dict[str, Any]) -> None:
        epoch = int(row["epoch"])
        if epoch % self.every and epoch != self.epochs and epoch != 1:
            return
        model = trainer.model
        with torch.no_grad():
            elbo = float(analytic_elbo(model, self.x).mean())
            iwae = -float(iwae_nll(model, self.x, self.k, seed=self.seed).mean()) if self.k else math.nan
        model.train()
        self.rows.append({"epoch": epoch, "elbo": elbo, "iwae": iwae})


# ----------------------------------------------------------------------------------------------- experiment


@dataclasses.dataclass(frozen=True)
class LinearVaeConfig:
    latent_dim: int = 0  # q; 0: the smallest q whose top-q principal components hold variance_share of the variance
    variance_share: float = 0.9  # of the training split's total variance (the rule for latent_dim = 0)
    max_latent_dim: int = 0  # the largest q of the validation log-likelihood table (0: d − 1)
    epochs: int = 0  # 0: enough for min_steps optimiser steps
    min_steps: int = 20000
    batch_size: int = 128
    lr: float = 3e-3  # Adam, cosine decay to 0
    iwae_samples: int = 5000
    curve_points: int = 25  # ELBO / IWAE evaluations along training (the figure)
    curve_iwae_samples: int = 500
    curve_rows: int = 2000  # the figure's curves are on the first this many test samples (the whole test split if fewer)
    fa_tol: float = 1e-9  # EM for factor analysis: stop when an iteration gains less (nats per sample)
    sklearn_fa_max_elements: int = 2_000_000  # scikit-learn's FactorAnalysis as a check on data up to N·d this
    data_dir: str | None = None
    subsample: int | None = None

    def __post_init__(self) -> None:
        check(self.latent_dim >= 0, "linear-vae: latent_dim must be ≥ 0 (0: from variance_share)")
        check(0 < self.variance_share < 1, "linear-vae: variance_share must be in (0, 1), e.g. 0.9")
        check(self.epochs >= 0 and self.min_steps >= 0, "linear-vae: epochs and min_steps must be ≥ 0")
        check(self.iwae_samples >= 1, "linear-vae: iwae_samples must be ≥ 1, e.g. --set iwae_samples=5000")
        check(self.curve_points >= 1 and self.curve_iwae_samples >= 0 and self.curve_rows >= 1,
              "linear-vae: curve_points ≥ 1, curve_iwae_samples ≥ 0 and curve_rows ≥ 1")
        check(self.batch_size >= 1 and self.lr > 0, "linear-vae: batch_size ≥ 1 and lr > 0")


LINEAR_VAE_QUICK: dict[str, Any] = {"min_steps": 300, "iwae_samples": 200, "curve_points": 4,
                                    "curve_iwae_samples": 50, "max_latent_dim": 12, "fa_tol": 1e-6,
                                    "sklearn_fa_max_elements": 0}


def _flat(split: Split) -> np.ndarray:
    return to_float(split.x).flatten(1).double().numpy()


def drop_constant(data: Dataset) -> tuple[Dataset, np.ndarray]:
    """The data as a (N, d') float table of the columns that vary on the training split (raw values, not
    standardised), and the kept column indices."""
    xs = {s: _flat(getattr(data, s)) for s in ("train", "val", "test")}
    keep = np.flatnonzero(xs["train"].var(0) > 0)
    if len(keep) < 2:
        raise DataError(f"linear-vae: {data.name!r} has {len(keep)} non-constant columns on its training split; "
                        "it needs at least 2")
    splits = {s: Split(torch.from_numpy(x[:, keep]).float(), getattr(data, s).y) for s, x in xs.items()}
    names = tuple(f"x{i}" for i in keep)
    return Dataset(f"{data.name} (non-constant columns)", "table", splits["train"], splits["val"], splits["test"],
                   classes=data.classes, feature_names=names), keep


def validation_scores(train: np.ndarray, val: np.ndarray, largest: int) -> list[dict[str, float]]:
    """The closed-form pPCA validation log-likelihood (fits on ``train``) for q = 1 … ``largest``."""
    scores = []
    for q in range(1, largest + 1):
        mean, w, s2 = ppca_fit(train, q)
        scores.append({"q": q, "val_loglik": float(ppca_loglik(val, mean, w, s2).mean())})
    return scores


def variance_q(train: np.ndarray, share: float) -> int:
    """The smallest q whose top-q principal components hold at least ``share`` of the training variance."""
    xc = np.asarray(train, dtype=np.float64) - train.mean(0)
    evals = np.sort(np.clip(np.linalg.eigvalsh(xc.T @ xc / len(xc)), 0.0, None))[::-1]
    cum = np.cumsum(evals) / evals.sum()
    return int(min(len(evals) - 1, np.searchsorted(cum, share) + 1))


def linear_vae_summary(data: str, d: int, q_note: str, rows: list[dict[str, Any]], short: str = "",
                       dropped: int = 0) -> str:
    """linear-vae's summary from its rows (one per variant)."""
    r0 = rows[0]
    text = (f"Linear Gaussian VAE on {data}: the {d} columns that vary on the training split ({dropped} constant "
            f"ones dropped for every method), {q_note}; {r0['epochs']} epochs = {r0['steps']:,} Adam steps each; "
            "nats per test sample.")
    for r in rows:
        name = r["variant"]
        ref = "pPCA" if r["scale"] == "shared" else "factor analysis"
        text += (f"\n\n**{name}**: ELBO {r['elbo']:.3f}, IWAE-{r['iwae_samples']} {r['iwae']:.3f} "
                 f"(± {r['iwae_stderr']:.3f}), the VAE's own exact log p(x) {r['vae_exact']:.3f}, {ref}'s "
                 f"maximum-likelihood {r['closed_form']:.3f}.  ")
        bug = r["elbo"] > r["vae_exact"] + 1e-6 or r["iwae"] > r["vae_exact"] + 3 * r["iwae_stderr_vs_exact"]
        if bug:
            text += ("**BUG: a bound lies above the exact log-likelihood of the same model** "
                     f"(ELBO − exact {r['elbo'] - r['vae_exact']:+.4f}, IWAE − exact {r['iwae'] - r['vae_exact']:+.4f}). ")
        else:
            text += (f"Both bounds lie below the model's exact log p(x) (ELBO by {r['vae_exact'] - r['elbo']:.4f}, "
                     f"IWAE by {r['vae_exact'] - r['iwae']:.4f} ± {r['iwae_stderr_vs_exact']:.4f}).  ")
        text += finding(f"the ELBO is within {GAP_NATS:g} nats of the exact {ref} log-likelihood",
                        abs(r["gap_elbo"]) <= GAP_NATS, f"gap {r['gap_elbo']:+.3f} nats (threshold {GAP_NATS:g})",
                        negation=f"the ELBO is not within {GAP_NATS:g} nats of the exact {ref} log-likelihood",
                        short=short)
        text += "  " + finding(f"the IWAE estimate is within {GAP_NATS:g} nats of it", abs(r["gap_iwae"]) <= GAP_NATS,
                               f"gap {r['gap_iwae']:+.3f} nats", negation=f"the IWAE estimate is not within "
                                                                         f"{GAP_NATS:g} nats of it", short=short)
        text += (f"  On the training split (where the maximum-likelihood fit is the maximum): the VAE's exact "
                 f"log p(x) {r['train_vae_exact']:.3f} vs {r['train_closed_form']:.3f} "
                 f"({r['train_vae_exact'] - r['train_closed_form']:+.3f}).")
        if r["scale"] == "shared":
            text += "  " + finding("the decoder spans PCA's top-q subspace", r["angle_pca_max_deg"] < SPAN_DEGREES,
                                   f"largest principal angle {r['angle_pca_max_deg']:.2f}° (mean "
                                   f"{r['angle_pca_mean_deg']:.2f}°; threshold {SPAN_DEGREES:g}°; the eigenvalue "
                                   f"ratio λ_q / λ_q+1 is {r['eigengap']:.3f}: the closer to 1, the flatter the "
                                   "likelihood in the last direction)",
                                   negation="the decoder does not span PCA's top-q subspace", short=short)
        else:
            text += (f"  Principal angles of the decoder to PCA's top-q subspace: largest "
                     f"{r['angle_pca_max_deg']:.1f}°, mean {r['angle_pca_mean_deg']:.1f}° (FA need not span it); to "
                     f"the ML factor loadings: largest {r['angle_fa_max_deg']:.2f}°, mean {r['angle_fa_mean_deg']:.2f}°.")
    return text


@register("linear-vae")
def linear_vae(ctx: ExperimentContext) -> ExperimentResult:
    """Linear Gaussian VAE = pPCA (shared σ²) / factor analysis (per-dim Ψ): ELBO and IWAE vs the exact value."""
    from ..viz.plots import _figure, _save

    t_start = time.perf_counter()
    cfg = ctx.config(LinearVaeConfig, LINEAR_VAE_QUICK, "linear-vae")
    raw = load_data(DataConfig(spec=ctx.data, data_dir=cfg.data_dir, subsample=cfg.subsample))
    data, keep = drop_constant(raw)
    d, dropped = len(keep), np.setdiff1d(np.arange(math.prod(raw.shape)), keep)
    tr, va, te = _flat(data.train), _flat(data.val), _flat(data.test)
    largest = min(d - 1, cfg.max_latent_dim or d - 1)
    q_scores = validation_scores(tr, va, largest)
    if cfg.latent_dim:
        check(cfg.latent_dim < d, f"linear-vae: latent_dim {cfg.latent_dim} must be below d = {d}")
        q, q_rule = cfg.latent_dim, "given"
    else:
        q, q_rule = variance_q(tr, cfg.variance_share), f"the smallest holding {100 * cfg.variance_share:g}% of " \
                                                          "the training variance"
    best_val = max(q_scores, key=lambda r: r["val_loglik"])
    q_note = (f"q = {q} ({q_rule}); the closed-form pPCA validation log-likelihood is highest at q = "
              f"{int(best_val['q'])} of 1 … {largest}" + (" (the largest tried: on these data it does not choose a q)"
                                                          if int(best_val["q"]) == largest else ""))
    log.info("linear-vae: d = %d (dropped %d constant columns), q = %d", d, len(dropped), q)
    epochs = cfg.epochs or max(1, math.ceil(cfg.min_steps / math.ceil(len(tr) / cfg.batch_size)))
    steps = steps_of(len(tr), cfg.batch_size, epochs)
    # the exact answers
    mean, w_ml, s2 = ppca_fit(tr, q)
    pca_dirs = np.linalg.svd(w_ml, full_matrices=False)[0]  # = PCA's top-q eigenvectors
    from sklearn.decomposition import PCA as SkPCA

    exact = {"shared": ppca_loglik(te, mean, w_ml, s2)}
    exact_train = {"shared": float(ppca_loglik(tr, mean, w_ml, s2).mean())}
    evals = np.sort(np.linalg.eigvalsh(np.cov(tr.T, bias=True)))[::-1]
    sk_score = {"shared": float(SkPCA(n_components=q, svd_solver="full").fit(tr).score(te))}
    fa_mean, fa_w, fa_psi, fa_iters = fa_em(tr, q, cfg.fa_tol)
    fa_cov = fa_w @ fa_w.T + np.diag(fa_psi)
    exact["per-dim"] = gaussian_loglik(te, fa_mean, fa_cov)
    exact_train["per-dim"] = float(gaussian_loglik(tr, fa_mean, fa_cov).mean())
    # scikit-learn's FactorAnalysis (its defaults: tol 10⁻² on the total log-likelihood, ψ ≥ 10⁻¹²) as a check,
    # where it is cheap (one SVD of the N × d data per iteration)
    sk_score["per-dim"] = (float(fa_fit(tr, q, ctx.seed).score(te)) if tr.size <= cfg.sklearn_fa_max_elements
                           else math.nan)
    x_test = torch.from_numpy(te).float()
    n_curve = min(len(te), cfg.curve_rows)
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[dict[str, float]]] = {}
    for scale in ("shared", "per-dim"):
        name = f"({'a' if scale == 'shared' else 'b'}) {'pPCA: shared σ²' if scale == 'shared' else 'FA: per-dim Ψ'}"
        with torch.random.fork_rng(devices=[]):  # the initial weights from the seed; the caller's RNG stays
            torch.manual_seed(ctx.seed)
            model = VAE(linear_vae_config(q, d, scale))
        curve = _Curve(x_test[:n_curve], max(1, epochs // cfg.curve_points), epochs, cfg.curve_iwae_samples, ctx.seed)
        tcfg = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, schedule="cosine", seed=ctx.seed,
                           device="cpu", progress=ctx.progress)
        t0 = time.perf_counter()
        fit(model, data, tcfg, callbacks=[curve])
        train_s = time.perf_counter() - t0
        model.eval()
        elbo = analytic_elbo(model, x_test)
        nll = iwae_nll(model, x_test, cfg.iwae_samples, seed=ctx.seed).numpy()
        own = vae_exact_loglik(model, te)
        ev = evaluate(model, data, "test")
        w, _, var = decoder_params(model)
        ang = principal_angles(torch.from_numpy(w), torch.from_numpy(pca_dirs)).numpy()
        n = len(te)
        gap_e, gap_i = elbo - exact[scale], -nll - exact[scale]
        row: dict[str, Any] = {
            "variant": name, "scale": scale, "d": d, "q": q, "epochs": epochs, "steps": steps,
            "elbo": float(elbo.mean()), "elbo_mc": float(ev["elbo"]), "iwae": float(-nll.mean()),
            "iwae_samples": cfg.iwae_samples, "iwae_stderr": float(nll.std(ddof=1) / math.sqrt(n)),
            "vae_exact": float(own.mean()), "closed_form": float(exact[scale].mean()), "sklearn_score": sk_score[scale],
            "train_vae_exact": float(vae_exact_loglik(model, tr).mean()), "train_closed_form": exact_train[scale],
            "gap_elbo": float(gap_e.mean()), "gap_elbo_stderr": float(gap_e.std(ddof=1) / math.sqrt(n)),
            "gap_iwae": float(gap_i.mean()), "gap_iwae_stderr": float(gap_i.std(ddof=1) / math.sqrt(n)),
            "iwae_stderr_vs_exact": float((-nll - own).std(ddof=1) / math.sqrt(n)),
            "angle_pca_max_deg": float(ang.max()), "angle_pca_mean_deg": float(ang.mean()),
            "noise_var_mean": float(var.mean()), "train_seconds": train_s,
        }
        if scale == "shared":
            row.update(noise_var_ml=s2, eigengap=float(evals[q - 1] / evals[q]))
        else:
            ang_fa = principal_angles(torch.from_numpy(w), torch.from_numpy(fa_w)).numpy()
            row.update(angle_fa_max_deg=float(ang_fa.max()), angle_fa_mean_deg=float(ang_fa.mean()),
                       noise_var_ml=float(fa_psi.mean()), fa_em_iterations=fa_iters,
                       psi_at_floor=int((fa_psi <= PSI_FLOOR * (1 + 1e-9)).sum()),
                       vae_psi_at_floor=int((var <= PSI_FLOOR * (1 + 1e-6)).sum()))
        rows.append(row)
        curves[scale] = curve.rows
        log.info("linear-vae %s: ELBO %.3f, IWAE %.3f, exact %.3f (%.0fs)", scale, row["elbo"], row["iwae"],
                 row["closed_form"], train_s)
    # the figure: ELBO / IWAE against epochs, the exact maximum-likelihood value as a line
    fig = _figure(10.0, 3.8, layout="tight")
    for ax, r in zip(fig.subplots(1, 2), rows):
        c = curves[r["scale"]]
        ax.plot([p["epoch"] for p in c], [p["elbo"] for p in c], "o-", markersize=3, label="test ELBO")
        if cfg.curve_iwae_samples:
            ax.plot([p["epoch"] for p in c], [p["iwae"] for p in c], "s-", markersize=3,
                    label=f"test IWAE (K = {cfg.curve_iwae_samples})")
        line = float(exact[r["scale"]][:n_curve].mean())
        ax.axhline(line, color="k", linestyle="--", linewidth=1,
                   label="exact ML log-likelihood" + (" (pPCA)" if r["scale"] == "shared" else " (FA, EM)"))
        lo = min(line, *(p["elbo"] for p in c[len(c) // 3:])) - 1.0
        ax.set_ylim(lo, line + 0.5 + 0.1 * (line - lo))
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per test sample" + (f" (first {n_curve})" if n_curve < len(te) else ""))
        ax.set_title(f"{r['variant']}, q = {q}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    figures = [_save(fig, ctx.out / "bounds_vs_epochs.png").name]
    short = too_short(ctx, steps, MIN_STEPS_FINDING)
    elapsed = time.perf_counter() - t_start
    summary = linear_vae_summary(raw.name, d, q_note, rows, short, len(dropped)) + f"\n\n({elapsed:.0f} s in all.)"
    return ExperimentResult("linear-vae", rows, summary, figures,
                            {"dropped_columns": dropped.tolist(), "q_scores": q_scores, "curves": curves,
                             "seconds": elapsed})
