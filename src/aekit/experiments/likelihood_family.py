"""Two paper claims of the VAE family, measured: ``iwae-vs-vae`` (Burda et al. 2016) and ``wae-vs-vae``
(Tolstikhin et al. 2018).

``aekit experiment iwae-vs-vae --data fashion-mnist`` trains one MLP VAE twice with the same seed, epochs and
batches: on the ELBO (``--objective elbo``, one posterior draw, closed-form KL, no free bits: the k = 1 VAE) and
on the importance-weighted bound with k = ``iwae_k`` draws (``--objective iwae --iwae-k 5``).  The network is
Burda et al.'s one-stochastic-layer MNIST architecture: 784-200-200-50 with tanh, a Bernoulli likelihood
p(x|z).  Both are scored on the same ``eval_rows`` test images (the first ones of the test split) by the
importance-weighted estimate with ``eval_k`` samples (:func:`aekit.evaluate.likelihood.iwae_nll`; Burda et al.
report K = 5000), with the same random draws for both models; the test ELBO (whole test split, the pipeline's
evaluation), and the active units (Var_x E_q[z_j] > 0.01 on the whole test split).  The claim: the model trained
on the k = 5 bound has the lower IWAE NLL (Burda et al., MNIST: 85.54 vs 86.76 nats).  The verdict uses the
standard error of the *paired* per-image difference (the same images, the same draws): the claim holds where
NLL(ELBO-trained) − NLL(IWAE-trained) > ``SE_FACTOR`` standard errors, is contradicted below −``SE_FACTOR``,
and otherwise the difference is within the noise.

``aekit experiment wae-vs-vae --data fashion-mnist`` trains the WAE-MMD (``--model wae``: squared-error cost,
λ = 200, IMQ kernel) and a plain VAE (Bernoulli likelihood, β = 1, no free bits) with the same MLP encoder /
decoder, latent size, epochs, batch, learning rate and seed, and scores with the domain classifier of
:mod:`aekit.evaluate.classifier` (a small CNN trained on the training images): the domain FID of ``n_samples``
decoded prior draws N(0, I) and of the reconstructions of the test images (the VAE's through its posterior
mean), against the classifier features of the real test images; the test reconstruction error (sum of squared
errors per image).  A bootstrap over the generated images gives each FID a standard error.  The claim
(Tolstikhin et al.: CelebA FID 55 for WAE-MMD vs 63 for the VAE): the WAE's prior samples have the lower FID;
the tie rule is ``ae-vs-vae``'s (:func:`aekit.experiments.vae_geometry.compare`: a difference must exceed 10%
of the larger value and 2 combined standard errors).  Sample and reconstruction grids are written.

Both reuse a finished run under ``OUT/runs/NAME`` when its saved configuration matches.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch

from ..config import check
from ..data import DataConfig, load_data, to_float
from ..errors import DataError
from . import ExperimentContext, ExperimentResult, finding, judged_images, register, steps_of, too_short
from .vae_geometry import compare, decode_all, train_or_reuse

if TYPE_CHECKING:
    from ..models.vae import VAE

log = logging.getLogger(__name__)

# the claim's threshold: a paired difference beyond this many standard errors (≈ 95% two-sided)
SE_FACTOR = 2.0
# optimiser steps per model below which a run is too short to tell (either experiment)
MIN_FINDING_STEPS = 5000


# ----------------------------------------------------------------------------------------------- iwae-vs-vae


@dataclasses.dataclass(frozen=True)
class IwaeVsVaeConfig:
    hidden: tuple[int, ...] = (200, 200)  # Burda et al.'s MNIST network, one stochastic layer
    latent_dim: int = 50
    activation: Literal["tanh", "relu", "silu"] = "tanh"
    iwae_k: int = 5  # draws of the IWAE training bound
    epochs: int = 40  # 22,000 steps of batch 100 on Fashion-MNIST's 55,000 training images
    batch_size: int = 100
    lr: float = 1e-3
    eval_k: int = 5000  # importance samples of the test NLL (Burda et al.'s K)
    eval_rows: int = 2000  # test images scored by the IWAE-K estimate (the first ones); 0: all
    min_steps: int = 0  # no raise: the epochs are the stated ones
    data_dir: str | None = None
    subsample: int | None = None

    def __post_init__(self) -> None:
        check(self.latent_dim >= 1 and self.epochs >= 1, "iwae-vs-vae: latent_dim and epochs must be ≥ 1")
        check(self.iwae_k >= 2, f"iwae-vs-vae: iwae_k {self.iwae_k}: the IWAE model needs k ≥ 2 (k = 1 is the "
                                "ELBO model it is compared with), e.g. --set iwae_k=5")
        check(self.eval_k >= 1, "iwae-vs-vae: eval_k must be ≥ 1, e.g. --set eval_k=5000")
        check(self.eval_rows >= 0, "iwae-vs-vae: eval_rows must be ≥ 0 (0: the whole test split)")


IWAE_VS_VAE_QUICK: dict[str, Any] = {"hidden": (16,), "latent_dim": 4, "epochs": 1, "batch_size": 64,
                                     "eval_k": 20, "eval_rows": 64}


def likelihood_verdict(nll_elbo: np.ndarray, nll_iwae: np.ndarray, factor: float = SE_FACTOR) -> dict[str, Any]:
    """The paired comparison of per-image NLLs of the same test images: ``diff`` = mean of
    NLL(ELBO-trained) − NLL(IWAE-trained) (positive: the IWAE model is better), ``se`` its standard error,
    ``verdict`` "iwae" (diff > factor·se), "elbo" (diff < −factor·se) or "tie"."""
    a, b = np.asarray(nll_elbo, np.float64), np.asarray(nll_iwae, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired NLLs need two equal 1-d arrays of ≥ 2 values, got {a.shape} and {b.shape}")
    d = a - b
    diff, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    verdict = "iwae" if diff > factor * se else "elbo" if diff < -factor * se else "tie"
    return {"diff": diff, "se": se, "factor": factor, "threshold": factor * se, "verdict": verdict, "n": len(d)}


def iwae_summary(ctx: ExperimentContext, cfg: IwaeVsVaeConfig, name: str, rows: list[dict[str, Any]],
                 v: dict[str, Any], steps: int, elapsed: float, n_test: int, input_dim: int) -> str:
    """The summary of ``iwae-vs-vae``, its sentences derived from ``rows`` (ELBO model first) and ``v``
    (:func:`likelihood_verdict`)."""
    e, i = rows
    short = too_short(ctx, steps, MIN_FINDING_STEPS)
    arch = "-".join(map(str, (input_dim, *cfg.hidden, cfg.latent_dim)))
    text = (f"The same MLP VAE ({arch}, {cfg.activation}, Bernoulli p(x|z)) on {name}, trained with the same seed, "
            f"{cfg.epochs} epochs ({steps:,} steps of batch {cfg.batch_size}, Adam lr {cfg.lr:g}) on the ELBO (k = 1) "
            f"and on the IWAE bound with k = {cfg.iwae_k}. Test NLL = −log p̂_K(x) with K = {cfg.eval_k} importance "
            f"samples on the first {v['n']:,} of the {n_test:,} test images (the same draws for both models): "
            f"{e['test_iwae_nll']:.2f} ± {e['test_iwae_nll_se']:.2f} (ELBO-trained) vs {i['test_iwae_nll']:.2f} ± "
            f"{i['test_iwae_nll_se']:.2f} (IWAE-trained) nats; paired difference {v['diff']:+.3f} ± {v['se']:.3f} nats. "
            f"Test ELBO (whole test split) {e['test_elbo']:.2f} vs {i['test_elbo']:.2f} nats; active units "
            f"{e['active_units']} vs {i['active_units']} of {cfg.latent_dim}. Burda et al. (MNIST, 3,280 passes, "
            f"batch 20): 86.76 (k = 1) vs 85.54 (k = 5) nats; the numbers here are {name}'s, not comparable "
            "with MNIST's.\n\n")
    evidence = (f"NLL(ELBO-trained) − NLL(IWAE-trained) = {v['diff']:+.3f} nats, threshold ±{v['factor']:g} paired "
                f"standard errors = ±{v['threshold']:.3f}")
    if v["verdict"] == "elbo":
        claim_text = finding("the IWAE-trained model has the lower IWAE NLL", False, evidence,  # never "holds"
                             negation="the claim is contradicted: the ELBO-trained model has the lower IWAE NLL",
                             short=short)
    else:
        claim_text = finding("the IWAE-trained model has the lower IWAE NLL", v["verdict"] == "iwae" and not short,
                             evidence,
                             negation="the two NLLs do not differ by more than the threshold: the claim is not "
                                      "shown", short=short)
    text += claim_text
    return text + (f"\n\nWall time {elapsed:.0f} s in the experiment (training {e['train_seconds']:.0f} s "
                   f"(ELBO) + {i['train_seconds']:.0f} s (IWAE), IWAE-{cfg.eval_k} scoring {e['eval_seconds']:.0f} s "
                   f"+ {i['eval_seconds']:.0f} s).")


@register("iwae-vs-vae")
def iwae_vs_vae(ctx: ExperimentContext) -> ExperimentResult:
    """The VAE trained on the ELBO vs on the k-sample IWAE bound: test IWAE-K NLL, ELBO, active units."""
    from ..evaluate.likelihood import active_units, iwae_nll, posterior_stats

    t0 = time.perf_counter()
    cfg = ctx.config(IwaeVsVaeConfig, IWAE_VS_VAE_QUICK, "iwae-vs-vae")
    data_cfg = DataConfig(spec=ctx.data, data_dir=cfg.data_dir, subsample=cfg.subsample)
    data = load_data(data_cfg)
    if not data.in_unit_interval:
        raise DataError(f"iwae-vs-vae uses a Bernoulli likelihood: {data.name!r} is not in [0, 1]; use e.g. "
                        "--data fashion-mnist or digits")
    common = {"hidden": cfg.hidden, "latent_dim": cfg.latent_dim, "activation": cfg.activation,
              "likelihood": "bernoulli", "free_bits": 0.0, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
              "lr": cfg.lr, "schedule": "constant", "precision": "fp32"}
    runs = {"elbo": {"objective": "elbo"}, f"iwae{cfg.iwae_k}": {"objective": "iwae", "iwae_k": cfg.iwae_k}}
    x_eval = data.test.x if cfg.eval_rows == 0 else data.test.x[: cfg.eval_rows]
    rows, nlls = [], []
    for name, options in runs.items():
        run = train_or_reuse(ctx, name, "vae", data_cfg, {**common, **options})
        model = run.model.eval()
        ev = run.evaluation or {}
        t = time.perf_counter()
        model.require("posterior", "iwae-vs-vae's IWAE NLL")
        # the same draws for both models (one seed)
        nll = iwae_nll(cast("VAE", model), x_eval, cfg.eval_k, seed=ctx.seed).numpy()
        eval_s = time.perf_counter() - t
        mean, _ = posterior_stats(model, data.test.x)
        n_active, _ = active_units(mean)
        nlls.append(nll)
        rows.append({"objective": "ELBO (k = 1)" if name == "elbo" else f"IWAE (k = {cfg.iwae_k})",
                     "test_iwae_nll": float(nll.mean()),
                     "test_iwae_nll_se": float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else 0.0,
                     "eval_k": cfg.eval_k, "eval_rows": len(nll), "test_elbo": ev.get("elbo"),
                     "test_elbo_se": ev.get("elbo_stderr"), "test_kl": ev.get("kl"), "active_units": n_active,
                     "train_seconds": round(sum(float(r.get("time_s", 0.0) or 0.0) for r in run.metrics), 1),
                     "eval_seconds": round(eval_s, 1)})
    v = likelihood_verdict(nlls[0], nlls[1])
    steps = steps_of(len(data.train), cfg.batch_size, cfg.epochs)
    elapsed = time.perf_counter() - t0
    summary = iwae_summary(ctx, cfg, data.name, rows, v, steps, elapsed, len(data.test), math.prod(data.shape))
    extra = {"config": dataclasses.asdict(cfg), "verdict": v, "training_steps": steps, "seconds": elapsed,
             "too_short": too_short(ctx, steps, MIN_FINDING_STEPS)}
    return ExperimentResult("iwae-vs-vae", rows, summary, [], extra)


# ----------------------------------------------------------------------------------------------- wae-vs-vae


@dataclasses.dataclass(frozen=True)
class WaeVsVaeConfig:
    hidden: tuple[int, ...] = (512, 256)
    latent_dim: int = 8  # Tolstikhin et al.'s MNIST d_z
    epochs: int = 20  # 11,000 steps of batch 100 on Fashion-MNIST
    batch_size: int = 100  # the paper's
    lr: float = 1e-3  # the paper's MNIST learning rate
    mmd_weight: float = 200.0  # the wae entry's λ (the paper's MNIST λ = 10 on its 0.05·squared cost)
    n_samples: int = 10000  # prior draws decoded and scored
    bootstrap: int = 20  # resamples of the generated images' features for each FID's standard error
    classifier_epochs: int = 3
    classifier_min_steps: int = 600
    min_steps: int = 0
    data_dir: str | None = None
    subsample: int | None = None

    def __post_init__(self) -> None:
        check(self.latent_dim >= 1 and self.epochs >= 1, "wae-vs-vae: latent_dim and epochs must be ≥ 1")
        check(self.n_samples >= 10, "wae-vs-vae: n_samples must be ≥ 10, e.g. --set n_samples=10000")
        check(self.bootstrap >= 2, "wae-vs-vae: bootstrap must be ≥ 2, e.g. --set bootstrap=20")
        check(self.mmd_weight >= 0, "wae-vs-vae: mmd_weight must be ≥ 0")


WAE_VS_VAE_QUICK: dict[str, Any] = {"hidden": (32,), "latent_dim": 4, "epochs": 1, "batch_size": 64,
                                    "n_samples": 200, "bootstrap": 3, "classifier_epochs": 1,
                                    "classifier_min_steps": 30}


def fid_with_se(feats: np.ndarray, real: tuple[np.ndarray, np.ndarray], n_boot: int, seed: int
                ) -> tuple[float, float]:
    """Domain FID of feature rows ``feats`` against the real statistics, and its bootstrap standard error
    (``n_boot`` resamples of the rows with replacement)."""
    from ..evaluate.classifier import frechet_distance, gaussian_stats

    fid = frechet_distance(*gaussian_stats(feats), *real)
    rng = np.random.default_rng(seed)
    boots = [frechet_distance(*gaussian_stats(feats[rng.integers(0, len(feats), len(feats))]), *real)
             for _ in range(n_boot)]
    return fid, float(np.std(boots, ddof=1))


def fid_verdict(wae: float, vae: float, se_wae: float, se_vae: float) -> dict[str, Any]:
    """``ae-vs-vae``'s tie rule on two FIDs (lower is better): ``verdict`` "WAE", "VAE" or "tie"."""
    c = compare(wae, vae, se_wae, se_vae)
    return {**c, "verdict": {"a": "WAE", "b": "VAE", "tie": "tie"}[c["verdict"]]}


