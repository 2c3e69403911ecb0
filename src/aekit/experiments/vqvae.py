"""``aekit experiment vqvae``: the VQ-VAE (van den Oord et al. 2017) against the conv VAE: the same conv
stack, different bottlenecks.

Both models have the same stride-2 conv layers and mirrored transposed-conv layers (``channels``), the same
epochs, batch, learning rate and seed; their bottlenecks differ: the VQ-VAE's 1×1 conv to an h×w grid of codes
(at most h·w·log₂K bits per image), the VAE's dense layers to and from a ``latent_dim`` Gaussian latent (whose
information is bounded by its KL, reported in bits), so the error comparison is one of code capacity as much as
of method: the VQ-VAE (``--model vqvae``: K = ``codebook_size`` codes of ``code_dim``, EMA
codebook, dead-code restarts after ``restart_after`` unused steps, its PixelCNN prior — masked, or gated with
``--set prior_kind=gated`` — trained ``prior_epochs`` after the main fit) and the VAE (``--model vae --arch conv``, Bernoulli p(x|z), β = 1, no free bits, latent
``latent_dim``).  Reported on the test split:

- reconstruction error, the sum of squared errors per image (mean ± standard error), both models, beside the
  VQ-VAE's code capacity h·w·log₂K and the VAE's test KL(q(z|x) ‖ N(0, I)), both in bits per image;
- the VQ-VAE's codebook: perplexity exp(H(mean one-hot usage)) over every code position of the test images,
  codes used and unused (``dead_codes``), and its prior's NLL (nats per image, bits per code position) —
  :func:`aekit.evaluate.codebook.codebook_metrics`;
- ``n_samples`` prior samples of each model (the VQ-VAE's: index grids drawn from the PixelCNN and decoded; the
  VAE's: N(0, I) draws decoded) scored by the domain classifier of :mod:`aekit.evaluate.classifier`: the domain
  FID against the real test images, with a bootstrap standard error; sample grids are written.

Claims (thresholds stated in the summary): the codebook perplexity is at least ``PERPLEXITY_SHARE`` (25%) of K,
and no code is unused on the test set (dead-code restarts).  The FIDs and errors are compared with
``ae-vs-vae``'s tie rule (a difference must exceed 10% of the larger value and 2 combined standard errors); the
paper makes no sample-quality claim against a VAE, so that comparison is reported, not claimed.  Finished runs
under ``OUT/runs/NAME`` are reused when their saved configuration matches.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Literal

import numpy as np
import torch

from ..config import check
from ..data import DataConfig, to_float
from . import ExperimentContext, ExperimentResult, finding, judged_images, register, steps_of, too_short
from .likelihood_family import fid_with_se
from .vae_geometry import compare, train_or_reuse

log = logging.getLogger(__name__)

PERPLEXITY_SHARE = 0.25  # the claim: perplexity ≥ this share of K
MIN_FINDING_STEPS = 2000  # optimiser steps of the VQ-VAE below which the run is too short to tell


@dataclasses.dataclass(frozen=True)
class VqvaeExperimentConfig:
    channels: tuple[int, ...] = (32, 64)  # both models' conv encoder (and mirrored decoder)
    codebook_size: int = 128
    code_dim: int = 16
    restart_after: int = 100
    latent_dim: int = 16  # the VAE's
    epochs: int = 8  # 3,440 steps of batch 128 on Fashion-MNIST's 55,000 training images
    batch_size: int = 128
    lr: float = 1e-3
    prior_epochs: int = 5
    prior_channels: int = 32
    prior_layers: int = 4
    prior_kind: Literal["pixelcnn", "gated"] = "pixelcnn"  # the model's --prior-kind
    n_samples: int = 5000  # prior draws of each model decoded and scored
    bootstrap: int = 20
    classifier_epochs: int = 3
    classifier_min_steps: int = 600
    min_steps: int = 0
    data_dir: str | None = None
    subsample: int | None = None

    def __post_init__(self) -> None:
        check(self.epochs >= 1 and self.prior_epochs >= 1, "vqvae: epochs and prior_epochs must be ≥ 1")
        check(self.n_samples >= 10, "vqvae: n_samples must be ≥ 10, e.g. --set n_samples=5000")
        check(self.bootstrap >= 2, "vqvae: bootstrap must be ≥ 2, e.g. --set bootstrap=20")


VQVAE_QUICK: dict[str, Any] = {"channels": (4, 8), "codebook_size": 16, "code_dim": 4, "latent_dim": 4,
                               "restart_after": 20, "epochs": 1, "batch_size": 64, "prior_epochs": 1,
                               "prior_channels": 8, "prior_layers": 1, "n_samples": 100, "bootstrap": 3,
                               "classifier_epochs": 1, "classifier_min_steps": 30, "subsample": 1500}


@torch.no_grad()
def vqvae_samples(model: Any, n: int, seed: int, batch_size: int = 500) -> torch.Tensor:
    """``n`` decoded draws of the VQ-VAE's prior (CPU floats clamped to [0, 1]), reproducible by ``seed``."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    model.eval()
    out = [model.sample(min(batch_size, n - i), g).float().cpu().clamp(0.0, 1.0) for i in range(0, n, batch_size)]
    return torch.cat(out)


