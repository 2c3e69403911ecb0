"""The seed family's experiments: what the notes claim about PCA, deep, sparse, stacked and denoising AEs.

``aekit experiment NAME --data SPEC --out DIR`` with NAME one of

- ``pca-vs-ae``: PCA vs a linear AE vs the deep AE (784-1000-500-250-30 on 28×28 data) at one code size; the
  linear AE's error relative to PCA and the principal angles between its decoder's column space and PCA's
  subspace; a figure of originals and the three reconstructions
- ``code-size``: test error against code size (2, 4, 8, …, the input size) for PCA and the deep AE
- ``sparsity``: a one-hidden-layer sparse AE swept over λ (L1) and ρ (KL): error, ``fraction_inactive`` and
  ``dead_units``; the learned first-layer filters as images
- ``stacked``: greedy layer-wise pretraining + fine-tuning vs the same tied architecture from scratch with
  the same total number of epochs: learning curves and final test errors
- ``denoising``: a plain AE vs denoising AEs on corrupted test inputs, for each corruption

Every trained model is an ordinary run directory under ``DIR/runs/`` (``config.json`` says how to retrain it
with ``aekit train``).  Options come as ``--set KEY=VALUE`` and are validated against the experiment's config
dataclass below (unknown keys and wrong types are rejected); ``--epochs N`` overrides every epoch count of the
experiment and ``--quick`` selects tiny settings that run on ``digits`` in seconds (5–9 s of CPU time each), too
short for the findings: each summary sentence that states one is built by :func:`aekit.experiments.finding` from
the numbers and a stated threshold, and says when the run is too short to tell.

Architectures scale with the input dimension d: the code size is 30 when d ≥ 240 (min(30, d // 8) below),
and the hidden widths are Hinton & Salakhutdinov's 1000-500-250 times min(1, d / 784), none narrower than
twice the code.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..config import check
from ..data import DataConfig, Dataset, load_data, to_float
from ..errors import RunError
from ..evaluate import evaluate
from ..evaluate.deterministic import corrupted_errors
from ..evaluate.metrics import principal_angles
from ..models.ae import AE
from ..models.pca import PCA
from ..pipeline import train as train_run
from ..train.checkpoint import load_state, read_tensors
from ..train.run import Run
from ..train.trainer import PRETRAINED
from . import (
    MIN_STEPS,
    ExperimentContext,
    ExperimentResult,
    enough_steps,
    epoch_fields,
    finding,
    register,
    steps_of,
    too_short,
)

log = logging.getLogger(__name__)

H_AND_S = (1000, 500, 250)  # Hinton & Salakhutdinov (2006), for 784-d inputs

# How the deep AE is trained, everywhere in this module (chosen on the validation split, see notes/issue-2.md);
# with the configs' SiLU, lr 2e-3 and one warm-up epoch (before this: ReLU, 1e-3, none — `--set` restores them)
DEEP_RECIPE: dict[str, Any] = {"recon_loss": "bce", "schedule": "cosine", "optimizer": "adam"}
# The linear AE: squared error, Adam with a cosine schedule to zero (the subspace converges at the end)
LINEAR_RECIPE: dict[str, Any] = {"schedule": "cosine", "optimizer": "adam"}


# ----------------------------------------------------------------------------------------------- helpers


def code_size(d: int) -> int:
    """The experiments' code size for d-dimensional inputs: 30 (H&S) when d ≥ 240, else max(2, d // 8)."""
    return min(30, max(2, d // 8))


def deep_hidden(d: int, code: int) -> tuple[int, ...]:
    """H&S's 1000-500-250 scaled by min(1, d / 784), none narrower than twice the code."""
    scale = min(1.0, d / 784)
    return tuple(max(2 * code, round(w * scale)) for w in H_AND_S)


def _setup(cls: type, ctx: ExperimentContext, quick: dict[str, Any], name: str) -> tuple[Any, DataConfig, Dataset]:
    """An experiment's config (from its defaults, ``--quick``, ``--set``, ``--epochs`` and the data size),
    its data config and its data."""
    cfg = ctx.config(cls, quick, name, tuple(f for f in epoch_fields(cls) if f != "pretrain_epochs"))
    data_cfg = DataConfig(spec=ctx.data, data_dir=cfg.data_dir)
    data = load_data(data_cfg)
    return enough_steps(cfg, ctx, len(data.train)), data_cfg, data


def _deep_options(cfg: Any) -> dict[str, Any]:
    """Training options of the deep AE from an experiment config (the recipe + its epochs, lr, …)."""
    return {"epochs": cfg.epochs, "lr": cfg.lr, "lr_warmup_epochs": cfg.lr_warmup_epochs,
            "batch_size": cfg.batch_size, "activation": cfg.activation, **DEEP_RECIPE}


def _train(ctx: ExperimentContext, data_cfg: DataConfig, name: str, model: str, **options: Any) -> Run:
    t0 = time.perf_counter()
    run = train_run(model, data_cfg, ctx.run_dir(name), overwrite=True, report=False, progress=ctx.progress,
                    seed=ctx.seed, **options)
    log.info("%s: test sse_per_image %.4g (%.0fs)", name, _evaluation(run)["sse_per_image"], time.perf_counter() - t0)
    return run


def _evaluation(run: Run) -> dict[str, Any]:
    """The test evaluation of a run trained here (``train_run`` evaluates every run it trains)."""
    if run.evaluation is None:
        raise RunError(f"run {run.path} has no evaluation")
    return run.evaluation


def _val_sse(run: Run, data: Dataset) -> float:
    return float(evaluate(run.model, data, "val")["sse_per_image"])


def _train_seconds(run: Run) -> float:
    return float(sum(float(r.get("time_s", 0.0)) for r in run.metrics))


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=110, layout="tight")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, format="png", facecolor="white")
    return path.name