def wae_summary(ctx: ExperimentContext, cfg: WaeVsVaeConfig, name: str, r: dict[str, dict[str, Any]],
                real_fid: float, clf_acc: float, v: dict[str, Any], v_rec: dict[str, Any], steps: int,
                elapsed: float) -> str:
    """The summary of ``wae-vs-vae`` from the per-model results ``r`` ("wae", "vae") and the verdicts."""
    w, a = r["wae"], r["vae"]
    short = too_short(ctx, steps, MIN_FINDING_STEPS)
    if not short and clf_acc < 0.8:
        short = f"the scoring classifier's test accuracy is {clf_acc:.3f} (< 0.8)"
    text = (f"WAE-MMD (squared-error cost, λ = {cfg.mmd_weight:g}, IMQ kernel) and a VAE (Bernoulli p(x|z), β = 1, "
            f"no free bits), the same MLP encoder / decoder ({','.join(map(str, cfg.hidden))}, latent "
            f"{cfg.latent_dim}), {cfg.epochs} epochs ({steps:,} steps of batch {cfg.batch_size}, Adam lr "
            f"{cfg.lr:g}), seed {ctx.seed}, on {name}. Domain FID (features of a small CNN trained on the training "
            f"images, test accuracy {clf_acc:.3f}; not comparable with Inception FIDs) against the real test images, "
            f"± a bootstrap standard error: {cfg.n_samples:,} prior samples {w['sample_fid']:.3g} ± "
            f"{w['sample_fid_se']:.2g} (WAE) vs {a['sample_fid']:.3g} ± {a['sample_fid_se']:.2g} (VAE); "
            f"reconstructions of the test images {w['recon_fid']:.3g} ± {w['recon_fid_se']:.2g} vs "
            f"{a['recon_fid']:.3g} ± {a['recon_fid_se']:.2g}; real training images {real_fid:.3g} (the floor). Test "
            f"squared error per image {w['test_sse_per_image']:.2f} (WAE) vs {a['test_sse_per_image']:.2f} (VAE). "
            "Tolstikhin et al. (CelebA, conv nets): FID 55 (WAE-MMD) vs 63 (VAE).\n\n")
    evidence = (f"FID {w['sample_fid']:.3g} vs {a['sample_fid']:.3g}, a difference of "
                f"{a['sample_fid'] - w['sample_fid']:+.3g}; a win needs more than {v['threshold']:.3g} (10% of the "
                "larger value and 2 combined standard errors)")
    negation = ("the claim is contradicted: the VAE's prior samples have the lower FID" if v["verdict"] == "VAE"
                else "the two FIDs tie under the threshold: the claim is not shown")
    text += finding("the WAE's prior samples have the lower domain FID", v["verdict"] == "WAE" and not short,
                    evidence,
                    negation=negation, short=short)
    rec = {"WAE": "the WAE's reconstructions have the lower FID", "VAE": "the VAE's reconstructions have the lower "
           "FID", "tie": "the reconstructions' FIDs tie"}[v_rec["verdict"]]
    text += f" Reconstructions (same rule): {rec}." if not short else " Reconstructions: no verdict either."
    return text + (f"\n\nWall time {elapsed:.0f} s in the experiment (training {w['train_seconds']:.0f} s (WAE) + "
                   f"{a['train_seconds']:.0f} s (VAE), the classifier and the scoring the rest).")