def vqvae_summary(ctx: ExperimentContext, cfg: VqvaeExperimentConfig, name: str, r: dict[str, dict[str, Any]],
                  cb: dict[str, Any], real_fid: float, clf_acc: float, v_fid: dict[str, Any],
                  v_sse: dict[str, Any], steps: int, elapsed: float) -> str:
    """The summary, its sentences derived from the numbers: ``r`` per model ("vqvae", "vae"), ``cb`` the
    VQ-VAE's codebook metrics on the test split, ``v_fid`` / ``v_sse`` the tie-rule comparisons."""
    q, a = r["vqvae"], r["vae"]
    k = cfg.codebook_size
    short = too_short(ctx, steps, MIN_FINDING_STEPS)
    text = (f"VQ-VAE (K = {k} codes of {cfg.code_dim}, EMA codebook γ = 0.99, β = 0.25, dead-code restart after "
            f"{cfg.restart_after} unused steps; {'gated ' if cfg.prior_kind == 'gated' else ''}PixelCNN prior "
            f"{cfg.prior_channels} channels × {cfg.prior_layers} "
            f"{'gated layers' if cfg.prior_kind == 'gated' else 'blocks'}, {cfg.prior_epochs} epochs after the main fit) and a conv VAE (Bernoulli p(x|z), β = 1, latent "
            f"{cfg.latent_dim}): the same conv stack (channels {','.join(map(str, cfg.channels))}, stride 2, mirrored "
            f"in the decoder), different bottlenecks (the VQ-VAE: a 1×1 conv to a grid of codes; the VAE: dense "
            f"layers to and from its Gaussian latent), {cfg.epochs} epochs ({steps:,} steps of batch "
            f"{cfg.batch_size}, Adam lr {cfg.lr:g}), seed {ctx.seed}, on {name}. Test squared error per image "
            f"{q['test_sse_per_image']:.2f} ± {q['test_sse_se']:.2f} (VQ-VAE; its code holds at most "
            f"{q['code_capacity_bits']:.0f} bits per image, h·w·log₂K) vs {a['test_sse_per_image']:.2f} ± "
            f"{a['test_sse_se']:.2f} (VAE; test KL {a['test_kl_bits']:.1f} bits per image, which bounds the "
            "information its latent carries): the error comparison is one of code capacity as much as of method. "
            "Test codebook: "
            f"perplexity {cb['codebook_perplexity']:.1f} of K = {k} ({cb['codebook_perplexity'] / k:.0%}), "
            f"{round(cb['codebook_usage'] * k)} codes used, {cb['dead_codes']} unused; prior NLL "
            f"{cb['prior_nll']:.1f} nats per image ({cb['prior_bits_per_code']:.2f} bits per code position, "
            f"log₂ K = {math.log2(k):.2f}). Domain FID (a small CNN trained on the training images, test accuracy "
            f"{clf_acc:.3f}; not comparable with Inception FIDs) of {cfg.n_samples:,} prior samples against the "
            f"real test images ± a bootstrap standard error: {q['sample_fid']:.3g} ± {q['sample_fid_se']:.2g} "
            f"(VQ-VAE, {'gated ' if cfg.prior_kind == 'gated' else ''}PixelCNN prior) vs {a['sample_fid']:.3g} ± {a['sample_fid_se']:.2g} (VAE, N(0, I)); real "
            f"training images {real_fid:.3g} (the floor).\n\n")
    share = cb["codebook_perplexity"] / k
    text += finding("the codebook is well used", share >= PERPLEXITY_SHARE and not short,
                    f"perplexity {cb['codebook_perplexity']:.1f} = {share:.0%} of K (threshold "
                    f"{PERPLEXITY_SHARE:.0%})", negation="the codebook is poorly used", short=short)
    text += " " + finding("no code is unused on the test set", cb["dead_codes"] == 0 and not short,
                          f"{cb['dead_codes']} of {k} codes unused (threshold 0)",
                          negation="some codes are unused on the test set", short=short)
    fid_word = {"a": "the VQ-VAE's prior samples have the lower domain FID",
                "b": "the VAE's prior samples have the lower domain FID",
                "tie": "the two models' prior samples' FIDs tie"}[v_fid["verdict"]]
    sse_word = {"a": "the VQ-VAE reconstructs better", "b": "the VAE reconstructs better",
                "tie": "the two reconstruction errors tie"}[v_sse["verdict"]]
    if short:
        text += f" Comparisons (no verdict: {short}): {fid_word}; {sse_word}."
    else:
        text += (f" Compared (a difference must exceed 10% of the larger value and 2 combined standard errors): "
                 f"{fid_word} (threshold {v_fid['threshold']:.3g}); {sse_word} (threshold "
                 f"{v_sse['threshold']:.3g}).")
    return text + (f"\n\nWall time {elapsed:.0f} s in the experiment (training {q['train_seconds']:.0f} s (VQ-VAE, "
                   f"prior included) + {a['train_seconds']:.0f} s (VAE); the classifier, sampling and scoring the "
                   "rest).")