def _image_rows(rows: list[tuple[str, torch.Tensor]], path: Path, title: str) -> str:
    """A grid of images: one labelled row per entry of ``rows`` ((N, C, H, W) floats in [0, 1])."""
    n = min(len(r[1]) for r in rows)
    h, w = rows[0][1].shape[-2:]
    cell = max(0.55, min(1.1, 8.0 / n))
    fig = _figure(1.3 + cell * n, 0.35 + cell * h / w * len(rows))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        a = imgs[:n].detach().float().cpu().clamp(0, 1).numpy()
        for i in range(n):
            ax = axes[r, i]
            img = a[i]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img[:3].transpose(1, 2, 0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _monotone(values: list[float], increasing: bool = True, tol: float = 1e-9) -> bool:
    pairs = list(zip(values[:-1], values[1:]))
    return all(b >= a - tol for a, b in pairs) if increasing else all(b <= a + tol for a, b in pairs)


# ----------------------------------------------------------------------------------------------- pca-vs-ae


@dataclasses.dataclass(frozen=True)
class PcaVsAeConfig:
    latent_dim: int = 0  # 0: code_size(d) (30 for 28×28 images)
    hidden: tuple[int, ...] = ()  # (): deep_hidden(d) (1000,500,250 for 28×28 images)
    epochs: int = 50  # deep AE
    lr: float = 2e-3
    lr_warmup_epochs: float = 1.0
    batch_size: int = 128
    activation: str = "silu"
    linear_epochs: int = 100
    linear_lr: float = 3e-3
    linear_batch_size: int = 128
    min_steps: int = MIN_STEPS  # small data: epochs not set explicitly are raised to reach this many steps
    data_dir: str | None = None

    def __post_init__(self) -> None:
        check(self.latent_dim >= 0, "pca-vs-ae: latent_dim must be ≥ 0 (0 = from the data)")
        check(self.epochs >= 1 and self.linear_epochs >= 1, "pca-vs-ae: epochs must be ≥ 1")


# --quick: seconds on 2 cores (the README says how long); too short for the findings, which the summary says
PCA_VS_AE_QUICK = {"min_steps": 0, "epochs": 5, "linear_epochs": 25, "batch_size": 64, "linear_batch_size": 32,
                   "linear_lr": 2e-2}


# pca-vs-ae's findings: the linear AE's error within ±3% of PCA's, its decoder's largest principal angle to
# PCA's subspace below 5° (Fashion-MNIST, 100 epochs: 0.08°)
PCA_MATCH = 0.03
SPAN_DEGREES = 5.0


def pca_vs_ae_summary(data: str, n_test: int, k: int, d: int, arch: str, pca_e: float, lin_e: float,
                      deep_e: float, angles: list[float], short: str = "") -> str:
    """pca-vs-ae's summary from its numbers (errors per image, principal angles in degrees)."""
    rel = lin_e / pca_e - 1
    top, median = max(angles), float(np.median(angles))
    return (
        f"On {data} test data ({n_test} samples), squared error per image at code size {k}: PCA {pca_e:.3f}, "
        f"linear AE {lin_e:.3f}, deep AE ({arch}) {deep_e:.3f} = {deep_e / pca_e:.2f}× PCA.  "
        + finding("the linear AE reaches PCA's error", abs(rel) <= PCA_MATCH,
                  f"{100 * rel:+.1f}% vs PCA (threshold ±{100 * PCA_MATCH:g}%)",
                  negation="the linear AE does not reach PCA's error", short=short)
        + "\n\n"
        + finding("the linear AE's decoder spans PCA's subspace", top < SPAN_DEGREES,
                  f"largest principal angle {top:.1f}° (threshold {SPAN_DEGREES:g}°; median {median:.1f}°) "
                  f"between the column space of its {d}×{k} decoder weight and the top-{k} principal components",
                  negation="the linear AE's decoder does not span PCA's subspace", short=short)
    )


@register("pca-vs-ae")
def pca_vs_ae(ctx: ExperimentContext) -> ExperimentResult:
    """PCA vs a linear AE vs the deep AE at one code size: test error and the linear AE's subspace angle."""
    cfg, data_cfg, data = _setup(PcaVsAeConfig, ctx, PCA_VS_AE_QUICK, "pca-vs-ae")
    d = math.prod(data.shape)
    k = cfg.latent_dim or code_size(d)
    hidden = cfg.hidden or deep_hidden(d, k)
    pca = _train(ctx, data_cfg, f"pca-{k}", "pca", latent_dim=k)
    lin = _train(ctx, data_cfg, f"linear-ae-{k}", "linear-ae", latent_dim=k, epochs=cfg.linear_epochs,
                 lr=cfg.linear_lr, batch_size=cfg.linear_batch_size, **LINEAR_RECIPE)
    deep = _train(ctx, data_cfg, f"deep-ae-{k}", "ae", hidden=hidden, latent_dim=k, **_deep_options(cfg))
    arch = "-".join(str(v) for v in (d, *hidden, k))
    p = _evaluation(pca)["sse_per_image"]
    rows = []
    for name, run, what, epochs in ((f"PCA-{k}", pca, f"{d}-{k} (SVD)", 0),
                                    (f"linear AE-{k}", lin, f"{d}-{k}-{d} linear", cfg.linear_epochs),
                                    (f"deep AE-{k}", deep, f"{arch} {cfg.activation}", cfg.epochs)):
        e = _evaluation(run)["sse_per_image"]
        rows.append({"model": name, "architecture": what, "code_size": k, "epochs": epochs,
                     "test_sse_per_image": e, "val_sse_per_image": _val_sse(run, data), "ratio_to_pca": e / p,
                     "train_seconds": _train_seconds(run)})
    lin_decoder = lin.model.decoder
    assert isinstance(lin_decoder, torch.nn.Sequential)  # linear-ae: an MLP decoder
    pca_model = cast("PCA", pca.model)  # the run of --model pca (typing only: no probe of the class)
    decoder = [m for m in lin_decoder if isinstance(m, torch.nn.Linear)][0].weight  # (d, k)
    angles = principal_angles(decoder.detach().cpu(), pca_model.components.T.cpu())
    rows[1]["max_principal_angle_deg"] = float(angles.max())
    figures = []
    if data.kind == "image":
        x = to_float(data.test.x[:10])
        with torch.no_grad():
            recs = [(f"PCA-{k}", pca.model.reconstruct(x)), (f"linear AE-{k}", lin.model.reconstruct(x)),
                    (f"deep AE-{k}", deep.model.reconstruct(x))]
        figures.append(_image_rows([("original", x), *recs], ctx.out / "reconstructions.png",
                                   f"{data.name}: test images and their {k}-d reconstructions"))
    fig = _figure(5.5, 3.4)
    ax = fig.subplots()
    ax.plot(np.arange(1, len(angles) + 1), angles.numpy(), "o-", markersize=3)
    ax.axhline(SPAN_DEGREES, color="gray", linestyle="--", linewidth=0.8, label=f"{SPAN_DEGREES:g}°: spans")
    ax.legend(fontsize=8)
    ax.set_xlabel("principal angle index")
    ax.set_ylabel("degrees")
    ax.set_title("linear AE decoder vs PCA subspace")
    ax.grid(alpha=0.3)
    figures.append(_save(fig, ctx.out / "principal_angles.png"))
    short = too_short(ctx, min(steps_of(len(data.train), cfg.linear_batch_size, cfg.linear_epochs),
                               steps_of(len(data.train), cfg.batch_size, cfg.epochs)))
    summary = pca_vs_ae_summary(data.name, data.test.x.shape[0], k, d, arch, p, rows[1]["test_sse_per_image"],
                                rows[2]["test_sse_per_image"], angles.tolist(), short)
    return ExperimentResult("pca-vs-ae", rows, summary, figures,
                            {"principal_angles_deg": angles.tolist(), "deep_hidden": list(hidden)})


# ----------------------------------------------------------------------------------------------- code-size


@dataclasses.dataclass(frozen=True)
class CodeSizeConfig:
    sizes: tuple[int, ...] = ()  # (): 2, 4, 8, … below d, and d (--quick: 2, 8, 32, … below d, and d)
    hidden: tuple[int, ...] = ()  # (): deep_hidden(d) at each size, widened to the code where narrower
    epochs: int = 20
    lr: float = 2e-3
    lr_warmup_epochs: float = 1.0
    batch_size: int = 128
    activation: str = "silu"
    min_steps: int = MIN_STEPS  # small data: epochs not set explicitly are raised to reach this many steps
    data_dir: str | None = None

    def __post_init__(self) -> None:
        check(all(s >= 1 for s in self.sizes), "code-size: sizes must be positive, e.g. --set sizes=2,8,32")
        check(self.epochs >= 1, "code-size: epochs must be ≥ 1")


CODE_SIZE_QUICK = {"min_steps": 0, "epochs": 4, "batch_size": 64}


# code-size's findings: PCA exact at code size d (error ≤ 1e-6 × its error at the smallest size); the AE
# "approaches the identity" at code size d when its error there is < 5% of its error at the smallest size; the
# code stops being the bottleneck where every larger size is within 10% of the AE's lowest error
IDENTITY_SHARE = 0.05
PLATEAU = 0.10


def code_size_summary(data: str, d: int, rows: list[dict[str, Any]], epochs: int, short: str = "") -> str:
    """code-size's summary from its rows (``code_size``, ``pca_test_sse_per_image``, ``ae_test_sse_per_image``,
    ``ae_over_pca``; sorted by code size)."""
    ks = [r["code_size"] for r in rows]
    pca = [r["pca_test_sse_per_image"] for r in rows]
    ae = [r["ae_test_sse_per_image"] for r in rows]
    better = [k for k, p, a in zip(ks, pca, ae) if a < p]
    text = (f"On {data} (input size {d}), the deep AE's test error is below PCA's at code sizes "
            f"{', '.join(map(str, better)) or 'none'} of {', '.join(map(str, ks))}.  At code size {ks[0]}: PCA "
            f"{pca[0]:.3f}, AE {ae[0]:.3f} ({rows[0]['ae_over_pca']:.2f}×).")
    if ks[-1] == d:
        text += "  " + finding(
            f"PCA is exact at code size = input size ({d})", pca[-1] <= 1e-6 * max(pca[0], 1e-12),
            f"{pca[-1]:.2g} per image (threshold 10⁻⁶ × its error at code size {ks[0]})",
            negation=f"PCA is not exact at code size = input size ({d})") + "  " + finding(
            f"the AE approaches the identity at code size {d}", ae[-1] < IDENTITY_SHARE * ae[0],
            f"{ae[-1]:.3f} per image, {100 * ae[-1] / max(ae[0], 1e-12):.1f}% of its error at code size {ks[0]} "
            f"(threshold {100 * IDENTITY_SHARE:g}%)",
            negation=f"the AE does not reach the identity at code size {d} in {epochs} epochs", short=short)
    else:
        text += f"  The sizes stop below the input size {d}: no test of the identity."
    if len(ks) >= 3:
        floor = min(ae)
        # the smallest code size from which on every error is within PLATEAU of the lowest
        plateau = next(k for i, k in enumerate(ks) if all(a <= (1 + PLATEAU) * floor for a in ae[i:]))
        holds = plateau < ks[-1]
        text += "  " + finding(
            f"the code stops being what limits the AE from code size {plateau if holds else ks[-2]} on (the depth "
            "of the network and the length of training do)", holds,
            f"its error stays within {100 * PLATEAU:g}% of its lowest ({floor:.3f}) from code size {plateau} to {ks[-1]}"
            if holds else f"its error is within {100 * PLATEAU:g}% of its lowest ({floor:.3f}) only at code size "
                          f"{ks[-1]}",
            negation=f"the AE's error does not settle within {100 * PLATEAU:g}% of its lowest before the largest "
                     "code size", short=short)
    return text


@register("code-size")
def code_size_sweep(ctx: ExperimentContext) -> ExperimentResult:
    """Test error against code size, PCA vs the deep AE."""
    cfg, data_cfg, data = _setup(CodeSizeConfig, ctx, CODE_SIZE_QUICK, "code-size")
    d = math.prod(data.shape)
    # every power of 2 below d, and d (--quick: every other one, 2, 8, 32, …)
    sizes = sorted(set(cfg.sizes or [*(2 ** i for i in range(1, 31, 2 if ctx.quick else 1) if 2 ** i < d), d]))
    check(max(sizes) <= d, f"code-size: sizes must be at most the input size {d}")
    base = cfg.hidden or deep_hidden(d, code_size(d))
    rows = []
    for k in sizes:
        hidden = tuple(max(w, k) for w in base)  # no layer narrower than the code: the AE can be the identity
        pca = _train(ctx, data_cfg, f"pca-{k}", "pca", latent_dim=k)
        ae = _train(ctx, data_cfg, f"deep-ae-{k}", "ae", hidden=hidden, latent_dim=k, **_deep_options(cfg))
        p, a = _evaluation(pca)["sse_per_image"], _evaluation(ae)["sse_per_image"]
        rows.append({"code_size": k, "architecture": "-".join(str(v) for v in (d, *hidden, k)),
                     "pca_test_sse_per_image": p, "ae_test_sse_per_image": a, "ae_over_pca": a / max(p, 1e-12)})
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    ks = [r["code_size"] for r in rows]
    ax.plot(ks, [r["pca_test_sse_per_image"] for r in rows], "o-", label="PCA")
    ax.plot(ks, [r["ae_test_sse_per_image"] for r in rows], "s-", label=f"deep AE ({cfg.epochs} epochs)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("code size")
    ax.set_ylabel("test squared error per image")
    ax.set_title(f"{data.name}: error against code size (input size {d})")
    ax.grid(alpha=0.3)
    ax.legend()
    figures = [_save(fig, ctx.out / "code_size.png")]
    short = too_short(ctx, steps_of(len(data.train), cfg.batch_size, cfg.epochs))
    summary = code_size_summary(data.name, d, rows, cfg.epochs, short)
    return ExperimentResult("code-size", rows, summary, figures)


# ----------------------------------------------------------------------------------------------- sparsity


@dataclasses.dataclass(frozen=True)
class SparsityConfig:
    units: int = 0  # hidden (code) units of the one-layer sparse AE; 0: min(d, max(64, d // 4)) (196 for 784)
    l1: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)  # λ of λ·Σ|a_i| per sample
    rho: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2)  # targets of the KL penalty
    beta: float = 1.0  # weight of Σ_j KL(ρ‖ρ̂_j)
    filters: tuple[float, ...] = ()  # λ values whose filters are drawn; (): first, middle and last of l1
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    min_steps: int = MIN_STEPS  # small data: epochs not set explicitly are raised to reach this many steps
    data_dir: str | None = None

    def __post_init__(self) -> None:
        check(len(self.l1) >= 1 and all(v >= 0 for v in self.l1), "sparsity: l1 values must be ≥ 0")
        check(all(0 < r < 1 for r in self.rho), "sparsity: rho values must be in (0, 1), e.g. 0.05")
        check(self.epochs >= 1, "sparsity: epochs must be ≥ 1")