@torch.no_grad()
def reconstruct_all(model: Any, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Reconstructions of every row of ``x`` (uint8 or float, CPU), batch by batch on the model's device, returned
    as CPU floats clamped to [0, 1]."""
    return torch.cat([model.reconstruct(to_float(x[i : i + batch_size]).to(model.device)).float().cpu().clamp(0.0, 1.0)
                      for i in range(0, len(x), batch_size)])


@register("wae-vs-vae")
def wae_vs_vae(ctx: ExperimentContext) -> ExperimentResult:
    """WAE-MMD vs VAE, the same network: domain FID of prior samples and reconstructions, test error."""
    from ..evaluate import reconstruction_errors
    from ..evaluate.classifier import classify_all, gaussian_stats
    from ..viz.plots import save_image_grid

    t0 = time.perf_counter()
    cfg = ctx.config(WaeVsVaeConfig, WAE_VS_VAE_QUICK, "wae-vs-vae")
    data_cfg = DataConfig(spec=ctx.data, data_dir=cfg.data_dir, subsample=cfg.subsample)
    data, clf = judged_images(ctx, cfg, data_cfg, "wae-vs-vae")
    real_feats, real_probs = classify_all(clf, data.test.x)
    real = gaussian_stats(real_feats)
    clf_acc = float((real_probs.argmax(1) == data.test.y.numpy()).mean())
    rng = np.random.default_rng(ctx.seed)
    ref = torch.from_numpy(np.sort(rng.choice(len(data.train), min(cfg.n_samples, len(data.train)), replace=False)))
    real_fid, _ = fid_with_se(classify_all(clf, data.train.x[ref])[0], real, 2, ctx.seed)
    common = {"hidden": cfg.hidden, "latent_dim": cfg.latent_dim, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
              "lr": cfg.lr, "schedule": "constant", "precision": "fp32"}
    per_model = {"wae": ("wae", {"mmd_weight": cfg.mmd_weight}),
                 "vae": ("vae", {"likelihood": "bernoulli", "free_bits": 0.0, "beta": 1.0})}
    results: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = [{"model": "real training images", "sample_fid": real_fid}]
    figures: list[str] = []
    for name, (kind, options) in per_model.items():
        run = train_or_reuse(ctx, name, kind, data_cfg, {**common, **options})
        model = run.model.eval()
        z = torch.randn(cfg.n_samples, model.latent_dim, generator=torch.Generator().manual_seed(ctx.seed))
        samples = decode_all(model, z)
        recons = reconstruct_all(model, data.test.x)
        s_fid, s_se = fid_with_se(classify_all(clf, samples)[0], real, cfg.bootstrap, ctx.seed)
        r_fid, r_se = fid_with_se(classify_all(clf, recons)[0], real, cfg.bootstrap, ctx.seed)
        sse = reconstruction_errors(model, data.test.x)
        results[name] = {"sample_fid": s_fid, "sample_fid_se": s_se, "recon_fid": r_fid, "recon_fid_se": r_se,
                         "test_sse_per_image": float(sse.mean()),
                         "test_sse_se": float(sse.std() / math.sqrt(len(sse))),
                         "train_seconds": round(sum(float(m.get("time_s", 0.0) or 0.0) for m in run.metrics), 1)}
        rows.append({"model": name.upper(), **results[name]})
        label = name.upper()
        save_image_grid(samples[:64], ctx.out / f"samples_{name}.png", nrow=8,
                        title=f"{label}: decoded N(0, I) draws")
        save_image_grid(torch.cat([to_float(data.test.x[:32]), recons[:32]]), ctx.out / f"reconstructions_{name}.png",
                        nrow=8, title=f"{label}: 32 test images (top), reconstructions (bottom)")
        figures += [f"samples_{name}.png", f"reconstructions_{name}.png"]
    w, a = results["wae"], results["vae"]
    v = fid_verdict(w["sample_fid"], a["sample_fid"], w["sample_fid_se"], a["sample_fid_se"])
    v_rec = fid_verdict(w["recon_fid"], a["recon_fid"], w["recon_fid_se"], a["recon_fid_se"])
    steps = steps_of(len(data.train), cfg.batch_size, cfg.epochs)
    elapsed = time.perf_counter() - t0
    summary = wae_summary(ctx, cfg, data.name, results, real_fid, clf_acc, v, v_rec, steps, elapsed)
    extra = {"config": dataclasses.asdict(cfg), "results": results, "sample_verdict": v, "recon_verdict": v_rec,
             "classifier_test_accuracy": clf_acc, "training_steps": steps, "seconds": elapsed}
    return ExperimentResult("wae-vs-vae", rows, summary, figures, extra)