@register("vqvae")
def vqvae_experiment(ctx: ExperimentContext) -> ExperimentResult:
    """VQ-VAE vs the conv VAE: test error, codebook use, prior NLL and the domain FID of prior samples."""
    from ..evaluate import evaluate, reconstruction_errors
    from ..evaluate.classifier import classify_all, gaussian_stats
    from ..evaluate.codebook import codebook_metrics
    from ..viz.plots import save_image_grid

    t0 = time.perf_counter()
    cfg = ctx.config(VqvaeExperimentConfig, VQVAE_QUICK, "vqvae")
    data_cfg = DataConfig(spec=ctx.data, data_dir=cfg.data_dir, subsample=cfg.subsample)
    data, clf = judged_images(ctx, cfg, data_cfg, "vqvae", unit=True)
    real_feats, real_probs = classify_all(clf, data.test.x)
    real = gaussian_stats(real_feats)
    clf_acc = float((real_probs.argmax(1) == data.test.y.numpy()).mean())
    rng = np.random.default_rng(ctx.seed)
    ref = torch.from_numpy(np.sort(rng.choice(len(data.train), min(cfg.n_samples, len(data.train)), replace=False)))
    real_fid, _ = fid_with_se(classify_all(clf, data.train.x[ref])[0], real, 2, ctx.seed)
    common = {"channels": cfg.channels, "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
              "schedule": "constant", "precision": "fp32"}
    per_model = {"vqvae": ("vqvae", {"codebook_size": cfg.codebook_size, "code_dim": cfg.code_dim,
                                     "restart_after": cfg.restart_after, "prior_epochs": cfg.prior_epochs,
                                     "prior_channels": cfg.prior_channels, "prior_layers": cfg.prior_layers,
                                     "prior_kind": cfg.prior_kind,
                                     "recon_loss": "bce"}),
                 "vae": ("vae", {"arch": "conv", "latent_dim": cfg.latent_dim, "likelihood": "bernoulli",
                                 "free_bits": 0.0, "beta": 1.0})}
    results: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = [{"model": "real training images", "sample_fid": real_fid}]
    figures: list[str] = []
    cb: dict[str, Any] = {}
    for name, (kind, options) in per_model.items():
        run = train_or_reuse(ctx, name, kind, data_cfg, {**common, **options})
        model = run.model.eval()
        if name == "vqvae":
            samples = vqvae_samples(model, cfg.n_samples, ctx.seed)
            cb = codebook_metrics(model, data.test.x)
            capacity = {"code_capacity_bits": model.latent_dim // cfg.code_dim * math.log2(cfg.codebook_size)}
        else:
            test = (run.evaluation if run.evaluation and run.evaluation.get("split") == "test"
                    else evaluate(model, data, "test"))
            capacity = {"test_kl_bits": float(test["kl"]) / math.log(2)}
            with torch.no_grad():
                g = torch.Generator(device=model.device).manual_seed(ctx.seed)
                samples = torch.cat([model.sample(min(1000, cfg.n_samples - i), g).float().cpu().clamp(0.0, 1.0)
                                     for i in range(0, cfg.n_samples, 1000)])
        s_fid, s_se = fid_with_se(classify_all(clf, samples)[0], real, cfg.bootstrap, ctx.seed)
        sse = reconstruction_errors(model, data.test.x)
        results[name] = {"sample_fid": s_fid, "sample_fid_se": s_se, "test_sse_per_image": float(sse.mean()),
                         "test_sse_se": float(sse.std() / math.sqrt(len(sse))),
                         "train_seconds": round(sum(float(m.get("time_s", 0.0) or 0.0) for m in run.metrics), 1),
                         **capacity}
        row: dict[str, Any] = {"model": "VQ-VAE" if name == "vqvae" else "VAE", **results[name]}
        if name == "vqvae":
            row.update({k: cb[k] for k in ("codebook_perplexity", "codebook_usage", "dead_codes", "prior_nll",
                                           "prior_bits_per_code")})
        rows.append(row)
        with torch.no_grad():
            recons = model.reconstruct(to_float(data.test.x[:32]).to(model.device)).float().cpu().clamp(0.0, 1.0)
        title = (f"VQ-VAE: decoded {'gated ' if cfg.prior_kind == 'gated' else ''}PixelCNN-prior draws"
                 if name == "vqvae" else "VAE: decoded N(0, I) draws")
        save_image_grid(samples[:64], ctx.out / f"samples_{name}.png", nrow=8, title=title)
        save_image_grid(torch.cat([to_float(data.test.x[:32]), recons]), ctx.out / f"reconstructions_{name}.png",
                        nrow=8, title=f"{row['model']}: 32 test images (top), reconstructions (bottom)")
        figures += [f"samples_{name}.png", f"reconstructions_{name}.png"]
    q, a = results["vqvae"], results["vae"]
    v_fid = compare(q["sample_fid"], a["sample_fid"], q["sample_fid_se"], a["sample_fid_se"])
    v_sse = compare(q["test_sse_per_image"], a["test_sse_per_image"], q["test_sse_se"], a["test_sse_se"])
    steps = steps_of(len(data.train), cfg.batch_size, cfg.epochs)
    elapsed = time.perf_counter() - t0
    summary = vqvae_summary(ctx, cfg, data.name, results, cb, real_fid, clf_acc, v_fid, v_sse, steps, elapsed)
    extra = {"config": dataclasses.asdict(cfg), "results": results, "codebook": cb, "fid_verdict": v_fid,
             "sse_verdict": v_sse, "classifier_test_accuracy": clf_acc, "training_steps": steps, "seconds": elapsed}
    return ExperimentResult("vqvae", rows, summary, figures, extra)