SPARSITY_QUICK = {"min_steps": 0, "l1": (0.0, 0.1, 1.0), "rho": (0.05, 0.2), "epochs": 3, "batch_size": 64}


def filter_images(weight: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """First-layer weights (units, d) as images in [0, 1]: grey is 0, each filter scaled by its max |w|."""
    w = weight.detach().float().cpu()
    w = w / w.abs().amax(1, keepdim=True).clamp_min(1e-12)
    return (0.5 + 0.5 * w).reshape(-1, *shape)


@register("sparsity")
def sparsity_sweep(ctx: ExperimentContext) -> ExperimentResult:
    """A one-hidden-layer sparse AE: L1 and KL(ρ‖ρ̂) penalties at several weights, sparsity vs test error."""
    from ..viz.plots import save_image_grid

    cfg, data_cfg, data = _setup(SparsityConfig, ctx, SPARSITY_QUICK, "sparsity")
    d = math.prod(data.shape)
    units = cfg.units or min(d, max(64, d // 4))
    common = {"latent_dim": units, "epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size}
    rows, runs = [], {}
    for lam in cfg.l1:
        opts = {"sparsity": "l1", "sparsity_weight": lam} if lam > 0 else {"sparsity": "none",
                                                                             "code_activation": "relu"}
        run = _train(ctx, data_cfg, f"l1-{lam:g}", "sparse-ae", **common, **opts)
        runs[lam] = run
        rows.append(_sparsity_row("l1", "lambda", lam, run))
    for rho in cfg.rho:
        run = _train(ctx, data_cfg, f"kl-rho-{rho:g}", "sparse-ae", **common, sparsity="kl", rho=rho,
                     sparsity_weight=cfg.beta)
        rows.append(_sparsity_row("kl", "rho", rho, run))
    l1_rows = [r for r in rows if r["penalty"] == "l1"]
    kl_rows = [r for r in rows if r["penalty"] == "kl"]
    fig = _figure(10.5, 3.8)
    axes = fig.subplots(1, 2)
    for ax, part, key, xlabel in ((axes[0], l1_rows, "lambda", "λ (L1 weight)"),
                                  (axes[1], kl_rows, "rho", f"ρ (KL target, β = {cfg.beta:g})")):
        if not part:
            ax.set_axis_off()
            continue
        xs = [r[key] for r in part]
        ax.plot(xs, [r["test_sse_per_image"] for r in part], "o-", color="C0")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test squared error per image", color="C0")
        if key == "lambda":
            ax.set_xscale("symlog", linthresh=min([x for x in xs if x > 0], default=1.0))
        ax2 = ax.twinx()
        ax2.plot(xs, [r["fraction_inactive"] for r in part], "s--", color="C1")
        ax2.set_ylabel("fraction inactive (|a| < 0.01)", color="C1")
        ax2.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{data.name}: one-layer sparse AE, {units} units")
    figures = [_save(fig, ctx.out / "sparsity.png")]
    if data.kind == "image":
        chosen = cfg.filters or tuple(dict.fromkeys((cfg.l1[0], cfg.l1[len(cfg.l1) // 2], cfg.l1[-1])))
        for lam in chosen:
            if lam not in runs:
                continue
            sparse_ae = cast(AE, runs[lam].model)  # a sparse-ae run (typing only)
            w = cast(torch.Tensor, sparse_ae.encoder[0].weight)  # the first Linear of the MLP encoder
            name = f"filters_l1_{lam:g}.png"
            save_image_grid(filter_images(w, data.shape), ctx.out / name, nrow=int(math.ceil(math.sqrt(units))),
                            title=f"encoder filters, λ = {lam:g}")
            figures.append(name)
    short = too_short(ctx, steps_of(len(data.train), cfg.batch_size, cfg.epochs))
    summary = sparsity_summary(data.name, units, l1_rows, kl_rows, cfg.beta, short)
    return ExperimentResult("sparsity", rows, summary, figures)


def _seq(part: list[dict[str, Any]], key: str, fmt: str, sep: str = " → ") -> str:
    return sep.join(format(r[key], fmt) for r in part)


def sparsity_summary(data: str, units: int, l1_rows: list[dict[str, Any]], kl_rows: list[dict[str, Any]],
                     beta: float, short: str = "") -> str:
    """sparsity's summary from its rows (L1 rows in increasing λ, KL rows): the findings are that
    ``fraction_inactive`` and the test error rise with λ (each value ≥ the one before, the last above the first)."""
    text = f"One-hidden-layer sparse AE with {units} relu units on {data}."
    l1_rows = sorted(l1_rows, key=lambda r: r["lambda"])
    if len(l1_rows) >= 2:
        inact = [r["fraction_inactive"] for r in l1_rows]
        errs = [r["test_sse_per_image"] for r in l1_rows]
        lams = _seq(l1_rows, "lambda", "g")
        text += (
            "  " + finding("the share of inactive activations rises with the L1 weight", _monotone(inact)
                           and inact[-1] > inact[0],
                           f"as λ goes {lams}, fraction_inactive goes {_seq(l1_rows, 'fraction_inactive', '.2f')} "
                           f"(dead units {_seq(l1_rows, 'dead_units', 'd')}; rising: each value ≥ the one before)",
                           negation="the share of inactive activations does not rise steadily with the L1 weight",
                           short=short)
            + "  " + finding("the test error rises with the L1 weight", _monotone(errs) and errs[-1] > errs[0],
                             f"{_seq(l1_rows, 'test_sse_per_image', '.2f')}",
                             negation="the test error does not rise steadily with the L1 weight", short=short))
    elif l1_rows:
        r = l1_rows[0]
        text += (f"  L1 at λ = {r['lambda']:g} only: fraction_inactive {r['fraction_inactive']:.2f}, dead units "
                 f"{r['dead_units']}, test error {r['test_sse_per_image']:.2f}.")
    if kl_rows:
        text += (
            f"\n\nKL (sigmoid code, β = {beta:g}): for ρ = {_seq(kl_rows, 'rho', 'g', ', ')} the mean activation "
            f"is {_seq(kl_rows, 'mean_abs_activation', '.3f', ', ')}, fraction_inactive "
            f"{_seq(kl_rows, 'fraction_inactive', '.2f', ', ')} and the test error "
            f"{_seq(kl_rows, 'test_sse_per_image', '.2f', ', ')}."
        )
    return text


def _sparsity_row(penalty: str, key: str, value: float, run: Run) -> dict[str, Any]:
    ev = _evaluation(run)
    return {"penalty": penalty, key: value, "test_sse_per_image": ev["sse_per_image"],
            "mean_abs_activation": ev["mean_abs_activation"], "fraction_inactive": ev["fraction_inactive"],
            "dead_units": ev["dead_units"]}


# ----------------------------------------------------------------------------------------------- stacked


@dataclasses.dataclass(frozen=True)
class StackedConfig:
    latent_dim: int = 0  # 0: code_size(d)
    hidden: tuple[int, ...] = ()  # (): deep_hidden(d)
    activation: str = "sigmoid"
    pretrain_epochs: int = 5  # per greedy stage
    finetune_epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    min_steps: int = MIN_STEPS  # small data: epochs not set explicitly are raised to reach this many steps
    data_dir: str | None = None

    def __post_init__(self) -> None:
        check(self.pretrain_epochs >= 1, "stacked: pretrain_epochs must be ≥ 1")
        check(self.finetune_epochs >= 1, "stacked: finetune_epochs must be ≥ 1")


STACKED_QUICK = {"min_steps": 0, "pretrain_epochs": 1, "finetune_epochs": 3, "batch_size": 64}


# stacked's finding: one training beats the other when its test error is lower by more than 5%
STACKED_MARGIN = 0.05


def stacked_summary(data: str, arch: str, activation: str, total: int, finetune_epochs: int,
                    errors: list[float], stages: list[dict[str, Any]], short: str = "") -> str:
    """stacked's summary from the test errors (pretraining only, pretraining + fine-tuning, from scratch) and
    the greedy stages' final losses."""
    p, g, s = errors
    rel = (s - g) / max(s, 1e-12)  # > 0: pretraining + fine-tuning has the lower error
    negation = ("training from scratch beats greedy pretraining + fine-tuning" if -rel > STACKED_MARGIN
                else "neither greedy pretraining + fine-tuning nor training from scratch wins")
    return (
        f"Stacked tied AE {arch} ({activation}) on {data}, {total} epochs in all.  Test squared error per image: "
        f"greedy pretraining alone {p:.3f}; pretraining + {finetune_epochs} fine-tuning epochs {g:.3f}; the same "
        f"architecture from scratch for {total} epochs {s:.3f}.  "
        + finding("greedy pretraining + fine-tuning beats training from scratch", rel > STACKED_MARGIN,
                  f"its error is {100 * abs(rel):.1f}% {'lower' if rel > 0 else 'higher'} "
                  f"(threshold {100 * STACKED_MARGIN:g}% lower)", negation=negation, short=short)
        + "\n\nGreedy stages (final train / val reconstruction loss of each layer's AE): "
        + "; ".join(f"{st['stage']} {st['train_recon']:.3g} / {st['val_recon']:.3g}" for st in stages) + "."
    )


@register("stacked")
def stacked(ctx: ExperimentContext) -> ExperimentResult:
    """Greedy layer-wise pretraining then fine-tuning vs the same stacked AE trained from scratch."""
    cfg, data_cfg, data = _setup(StackedConfig, ctx, STACKED_QUICK, "stacked")  # --epochs sets the fine-tuning epochs
    d = math.prod(data.shape)
    k = cfg.latent_dim or code_size(d)
    hidden = cfg.hidden or deep_hidden(d, k)
    n_stages = len(hidden) + 1
    total = n_stages * cfg.pretrain_epochs + cfg.finetune_epochs
    common = {"hidden": hidden, "latent_dim": k, "activation": cfg.activation, "lr": cfg.lr,
              "batch_size": cfg.batch_size, "schedule": "cosine"}
    greedy = _train(ctx, data_cfg, "greedy", "stacked-ae", pretrain_epochs=cfg.pretrain_epochs,
                    finetune_epochs=cfg.finetune_epochs, **common)
    scratch = _train(ctx, data_cfg, "scratch", "stacked-ae", pretrain_epochs=0, finetune_epochs=total, **common)
    # the model after greedy pretraining alone (the weights fine-tuning started from)
    pre_model = type(greedy.model)(greedy.model.config)
    load_state(pre_model, read_tensors(ctx.run_dir("greedy") / PRETRAINED)[0], "pretrained weights")
    pre_eval = {s: evaluate(pre_model, data, s) for s in ("test", "val")}
    arch = "-".join(str(v) for v in (d, *hidden, k))
    rows = [
        {"model": "greedy pretraining only", "epochs": f"{n_stages}×{cfg.pretrain_epochs} (per layer)",
         "test_sse_per_image": pre_eval["test"]["sse_per_image"], "val_sse_per_image": pre_eval["val"]["sse_per_image"],
         "val_recon": pre_eval["val"]["recon"]},
        {"model": "greedy pretraining + fine-tuning",
         "epochs": f"{n_stages}×{cfg.pretrain_epochs} + {cfg.finetune_epochs}",
         "test_sse_per_image": _evaluation(greedy)["sse_per_image"], "val_sse_per_image": _val_sse(greedy, data),
         "val_recon": greedy.metrics[-1]["val_recon"]},
        {"model": "from scratch", "epochs": str(total), "test_sse_per_image": _evaluation(scratch)["sse_per_image"],
         "val_sse_per_image": _val_sse(scratch, data), "val_recon": scratch.metrics[-1]["val_recon"]},
    ]
    stages = []
    for r in greedy.metrics:
        if str(r.get("stage", "")).startswith("pretrain") and r["epoch"] == cfg.pretrain_epochs:
            stages.append({"stage": r["stage"], "train_recon": r["train_recon"], "val_recon": r["val_recon"]})
    # learning curves on a common epoch axis: greedy stages, then fine-tuning; scratch from epoch 1
    fig = _figure(6.4, 4.2)
    ax = fig.subplots()
    sc = [r for r in scratch.metrics if r.get("stage") == "finetune"]
    ax.plot([r["epoch"] for r in sc], [r["val_recon"] for r in sc], "-", label="from scratch")
    ft = [r for r in greedy.metrics if r.get("stage") == "finetune"]
    offset = n_stages * cfg.pretrain_epochs
    ax.plot([offset] + [offset + r["epoch"] for r in ft], [pre_eval["val"]["recon"]] + [r["val_recon"] for r in ft],
            "-", label="greedy pretraining, then fine-tuning")
    ax.plot([offset], [pre_eval["val"]["recon"]], "o", color="C1")
    for i in range(1, n_stages + 1):
        ax.axvline(i * cfg.pretrain_epochs, color="gray", linewidth=0.6, linestyle=":")
    ax.set_xlabel(f"epoch (greedy stages: {n_stages} × {cfg.pretrain_epochs} epochs, dotted)")
    ax.set_ylabel("validation reconstruction loss per sample")
    ax.set_yscale("log")
    ax.set_title(f"{data.name}: stacked AE {arch} ({cfg.activation}, tied)")
    ax.grid(alpha=0.3)
    ax.legend()
    figures = [_save(fig, ctx.out / "learning_curves.png")]
    short = too_short(ctx, steps_of(len(data.train), cfg.batch_size, total))
    summary = stacked_summary(data.name, arch, cfg.activation, total, cfg.finetune_epochs,
                              [r["test_sse_per_image"] for r in rows], stages, short)
    return ExperimentResult("stacked", rows, summary, figures, {"stages": stages, "architecture": arch})


# ----------------------------------------------------------------------------------------------- denoising


@dataclasses.dataclass(frozen=True)
class DenoisingConfig:
    corruptions: tuple[str, ...] = ("mask:0.25", "gaussian:0.1", "salt-pepper:0.1")
    latent_dim: int = 0  # 0: code_size(d)
    hidden: tuple[int, ...] = ()  # (): deep_hidden(d)
    epochs: int = 20
    lr: float = 2e-3
    lr_warmup_epochs: float = 1.0
    batch_size: int = 128
    activation: str = "silu"
    min_steps: int = MIN_STEPS  # small data: epochs not set explicitly are raised to reach this many steps
    data_dir: str | None = None

    def __post_init__(self) -> None:
        from ..data.corrupt import parse_corruption

        check(len(self.corruptions) >= 1, "denoising: give at least one corruption, e.g. --set corruptions=mask:0.25")
        for c in self.corruptions:
            check(parse_corruption(c) is not None, "denoising: 'none' is not a corruption")
        check(self.epochs >= 1, "denoising: epochs must be ≥ 1")


DENOISING_QUICK = {"min_steps": 0, "epochs": 3, "batch_size": 64}


# denoising's finding, per corruption: the denoising AE's error on corrupted inputs is ≥ 5% below the plain AE's
DENOISING_GAIN = 5.0


def denoising_summary(data: str, arch: str, epochs: int, rows: list[dict[str, Any]], clean_sse: float,
                      short: str = "") -> str:
    """denoising's summary from its rows (one per corruption: ``ae_sse_corrupted``, ``dae_sse_corrupted``,
    ``improvement_pct``, ``dae_sse_clean``) and the plain AE's error on clean inputs."""
    text = (f"Deep AE {arch} on {data}, {epochs} epochs each; below, the squared error per test image between "
            "the reconstruction of a corrupted input and the clean input, plain AE → denoising AE trained with that "
            "corruption.")
    for r in rows:
        c = r["corruption"]
        text += "  " + finding(
            f"training on {c} lowers the error on {c} inputs", r["improvement_pct"] >= DENOISING_GAIN,
            f"{r['ae_sse_corrupted']:.3f} → {r['dae_sse_corrupted']:.3f} ({-r['improvement_pct']:+.1f}%; "
            f"threshold -{DENOISING_GAIN:g}%)", negation=f"training on {c} does not lower the error on {c} inputs",
            short=short)
    return (text + f"  On clean inputs: plain AE {clean_sse:.3f}, denoising AEs "
            + ", ".join(f"{r['dae_sse_clean']:.3f}" for r in rows) + ".")


@register("denoising")
def denoising(ctx: ExperimentContext) -> ExperimentResult:
    """Plain vs denoising deep AEs: the error of reconstructing clean test images from corrupted ones."""
    from ..data.corrupt import corrupt, parse_corruption, value_range

    cfg, data_cfg, data = _setup(DenoisingConfig, ctx, DENOISING_QUICK, "denoising")
    d = math.prod(data.shape)
    k = cfg.latent_dim or code_size(d)
    hidden = cfg.hidden or deep_hidden(d, k)
    common = {"hidden": hidden, "latent_dim": k, **_deep_options(cfg)}
    clean = _train(ctx, data_cfg, "clean", "ae", **common)
    low, high = value_range(data)
    rows, strips = [], []
    x = to_float(data.test.x[:8])
    for spec in cfg.corruptions:
        c = parse_corruption(spec)
        assert c is not None  # DenoisingConfig rejects "none"
        dae = _train(ctx, data_cfg, f"dae-{c.kind}-{c.level:g}", "ae", corruption=str(c), **common)
        e_clean_c = float(corrupted_errors(clean.model, data.test.x, c, low=low, high=high).mean())
        e_dae_c = float(corrupted_errors(dae.model, data.test.x, c, low=low, high=high).mean())
        rows.append({"corruption": str(c), "ae_sse_corrupted": e_clean_c, "dae_sse_corrupted": e_dae_c,
                     "improvement_pct": 100 * (1 - e_dae_c / e_clean_c),
                     "ae_sse_clean": _evaluation(clean)["sse_per_image"], "dae_sse_clean": _evaluation(dae)["sse_per_image"]})
        if data.kind == "image":
            noisy = corrupt(x, c.kind, c.level, generator=torch.Generator().manual_seed(0), low=low, high=high)
            with torch.no_grad():
                strips += [(f"{c} input", noisy), ("AE", clean.model.reconstruct(noisy)),
                           ("denoising AE", dae.model.reconstruct(noisy))]
    figures = []
    if strips:
        figures.append(_image_rows([("clean", x), *strips], ctx.out / "denoising.png",
                                   f"{data.name}: corrupted test inputs, reconstructed by a plain and a denoising AE"))
    fig = _figure(6.0, 3.8)
    ax = fig.subplots()
    pos = np.arange(len(rows))
    ax.bar(pos - 0.2, [r["ae_sse_corrupted"] for r in rows], 0.4, label="plain AE")
    ax.bar(pos + 0.2, [r["dae_sse_corrupted"] for r in rows], 0.4, label="denoising AE")
    ax.set_xticks(pos, [r["corruption"] for r in rows])
    ax.set_ylabel("test squared error per image vs clean input")
    ax.set_title(f"{data.name}: reconstructing clean images from corrupted ones")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    figures.append(_save(fig, ctx.out / "denoising_errors.png"))
    short = too_short(ctx, steps_of(len(data.train), cfg.batch_size, cfg.epochs))
    summary = denoising_summary(data.name, "-".join(str(v) for v in (d, *hidden, k)), cfg.epochs, rows,
                                _evaluation(clean)["sse_per_image"], short)
    return ExperimentResult("denoising", rows, summary, figures)


__all__ = ["code_size", "deep_hidden", "filter_images"]
