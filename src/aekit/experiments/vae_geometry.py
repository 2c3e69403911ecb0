"""VAE latent geometry: ``ae-vs-vae`` (completeness and continuity) and ``beta-sweep`` (disentanglement).

``aekit experiment ae-vs-vae --data fashion-mnist`` trains the same encoder / decoder as a plain AE and as a
VAE and measures the two properties the notes claim for a VAE's latent space:

- **completeness** (any point of the prior decodes to a plausible image): ``n_samples`` draws from N(0, I)
  are decoded (for the AE also draws from a full-covariance Gaussian fitted to its training codes, the fair
  version) and scored by a small CNN trained on the real training images (:mod:`aekit.evaluate.classifier`):
  ``max_prob`` = the classifier's mean confidence, ``domain_fid`` = Fréchet distance between its
  penultimate features of the generated and of the real test images (lower is better);
- **continuity** (nearby codes decode to similar images), as the notes define it: the perturbation measure of
  :mod:`aekit.evaluate.continuity` at the decode sites (the VAE's prior, the AE's fitted Gaussian, both models'
  test codes), per δ in ``deltas``: median and 95th percentile of the decoded change in pixels and classifier
  features (over the mean distance of two random test images) and the share of changed labels
  (``continuity.csv``; the summary names the more continuous model per measure with a stated tie rule);
- **path diagnostics** (how *evenly* a straight path changes, not continuity): straight paths between the codes
  of ``n_paths`` random pairs of test images, ``path_steps`` points each, decoded: ``path_step_ratio`` = largest decoded
  step ‖x_{t+1} − x_t‖ / mean step, averaged over paths (1 = perfectly even, large = a jump), the same ratio
  in the classifier's penultimate features (``path_feature_step_ratio``: a pixel cross-fade scores 1 in pixels
  but not there), and
  ``path_entropy`` = the classifier's mean entropy (nats) along the paths (high = images of no class).

``--set betas=0.1,0.3,1,3`` trains one VAE per KL weight β next to the AE (β = 1 is the comparison in the
summary) and adds ``tradeoff.png``: prior-sample domain FID against the path-step ratio, one point per model.

``aekit experiment beta-sweep --data dsprites`` trains the β-VAE of Higgins et al. (2017) — 4 stride-2
convolutions (32, 32, 64, 64 channels, kernel 4), a fully connected layer of 256 (Burgess et al. 2018;
disentanglement_lib), 10 latent units, Bernoulli likelihood; the decoder mirrors it — for each
β ∈ {1, 2, 4, 8} with the same seed on a deterministic subsample of dSprites, and reports the ELBO, KL,
active units and the four disentanglement metrics of :mod:`aekit.evaluate.disentanglement` on the codes
(posterior means) of held-out test images, plus a traversal grid per β.  ``--set seeds=0,1,2`` trains every β
with each seed and reports mean ± sd (disentanglement scores vary much between seeds: Locatello et al. 2019).

Both reuse a finished run under ``OUT/runs/NAME`` when its saved configuration matches (and resume an
interrupted one), so a killed sweep continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import time
from typing import Any, Literal

import numpy as np
import torch

from ..config import check, to_dict
from ..data import DataConfig, Dataset, load_data, to_float
from ..errors import AekitError, DataError
from ..latent import encode_all
from ..models.base import Autoencoder
from ..pipeline import train
from ..train import Run, load_run, read_config
from ..train.run import WEIGHTS
from ..train.trainer import CHECKPOINT
from . import (
    MIN_STEPS,
    ExperimentContext,
    ExperimentResult,
    enough_steps,
    judged_images,
    markdown_table,
    register,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- shared


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def _asked_precision(opts: dict[str, Any]) -> str | None:
    """The precision ``opts`` ask for (the ``bf16`` alias or ``precision``), None for ``auto``."""
    if opts.get("bf16"):
        return "bf16"
    asked = opts.get("precision", "auto")
    return None if asked == "auto" else str(asked)


def _saved_options(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run's model and training options, with the defaults of fields added since it was written (a
    ``vqvae`` run from before ``prior_kind`` existed is a ``pixelcnn`` run), as loading it would read them."""
    from ..config import from_dict
    from ..models import get_spec
    from ..train.config import TrainConfig

    raw = {**saved["model_config"], **saved["train"]}
    try:
        model_cfg = to_dict(get_spec(saved["model"]).make_config(saved["model_config"], name=saved["model"]))
        train_cfg = to_dict(from_dict(TrainConfig, saved["train"], what="a saved run"))
    except AekitError:
        return raw  # a config this version cannot read: matched as written (a mismatch retrains)
    return {**model_cfg, **train_cfg, **raw}


def train_or_reuse(ctx: ExperimentContext, name: str, model: str, data: DataConfig, options: dict[str, Any]) -> Run:
    """Train ``model`` into ``ctx.run_dir(name)``, or reuse / resume the run there when its saved
    configuration (model, data and every given option) matches.  The seed is ``--seed`` unless ``options``
    gives one.  An explicit precision (``bf16`` / ``precision``) must match what the run trained in; with
    ``auto`` a run is reused in whichever precision it trained (``auto`` may choose otherwise on this machine
    than where the run was trained, and retraining would replace hours of work: the log says which)."""
    from ..train.config import settings_of_a_saved_run

    out = ctx.run_dir(name)
    opts = {"seed": ctx.seed, **options}
    # config.json: precision alone; the memory format is a speed setting (the layouts round differently, within
    # the runs' own noise), so a run is reused in whichever layout it trained, and the log says which
    generic = {k: v for k, v in opts.items() if k not in ("bf16", "precision", "channels_last", "memory_format")}
    asked = _asked_precision(opts)
    if (out / "config.json").exists():
        try:
            saved = read_config(out)
        except AekitError:
            saved = None
        if saved is not None and saved["model"] == model and saved["data"] == to_dict(data):
            stored = _saved_options(saved)
            have = str(settings_of_a_saved_run(saved["train"])["precision"])  # or its bf16 flag, if older
            if asked not in (None, have):
                log.info("not reusing %s: it trained in %s, and %s was asked for (retraining)", out, have, asked)
            elif all(k in stored and _same(v, stored[k]) for k, v in generic.items()):
                if (out / WEIGHTS).exists():
                    log.info("reusing the finished run %s (trained in %s, %s)", out, have,
                             saved["train"].get("memory_format", "nchw"))
                    return load_run(out)
                if (out / CHECKPOINT).exists():
                    log.info("resuming the interrupted run %s (in %s)", out, have)
                    return train(resume=out, report=False, progress=ctx.progress)
    return train(model, data, out, overwrite=True, report=False, progress=ctx.progress, **opts)


@torch.no_grad()
def decode_all(model: Autoencoder, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Decoded means of codes ``z`` (N, d), float32 on the CPU, clamped to [0, 1]."""
    model.eval()
    out = [model.decode(z[i : i + batch_size].to(model.device)).float().cpu().clamp(0.0, 1.0)
           for i in range(0, len(z), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, *model.input_shape)


# ----------------------------------------------------------------------------------------------- ae-vs-vae


@dataclasses.dataclass(frozen=True)
class AeVsVaeConfig:
    latent_dim: int = 16
    arch: Literal["mlp", "conv"] = "mlp"
    hidden: tuple[int, ...] = (512, 256)
    channels: tuple[int, ...] = (32, 64)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    # one VAE per KL weight β; the summary compares the AE with β = 1 (else the first β), and with several β
    # it also shows the trade-off between completeness and even paths (β → 0 turns the VAE into a noisy AE)
    betas: tuple[float, ...] = (1.0,)
    n_samples: int = 10000  # prior draws decoded and scored
    # perturbation continuity (aekit.evaluate.continuity): sites per decode site, and the step sizes δ as
    # fractions of the aggregate codes' per-dimension sd
    n_perturb: int = 2000
    deltas: tuple[float, ...] = (0.1, 0.25, 0.5)
    n_paths: int = 200  # random pairs of test codes
    path_steps: int = 32
    classifier_epochs: int = 3
    classifier_min_steps: int = 600
    # small data: epochs not set explicitly are raised to reach this many steps (below the shared MIN_STEPS so
    # that Fashion-MNIST keeps its 10 epochs = 4,300 steps)
    min_steps: int = 4000
    data_dir: str | None = None
    subsample: int | None = None

    def __post_init__(self) -> None:
        check(self.latent_dim >= 1, "ae-vs-vae: latent_dim must be ≥ 1")
        check(self.epochs >= 1, "ae-vs-vae: epochs must be ≥ 1")
        check(len(self.betas) >= 1 and all(b > 0 for b in self.betas),
              "ae-vs-vae: betas must be > 0, e.g. --set betas=0.3,1,3")
        check(self.n_samples >= 10, "ae-vs-vae: n_samples must be ≥ 10, e.g. --set n_samples=10000")
        check(self.n_paths >= 1 and self.path_steps >= 3, "ae-vs-vae: n_paths ≥ 1 and path_steps ≥ 3")
        check(self.n_perturb >= 10, "ae-vs-vae: n_perturb must be ≥ 10, e.g. --set n_perturb=2000")
        check(len(self.deltas) >= 1 and all(d > 0 for d in self.deltas),
              "ae-vs-vae: deltas must be > 0, e.g. --set deltas=0.1,0.25,0.5")


AE_VS_VAE_QUICK: dict[str, Any] = {"latent_dim": 4, "hidden": (32,), "epochs": 2, "batch_size": 64,
                                   "n_samples": 200, "n_paths": 8, "n_perturb": 100, "classifier_epochs": 1,
                                   "classifier_min_steps": 30, "min_steps": 0}


def _scores(clf: Any, images: torch.Tensor, real: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    from ..evaluate.classifier import classify_all, frechet_distance, gaussian_stats

    feats, probs = classify_all(clf, images)
    return {"max_prob": float(probs.max(1).mean()), "domain_fid": frechet_distance(*gaussian_stats(feats), *real)}


def step_ratio(path_points: torch.Tensor) -> torch.Tensor:
    """Per path, the largest step between consecutive points over the mean step (1 = perfectly even):
    ``path_points`` is (P, steps, F), the result (P,)."""
    p = path_points.double()
    step = (p[:, 1:] - p[:, :-1]).norm(dim=-1)  # (P, steps − 1)
    return step.max(1).values / step.mean(1).clamp_min(1e-12)


@torch.no_grad()
def path_metrics(model: Autoencoder, clf: Any, x: torch.Tensor, pairs: np.ndarray, steps: int) -> dict[str, Any]:
    """Continuity along straight latent paths between the codes of ``x[pairs[:, 0]]`` and ``x[pairs[:, 1]]``.

    Returns ``path_step_ratio`` (mean over paths of max step / mean step, decoded images, L2),
    ``path_feature_step_ratio`` (the same in the classifier's penultimate features: a decoder that only
    cross-fades the two images scores exactly 1 in pixels, not here), ``path_entropy`` (mean classifier entropy
    in nats over every point of every path) and the decoded paths (P, steps, C, H, W) for figures."""
    from ..evaluate.classifier import classify_all

    codes = encode_all(model, x)
    za, zb = codes[torch.from_numpy(pairs[:, 0])], codes[torch.from_numpy(pairs[:, 1])]
    t = torch.linspace(0.0, 1.0, steps)
    z = za[:, None] * (1 - t)[None, :, None] + zb[:, None] * t[None, :, None]  # (P, steps, d)
    imgs = decode_all(model, z.reshape(-1, z.shape[-1]))
    feats, probs = classify_all(clf, imgs)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(1)

    def mean_ratio(points: torch.Tensor) -> float:  # (P·steps, …) → mean over paths
        return float(step_ratio(points.reshape(len(pairs), steps, -1)).mean())

    return {"path_step_ratio": mean_ratio(imgs), "path_feature_step_ratio": mean_ratio(torch.from_numpy(feats)),
            "path_entropy": float(entropy.mean()), "paths": imgs.reshape(len(pairs), steps, *imgs.shape[1:])}


@register("ae-vs-vae")
def ae_vs_vae(ctx: ExperimentContext) -> ExperimentResult:
    """The same encoder/decoder as AE and VAE: prior samples (completeness) and paths (continuity)."""
    from ..evaluate.classifier import classify_all, frechet_distance, gaussian_stats
    from ..evaluate.continuity import aggregate_code_sd, perturbation_continuity, reference_distances
    from ..viz.plots import save_image_grid
    from ..viz.traversal import plot_traversal

    cfg = ctx.config(AeVsVaeConfig, AE_VS_VAE_QUICK, "ae-vs-vae")
    data_cfg = DataConfig(spec=ctx.data, data_dir=cfg.data_dir, subsample=cfg.subsample)
    t0 = time.perf_counter()
    data, clf = judged_images(ctx, cfg, data_cfg, "ae-vs-vae")
    cfg = enough_steps(cfg, ctx, len(data.train))  # not classifier_epochs: it has its own floor
    real_feats, real_probs = classify_all(clf, data.test.x)
    real = gaussian_stats(real_feats)
    clf_acc = float((real_probs.argmax(1) == data.test.y.numpy()).mean())
    rng = np.random.default_rng(ctx.seed)
    ref = torch.from_numpy(np.sort(rng.choice(len(data.train), min(cfg.n_samples, len(data.train)), replace=False)))
    ref_scores = _scores(clf, to_float(data.train.x[ref]), real)
    rows: list[dict[str, Any]] = [{
        "model": "real", "latent_samples": f"{len(ref)} training images", "max_prob": ref_scores["max_prob"],
        "domain_fid": ref_scores["domain_fid"], "path_step_ratio": "", "path_feature_step_ratio": "",
        "path_entropy": "", "test_sse_per_image": "", "test_kl": "",
    }]
    n_test = len(data.test)
    pairs = rng.integers(0, n_test, size=(cfg.n_paths, 2))
    pairs[:, 1] = np.where(pairs[:, 1] == pairs[:, 0], (pairs[:, 0] + 1) % n_test, pairs[:, 1])
    # perturbation continuity: the same test images' codes for every model, one normalising distance for all
    site_rows = torch.from_numpy(np.sort(rng.choice(n_test, min(cfg.n_perturb, n_test), replace=False)))
    ref_dist = reference_distances(data.test.x, clf, seed=ctx.seed)
    # the same network and training for both: a constant LR, and no BatchNorm in the AE (the VAE has none), so
    # the AE's own defaults (BatchNorm, cosine schedule) are switched off here
    common = {"arch": cfg.arch, "latent_dim": cfg.latent_dim, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
              "lr": cfg.lr, "schedule": "constant",
              **({"hidden": cfg.hidden} if cfg.arch == "mlp" else {"channels": cfg.channels})}
    # run name → (model, options); β = 1 keeps the name "vae" so earlier runs are reused
    per_model: dict[str, tuple[str, dict[str, Any]]] = {
        "ae": ("ae", {"norm": "none"}),
        **{_vae_name(b): ("vae", {"beta": float(b)}) for b in dict.fromkeys(cfg.betas)}}
    figures: list[str] = []
    results: dict[str, dict[str, Any]] = {}
    paths: dict[str, torch.Tensor] = {}
    continuity: dict[str, dict[str, Any]] = {}
    for name, (kind, options) in per_model.items():
        run = train_or_reuse(ctx, name, kind, data_cfg, {**common, **options})
        model = run.model.eval()
        g = torch.Generator().manual_seed(ctx.seed)
        samplers = {"N(0, I)": torch.randn(cfg.n_samples, model.latent_dim, generator=g)}
        # decode sites of the continuity measure: where users sample (the VAE's prior; for the AE the Gaussian
        # fitted to its codes) and the codes of test images (reconstructions, edits)
        g_sites = torch.Generator().manual_seed(ctx.seed + 1)
        sites = {"prior": torch.randn(len(site_rows), model.latent_dim, generator=g_sites)}
        if name == "ae":  # the fair version: a full-covariance Gaussian fitted to the AE's training codes
            codes = encode_all(model, data.train.x[: 20000]).double()
            mu, cov = codes.mean(0), torch.cov(codes.T).reshape(model.latent_dim, model.latent_dim)
            chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(len(mu), dtype=cov.dtype))
            eps = torch.randn(cfg.n_samples, model.latent_dim, generator=g, dtype=torch.float64)
            samplers["Gaussian fitted to codes"] = (mu + eps @ chol.T).float()
            eps = torch.randn(len(site_rows), model.latent_dim, generator=g_sites, dtype=torch.float64)
            sites = {"fitted": (mu + eps @ chol.T).float()}
        sites["codes"] = encode_all(model, data.test.x[site_rows])
        sd = aggregate_code_sd(model, data.train.x[: 20000])
        continuity[name] = {"sd": sd.tolist(), **{
            site: perturbation_continuity(functools.partial(decode_all, model), z, sd, ref_dist, clf,
                                          deltas=cfg.deltas, seed=ctx.seed)
            for site, z in sites.items()}}
        cont = path_metrics(model, clf, data.test.x, pairs, cfg.path_steps)
        paths[name] = cont.pop("paths")
        # the VAE's test KL (nats per image): ≈ 0 means a collapsed posterior, whose decoder ignores z
        kl = (run.evaluation or {}).get("kl") if kind == "vae" else None
        for sampler, z in samplers.items():
            imgs = decode_all(model, z)
            key = f"{name}_{'prior' if sampler == 'N(0, I)' else 'fitted'}"
            results[key] = {**_scores(clf, imgs, real), **cont, "test_kl": kl}
            rows.append({"model": _label(name), "latent_samples": sampler, **results[key],
                         "test_sse_per_image": (run.evaluation or {}).get("sse_per_image", float("nan")),
                         "test_kl": "" if kl is None else kl})
            fig = f"samples_{key}.png"
            save_image_grid(imgs[:64], ctx.out / fig, nrow=8, title=f"{_label(name)}: decoded {sampler} draws")
            figures.append(fig)
    # a few paths, AE above VAE, every other step
    show = np.unique(np.linspace(0, cfg.path_steps - 1, min(16, cfg.path_steps)).round().astype(int))
    k = min(4, cfg.n_paths)
    main_vae = _main_vae(cfg)
    grid = torch.cat([torch.cat([paths["ae"][i, show], paths[main_vae][i, show]]) for i in range(k)])
    labels = [f"{m} pair {i + 1}" for i in range(k) for m in ("AE", _label(main_vae))]
    plot_traversal(grid, len(show), ctx.out / "paths.png", row_labels=labels,
                   title=f"straight latent paths between test codes ({len(show)} of {cfg.path_steps} steps)")
    figures.append("paths.png")
    if len(cfg.betas) > 1:
        _plot_tradeoff(results, ctx.out / "tradeoff.png")
        figures.append("tradeoff.png")
    cont_rows = _continuity_rows(continuity)
    _write_csv(ctx.out / "continuity.csv", cont_rows)
    elapsed = time.perf_counter() - t0
    steps = cfg.epochs * math.ceil(len(data.train) / cfg.batch_size)
    short = _too_short(ctx.quick, steps, clf_acc)
    findings = _ae_vs_vae_findings(cfg, results, continuity)
    summary = _ae_vs_vae_summary(data, cfg, results, ref_scores, clf_acc, elapsed, findings, short, ref_dist,
                                 cont_rows, len(site_rows))
    extra = {"config": dataclasses.asdict(cfg), "classifier_test_accuracy": clf_acc, "results": results,
             "continuity": continuity, "reference_distances": ref_dist, "training_steps": steps,
             "too_short": short, "findings": findings, "seconds": elapsed,
             "frechet_check": frechet_distance(*real, *real)}
    return ExperimentResult("ae-vs-vae", rows, summary, figures, extra)


COLLAPSED_KL = 0.1  # nats per image: a VAE below it carries (almost) no information in z


def _vae_name(beta: float) -> str:
    """Run name of the VAE with KL weight ``beta``: ``vae`` for β = 1 (the name from before there were
    several, so those runs are reused), else e.g. ``vae_beta0.3``."""
    return "vae" if beta == 1 else f"vae_beta{beta:g}"


def _label(name: str) -> str:
    return {"ae": "AE", "vae": "VAE"}.get(name, f"VAE β={name.removeprefix('vae_beta')}")


def _main_vae(cfg: AeVsVaeConfig) -> str:
    return _vae_name(1.0 if 1.0 in cfg.betas else cfg.betas[0])


def _collapse_note(label: str, r: dict[str, Any]) -> str:
    """A sentence for a VAE whose test KL is below ``COLLAPSED_KL`` (its decoder ignores z), else ""."""
    kl = r.get("test_kl")
    if kl is None or kl >= COLLAPSED_KL:
        return ""
    return (f" {label} has collapsed (test KL {kl:.3f} nats per image): its decoder ignores z, so its paths are "
            "even because nothing changes along them, and its samples are all alike.")


def _tradeoff(cfg: AeVsVaeConfig, r: dict[str, dict[str, Any]]) -> str:
    """With several β: how prior-sample FID and the path-step ratio move with β (the AE is the β → 0 end)."""
    betas = sorted(set(cfg.betas))
    if len(betas) < 2:
        return ""
    keys = ["ae_prior", *(f"{_vae_name(b)}_prior" for b in betas)]
    fid = [r[k]["domain_fid"] for k in keys]
    ratio = [r[k]["path_step_ratio"] for k in keys]

    def trend(v: list[float]) -> str:
        d = np.diff(v)
        return "rises at every step" if (d > 0).all() else "falls at every step" if (d < 0).all() else "is not monotone"

    return (f"\n\n**Trade-off over β** (AE, then β = {', '.join(f'{b:g}' for b in betas)}): prior-sample domain FID "
            f"{' → '.join(f'{f:.3g}' for f in fid)}; path-step ratio {' → '.join(f'{x:.3f}' for x in ratio)} "
            f"(it {trend(ratio)}). `tradeoff.png` plots one against the other."
            + "".join(_collapse_note(f"β = {b:g}", r[f"{_vae_name(b)}_prior"]) for b in betas))


def _plot_tradeoff(r: dict[str, dict[str, Any]], path: Any) -> None:
    """Prior-sample domain FID against the path-step ratio, one point per model (AE and each β)."""
    from ..viz.plots import _figure, _save

    fig = _figure(5.2, 4.0, layout="tight")
    ax = fig.subplots()
    for name in (k.removesuffix("_prior") for k in r if k.endswith("_prior")):
        p = r[f"{name}_prior"]
        xy = (p["path_step_ratio"], p["domain_fid"])
        ax.plot(*xy, "s" if name == "ae" else "o", color="C3" if name == "ae" else "C0")
        ax.annotate("VAE β=1" if name == "vae" else _label(name), xy, textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.set_xlabel("path-step ratio (max / mean step; 1 = even)")
    ax.set_ylabel("domain FID of prior samples (lower = better)")
    ax.margins(x=0.25, y=0.15)
    ax.set_title("completeness against even straight paths", fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, path)


# A difference between two models is called a tie when it is under TIE_REL of the larger value, or under
# TIE_SE (combined) standard errors where the measure has one: the summary states a winner only above both.
TIE_REL = 0.10
TIE_SE = 2.0
# a run shorter than this (optimiser steps per model), or scored by a classifier below this test accuracy, is
# too short to show a finding: its summary says so instead of stating one
MIN_FINDING_STEPS = 1000
MIN_CLASSIFIER_ACCURACY = 0.8

CONTINUITY_MEASURES = {"pixel_median": "pixel change, median", "pixel_p95": "pixel change, 95th percentile",
                       "feature_median": "feature change, median", "feature_p95": "feature change, 95th percentile",
                       "label_flip": "label flips"}
# the continuity comparisons: (title, the VAE's decode site, the AE's decode site)
CONTINUITY_SITES = (("where users sample (VAE: prior N(0, I); AE: Gaussian fitted to its codes)", "prior", "fitted"),
                    ("at the codes of test images", "codes", "codes"))


def compare(a: float, b: float, se_a: float = 0.0, se_b: float = 0.0, lower_is_better: bool = True
            ) -> dict[str, Any]:
    """Which of two values is better, with the summary's tie rule: ``verdict`` "a", "b" or "tie" (a difference
    under ``TIE_REL`` of the larger |value| or under ``TIE_SE`` combined standard errors), ``factor`` = the
    worse value over the better one (inf when the better is 0), ``threshold`` = the difference a win needs."""
    threshold = max(TIE_REL * max(abs(a), abs(b)), TIE_SE * math.hypot(se_a, se_b))
    if not abs(a - b) > threshold:
        verdict = "tie"
    else:
        verdict = "a" if (a < b) == lower_is_better else "b"
    best, worst = (min(a, b), max(a, b)) if lower_is_better else (max(a, b), min(a, b))
    factor = (worst / best if best != 0 else math.inf) if lower_is_better else (best / worst if worst != 0
                                                                                 else math.inf)
    return {"verdict": verdict, "factor": factor, "threshold": threshold}


def _too_short(quick: bool, steps: int, clf_acc: float) -> list[str]:
    """Why a run is too short to show a finding (empty: it is not)."""
    reasons = []
    if quick:
        reasons.append("a --quick smoke run")
    if steps < MIN_FINDING_STEPS:
        reasons.append(f"{steps:,} training steps per model (< {MIN_FINDING_STEPS:,})")
    if clf_acc < MIN_CLASSIFIER_ACCURACY:
        reasons.append(f"the scoring classifier's test accuracy is {clf_acc:.3f} (< {MIN_CLASSIFIER_ACCURACY})")
    return reasons


def _continuity_rows(continuity: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model, decode site and δ (the continuity table: continuity.csv and summary.md)."""
    rows = []
    for name, per_site in continuity.items():
        for site, res in per_site.items():
            if site == "sd":
                continue
            for delta, v in res["per_delta"].items():
                rows.append({"model": _label(name), "decode_site": SITE_LABELS[site], "delta": float(delta),
                             **{m: v[m] for m in CONTINUITY_MEASURES}, "latent_step_norm": v["step_norm"]})
    return rows


SITE_LABELS = {"prior": "N(0, I)", "fitted": "Gaussian fitted to codes", "codes": "test codes"}


def _write_csv(path: Any, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    from ..fileio import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _ae_vs_vae_findings(cfg: AeVsVaeConfig, r: dict[str, dict[str, Any]], continuity: dict[str, dict[str, Any]]
                        ) -> list[dict[str, Any]]:
    """Every comparison the summary words, as data: the two values, their standard errors, the tie rule's
    verdict ("VAE", "AE" or "tie") and factor.  The summary's sentences are generated from this list."""
    main = _main_vae(cfg)
    out: list[dict[str, Any]] = []

    def add(section: str, site: str, measure: str, delta: float | None, vae: float, ae: float, se_vae: float = 0.0,
            se_ae: float = 0.0, lower_is_better: bool = True) -> None:
        c = compare(vae, ae, se_vae, se_ae, lower_is_better)
        out.append({"section": section, "site": site, "measure": measure, "delta": delta, "vae": vae, "ae": ae,
                    "se_vae": se_vae, "se_ae": se_ae, "lower_is_better": lower_is_better,
                    "verdict": {"a": "VAE", "b": "AE", "tie": "tie"}[c["verdict"]], "factor": c["factor"],
                    "threshold": c["threshold"]})

    v = r[f"{main}_prior"]
    for ae_key, site in (("ae_prior", "AE at N(0, I)"), ("ae_fitted", "AE at a Gaussian fitted to its codes")):
        add("completeness", site, "domain_fid", None, v["domain_fid"], r[ae_key]["domain_fid"])
        add("completeness", site, "max_prob", None, v["max_prob"], r[ae_key]["max_prob"], lower_is_better=False)
    for _, vae_site, ae_site in CONTINUITY_SITES:
        for delta in (f"{d:g}" for d in cfg.deltas):
            cv, ca = continuity[main][vae_site]["per_delta"][delta], continuity["ae"][ae_site]["per_delta"][delta]
            for m in CONTINUITY_MEASURES:
                add("continuity", vae_site, m, float(delta), cv[m], ca[m], cv[f"{m}_se"], ca[f"{m}_se"])
    return out


def _continuity_sentence(findings: list[dict[str, Any]], vae: str) -> str:
    """One measure at one decode site over the δ values: who is more continuous at which δ, and by how much,
    e.g. "the AE is more continuous at δ = 0.25 (0.3 vs 0.2, 1.50×) and 0.5 (…); a tie at δ = 0.1 (…)"."""
    groups: dict[str, list[tuple[float, str]]] = {}
    for f in findings:
        pair = f"{f['vae']:.3g} vs {f['ae']:.3g}"
        if f["verdict"] != "tie":
            pair += ", " + ("∞" if math.isinf(f["factor"]) else f"{f['factor']:.2f}×")
        groups.setdefault(f["verdict"], []).append((f["delta"], pair))
    parts = []
    for who in ("VAE", "AE", "tie"):
        if who not in groups:
            continue
        head = "a tie" if who == "tie" else f"the {vae if who == 'VAE' else 'AE'} is more continuous"
        items = groups[who]
        if len(items) == len(findings) > 1:
            parts.append(f"{head} at every δ ({'; '.join(f'{d:g}: {p}' for d, p in items)})")
        else:
            each = [f"{d:g} ({p})" for d, p in items]
            parts.append(f"{head} at δ = " + (", ".join(each[:-1]) + " and " + each[-1] if len(each) > 1
                                               else each[0]))
    return "; ".join(parts)


def _tally(findings: list[dict[str, Any]], vae: str) -> str:
    n = {who: sum(f["verdict"] == who for f in findings) for who in ("VAE", "AE", "tie")}
    return (f"the {vae} is more continuous in {n['VAE']} of {len(findings)} (measure, δ) comparisons, the AE in "
            f"{n['AE']}, {n['tie']} are ties")


def _ae_vs_vae_summary(data: Dataset, cfg: AeVsVaeConfig, r: dict[str, dict[str, Any]], ref: dict[str, float],
                       clf_acc: float, elapsed: float, findings: list[dict[str, Any]], short: list[str],
                       ref_dist: dict[str, float], cont_rows: list[dict[str, Any]], n_sites: int | None = None) -> str:
    main = _main_vae(cfg)
    v, a = r[f"{main}_prior"], r["ae_prior"]
    vae = _label(main)
    arch = f"MLP {','.join(map(str, cfg.hidden))}" if cfg.arch == "mlp" else f"conv {','.join(map(str, cfg.channels))}"
    text = (
        f"Same encoder/decoder ({arch}, latent {cfg.latent_dim}, {cfg.epochs} epochs) trained as a plain AE and as a "
        f"VAE (β = {', '.join(f'{b:g}' for b in cfg.betas)}) on {data.name}; {cfg.n_samples} latent draws scored by "
        f"a CNN trained on the real training images (test accuracy {clf_acc:.3f}; real training images vs the test "
        f"set: domain FID {ref['domain_fid']:.3g}, max-prob {ref['max_prob']:.3f}). The comparison below is the AE "
        f"against the {vae}. A difference is called a tie when it is under {TIE_REL:.0%} of the larger value or, "
        f"where a standard error is known, under {TIE_SE:g} combined standard errors.\n\n")
    if short:
        text += (f"**Too short to show a finding** ({'; '.join(short)}): the numbers below only show that the "
                 "experiment runs; no sentence here names a winner.\n\n")

    def verdict(f: dict[str, Any]) -> str:
        if short:
            return ""
        if f["verdict"] == "tie":
            return ": a tie"
        winner = vae if f["verdict"] == "VAE" else "the AE"
        return f": {winner} is better ({f['factor']:.2f}×)"

    comp = {(f["site"], f["measure"]): f for f in findings if f["section"] == "completeness"}
    text += "**Completeness** (prior samples decode to plausible images; lower FID and higher confidence are better)"
    for site in ("AE at N(0, I)", "AE at a Gaussian fitted to its codes"):
        fid, conf = comp[site, "domain_fid"], comp[site, "max_prob"]
        text += (f" — {vae} at N(0, I) vs {site}: domain FID {fid['vae']:.3g} vs {fid['ae']:.3g}{verdict(fid)}; "
                 f"classifier confidence {conf['vae']:.3f} vs {conf['ae']:.3f}{verdict(conf)}")
    text += (". (The fitted Gaussian is an ex-post density, not part of the AE.)\n\n"
             f"**Continuity** (nearby codes decode to similar images; `aekit.evaluate.continuity`): at each decode "
             f"site {n_sites or cfg.n_perturb} codes are moved by δ · sd ⊙ (√d · u), u a random unit direction and sd the "
             f"model's aggregate codes' per-dimension standard deviation (so both latent scales are comparable), "
             f"δ ∈ {{{', '.join(f'{d:g}' for d in cfg.deltas)}}}; the decoded change is divided by the mean "
             f"distance between two random test images ({ref_dist['pixel']:.3g} in pixels, "
             f"{ref_dist['feature']:.3g} in the classifier's features): 0 = no change, 1 = as different as two "
             "random images; label flips = share of perturbations that change the classifier's label. Lower = "
             f"more continuous; values are {vae} vs AE, the factor is the larger over the smaller.\n")
    if not short:
        for title, vae_site, _ in CONTINUITY_SITES:
            at_site = [f for f in findings if f["section"] == "continuity" and f["site"] == vae_site]
            text += f"\n- *{title[0].upper()}{title[1:]}*: {_tally(at_site, vae)}."
            for m, words in CONTINUITY_MEASURES.items():
                text += f"\n  - {words}: {_continuity_sentence([f for f in at_site if f['measure'] == m], vae)}."
        text += "\n"
    text += "\n" + markdown_table(cont_rows) + "\n"
    text += (
        f"**Path diagnostics** (reported, not the continuity measure: how *evenly* a straight path between two "
        f"test codes changes, {cfg.n_paths} paths of {cfg.path_steps} steps): largest decoded step / mean step "
        f"{v['path_step_ratio']:.3f} for the {vae} vs {a['path_step_ratio']:.3f} for the AE in pixels, "
        f"{v['path_feature_step_ratio']:.3f} vs {a['path_feature_step_ratio']:.3f} in the classifier's features "
        f"(1 = perfectly even); mean classifier entropy along the paths {v['path_entropy']:.3f} vs "
        f"{a['path_entropy']:.3f} nats (lower = images that look like a class). "
        f"({elapsed:.0f} s in total.)" + _collapse_note(f"The {vae}", v) + _tradeoff(cfg, r))
    return text


# ----------------------------------------------------------------------------------------------- beta-sweep


@dataclasses.dataclass(frozen=True)
class BetaSweepConfig:
    betas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    latent_dim: int = 10
    arch: Literal["mlp", "conv"] = "conv"
    channels: tuple[int, ...] = (32, 32, 64, 64)  # Higgins et al. (2017) / Burgess et al. (2018)
    # arch conv: the fully connected layer between the convs and the code (and mirrored in the decoder) of
    # Burgess et al. (2018) and disentanglement_lib; "--set conv_hidden=" leaves it out
    conv_hidden: tuple[int, ...] = (256,)
    hidden: tuple[int, ...] = (1200, 1200)  # arch mlp only
    epochs: int = 5
    batch_size: int = 64
    lr: float = 5e-4
    subsample: int | None = 100_000  # dSprites images used (train + val + test); None = all 737,280
    metric_rows: int = 10000  # test codes the metrics are computed on
    # DCI's importances: a random forest, or "gbt", the gradient-boosted trees of disentanglement_lib (slower;
    # comparable with published DCI); the FactorVAE score prunes units by std < 0.05 as disentanglement_lib, or
    # by "variance" < 0.05 (aekit's rule before session 16)
    dci: Literal["forest", "gbt"] = "forest"
    factor_vae_prune: Literal["std", "variance"] = "std"
    bf16: bool = False  # bf16 autocast (and channels_last for conv): about 2× faster on CPUs with AMX
    # training seeds: every β is trained once per seed (the same seeds for every β); () = --seed alone.  Runs of
    # seed 0 are named beta4, the others beta4_seed1; several seeds add mean ± sd and a per-seed verdict
    seeds: tuple[int, ...] = ()
    min_steps: int = MIN_STEPS  # small data: epochs not set explicitly are raised to reach this many steps
    data_dir: str | None = None

    def __post_init__(self) -> None:
        check(len(self.betas) >= 1 and all(b >= 0 for b in self.betas), "beta-sweep: betas must be ≥ 0, e.g. 1,4")
        check(self.epochs >= 1, "beta-sweep: epochs must be ≥ 1")
        check(self.metric_rows >= 50, "beta-sweep: metric_rows must be ≥ 50")
        check(len(set(self.seeds)) == len(self.seeds), "beta-sweep: seeds must differ, e.g. --set seeds=0,1,2")


BETA_SWEEP_QUICK: dict[str, Any] = {"betas": (1.0, 4.0), "latent_dim": 4, "channels": (4, 8, 8, 8),
                                    "conv_hidden": (16,), "epochs": 1, "subsample": 1000, "metric_rows": 200,
                                    "batch_size": 64, "min_steps": 0}

# steps per β after which β = 4 beat β = 1 on MIG and the β-VAE score on dSprites with seed 0 (400k sprites, 28
# epochs, the network with the fully connected layer: notes/issue-4.md, session 12); with seed 1 it won MIG only
# (session 14)
LONG_RUN_STEPS = 137_816

METRIC_KEYS = ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness")


@register("beta-sweep")
def beta_sweep(ctx: ExperimentContext) -> ExperimentResult:
    """β-VAEs over a range of β: ELBO, KL, active units, disentanglement scores and traversals per β."""
    from ..evaluate.disentanglement import disentanglement_metrics
    from ..evaluate.likelihood import ACTIVE_THRESHOLD, active_units, kl_per_dim, posterior_stats
    from ..viz.traversal import traversal_figure

    t_all = time.perf_counter()  # the whole experiment, data load included
    cfg = ctx.config(BetaSweepConfig, BETA_SWEEP_QUICK, "beta-sweep")
    data_cfg = DataConfig(spec=ctx.data, data_dir=cfg.data_dir, subsample=cfg.subsample)
    data = load_data(data_cfg)
    cfg = enough_steps(cfg, ctx, len(data.train))
    if data.test.factors is None:
        raise DataError(f"beta-sweep needs data with known generative factors; {data.name!r} has none: "
                        "use --data dsprites")
    pool = torch.from_numpy(np.sort(np.random.default_rng(ctx.seed).permutation(len(data.test))[: cfg.metric_rows]))
    x_pool, f_pool = data.test.x[pool], data.test.factors[pool].numpy()
    common = {"arch": cfg.arch, "latent_dim": cfg.latent_dim, "likelihood": "bernoulli", "epochs": cfg.epochs,
              "batch_size": cfg.batch_size, "lr": cfg.lr,
              **({"channels": cfg.channels, "conv_hidden": cfg.conv_hidden} if cfg.arch == "conv"
                 else {"hidden": cfg.hidden}),
              **({"bf16": True, "channels_last": cfg.arch == "conv"} if cfg.bf16 else {})}
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"config": dataclasses.asdict(cfg), "per_beta": {}}
    figures: list[str] = []
    seeds = cfg.seeds or (ctx.seed,)
    for beta, seed in itertools.product(cfg.betas, seeds):  # β-major: rows ordered by β, then seed
        key = _run_key(beta, seed)
        run = train_or_reuse(ctx, f"beta{key}", "vae", data_cfg, {**common, "beta": float(beta), "seed": seed})
        # the training time of the run (its epochs' time in metrics.csv), also when it was reused or resumed
        train_s = sum(float(r.get("time_s", 0.0) or 0.0) for r in run.metrics)
        model = run.model.eval()
        ev = run.evaluation or {}
        mean, logvar = posterior_stats(model, x_pool)
        n_active, unit_var = active_units(mean)
        metrics = disentanglement_metrics(mean.numpy(), f_pool, quick=ctx.quick, seed=ctx.seed,
                                          dci_importance=cfg.dci, factor_vae_prune=cfg.factor_vae_prune)
        row = {"beta": float(beta), "seed": seed, "elbo": ev.get("elbo"), "recon": ev.get("recon"),
               "kl": ev.get("kl"), "active_units": n_active, **{m: metrics[m] for m in METRIC_KEYS},
               "train_seconds": round(train_s, 1)}
        rows.append(row)
        unit_factors = _unit_factors(metrics, data.factor_names, (unit_var > ACTIVE_THRESHOLD).numpy())
        extra["per_beta"][key] = {
            "kl_per_dim": kl_per_dim(mean, logvar).tolist(), "mig_per_factor": metrics["mig_per_factor"],
            "dci_importance": metrics["importance"], "factor_vae_active_units": metrics["factor_vae_active_units"],
            "beta_vae_train": metrics["beta_vae_train"], "beta_vae_per_factor": metrics["beta_vae_per_factor"],
            "factor_vae_train": metrics["factor_vae_train"], "unit_factors": unit_factors}
        log.info("β=%g seed %d: %s", beta, seed, "  ".join(f"{m} {row[m]:.3f}" for m in ("elbo", "kl", *METRIC_KEYS)))
        if seed == seeds[0]:  # one traversal grid per β, of the first seed's run
            fig = f"traversal_beta{beta:g}.png"
            # around the pool's code nearest the prior's centre, so that −3 … 3 reaches as far either way (the
            # first test image may be a sprite in a corner, which half of every position sweep pushes off the canvas)
            base = int(mean.norm(dim=1).argmin())
            traversal_figure(model, to_float(x_pool[base : base + 1])[0], x_pool, ctx.out / fig,
                             n_dims=min(10, model.latent_dim), unit_notes=unit_factors,
                             title=f"β = {beta:g}: traversals −3 … 3 around the test code nearest 0, rows by KL")
            figures.append(fig)
            extra["per_beta"][key]["traversal_test_row"] = int(pool[base])
    _plot_sweep(rows, ctx.out / "beta_sweep.png")
    figures.insert(0, "beta_sweep.png")
    extra["seconds"] = time.perf_counter() - t_all
    steps = cfg.epochs * math.ceil(len(data.train) / cfg.batch_size)
    extra["training_steps"] = steps
    extra["too_short"] = short = [*(["a --quick smoke run"] if ctx.quick else []),
                                  *([f"{steps:,} training steps per β (< {MIN_FINDING_STEPS:,})"]
                                    if steps < MIN_FINDING_STEPS else [])]
    extra["findings"] = findings = _beta_findings(rows)
    summary = _beta_summary(data, cfg, rows, len(pool), extra["seconds"], extra["per_beta"], findings, short)
    return ExperimentResult("beta-sweep", rows, summary, figures, extra)


def _unit_factors(metrics: dict[str, Any], names: tuple[str, ...] | None, active: np.ndarray,
                  min_share: float = 0.05) -> list[str]:
    """Per latent unit, the factors it carries most: I(z_j; v_k) / H(v_k) (MIG's mutual information, less its
    small-sample bias), the two largest of at least ``min_share``, e.g. "posX 0.41 · scale 0.12"; "inactive"
    where ``active[j]`` is false.  The binned mutual information does not see a unit's scale, so the tiny
    leftover variation of a collapsed unit (the decoder ignores it) would otherwise get a label."""
    nmi = np.asarray(metrics["mutual_info_normalised"])  # (D, kept factors)
    labels = [names[k] if names else f"v{k}" for k in metrics["mig_factors"]]
    notes = []
    for row, on in zip(nmi, active):
        top = [k for k in np.argsort(-row)[:2] if row[k] >= min_share]
        notes.append(" · ".join(f"{labels[k]} {row[k]:.2f}" for k in top) if on else "inactive")
    return notes


def _run_key(beta: float, seed: int) -> str:
    """The name of a beta-sweep run (after "beta") and its key in ``extra["per_beta"]``: "4", "4_seed1"."""
    return f"{beta:g}" + (f"_seed{seed}" if seed else "")


# beta-sweep: scores (0–1) within METRIC_TIE of each other are called a tie
METRIC_TIE = 0.02


def _beta_findings(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the beta-sweep summary states, as data: the β with the highest mean MIG and the β values within
    ``METRIC_TIE`` of it; and per seed, β = 4 − β = 1 on MIG and the β-VAE score with the tie rule's verdict
    ("ahead", "behind", "tie") and ``beats`` (ahead on both)."""
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    betas = list(dict.fromkeys(r["beta"] for r in rows))
    by = {(r["beta"], r["seed"]): r for r in rows}
    mig = {b: float(np.mean([by[b, s]["mig"] for s in seeds])) for b in betas}
    top = max(mig.values())
    out: dict[str, Any] = {"tie": METRIC_TIE, "mean_mig": {f"{b:g}": m for b, m in mig.items()},
                           "top_mig": [b for b in betas if top - mig[b] <= METRIC_TIE], "per_seed": []}
    if 1.0 in betas and 4.0 in betas:
        for s in seeds:
            f: dict[str, Any] = {"seed": s}
            for m in ("mig", "beta_vae"):
                d = float(by[4.0, s][m]) - float(by[1.0, s][m])
                f[m] = {"diff": d, "verdict": "ahead" if d > METRIC_TIE else "behind" if d < -METRIC_TIE else "tie"}
            f["beats"] = f["mig"]["verdict"] == f["beta_vae"]["verdict"] == "ahead"
            out["per_seed"].append(f)
    return out


def _beta_summary(data: Dataset, cfg: BetaSweepConfig, rows: list[dict[str, Any]], n_pool: int,
                  elapsed: float, per_beta: dict[str, dict[str, Any]], findings: dict[str, Any],
                  short: list[str]) -> str:
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    betas = list(dict.fromkeys(r["beta"] for r in rows))
    by = {(r["beta"], r["seed"]): r for r in rows}
    several = len(seeds) > 1

    def values(beta: float, key: str) -> np.ndarray:
        return np.array([by[beta, s][key] for s in seeds], dtype=float)

    def show(beta: float, key: str, digits: int = 3) -> str:  # one seed: the value; several: mean ± sd
        v = values(beta, key)
        return f"{v.mean():.{digits}f}" + (f" ± {v.std(ddof=1):.{digits}f}" if several else "")

    def diff(key: str) -> str:
        return f"{values(4.0, key).mean() - values(1.0, key).mean():+.3f}"

    size = len(data.train) + len(data.val) + len(data.test)
    arch = (f"conv {','.join(map(str, cfg.channels))}" + "".join(f" + FC {w}" for w in cfg.conv_hidden)
            if cfg.arch == "conv" else f"MLP {','.join(map(str, cfg.hidden))}")
    seed_text = (f"seeds {', '.join(map(str, seeds))} for every β; mean ± sd over the seeds" if several
                 else f"the same seed {seeds[0]} for every β")
    text = (f"β-VAEs ({arch}, latent {cfg.latent_dim}, Bernoulli, {cfg.epochs} epochs, batch {cfg.batch_size}, "
            f"lr {cfg.lr:g}, {seed_text}) on {size:,} {data.name} images; metrics on the posterior means of {n_pool} "
            f"held-out test images. Scores (0–1) within {METRIC_TIE:g} of each other are called a tie. ")
    if short:
        text += (f"**Too short to show a finding** ({'; '.join(short)}): the numbers only show that the sweep runs; "
                 "no β is said to be better. ")
    collapsed = [b for b in betas if values(b, "active_units").min() == 0]
    if collapsed:
        text += (f"β = {', '.join(f'{b:g}' for b in collapsed)} has 0 active units with "
                 f"{'a' if several else 'its'} seed (collapsed: the decoder ignores z, so its scores measure noise). ")
    top = findings["top_mig"]
    mean = "mean " if several else ""
    if not short:
        if len(top) == 1:
            text += f"Highest {mean}MIG at β = {top[0]:g} ({show(top[0], 'mig')}). "
        else:
            text += (f"Highest {mean}MIG: a tie between β = {', '.join(f'{b:g}' for b in top)} "
                     f"({', '.join(show(b, 'mig') for b in top)}). ")
    if 1.0 in betas and 4.0 in betas:
        text += (f"β = 4 vs β = 1: MIG {show(4.0, 'mig')} vs {show(1.0, 'mig')} ({diff('mig')}), β-VAE score "
                 f"{show(4.0, 'beta_vae')} vs {show(1.0, 'beta_vae')} ({diff('beta_vae')}), FactorVAE "
                 f"{show(4.0, 'factor_vae')} vs {show(1.0, 'factor_vae')}, DCI disentanglement "
                 f"{show(4.0, 'dci_disentanglement')} vs {show(1.0, 'dci_disentanglement')}; ELBO "
                 f"{show(4.0, 'elbo', 2)} vs {show(1.0, 'elbo', 2)} nats, KL {show(4.0, 'kl', 2)} vs "
                 f"{show(1.0, 'kl', 2)} nats, {show(4.0, 'active_units', 1 if several else 0)} vs "
                 f"{show(1.0, 'active_units', 1 if several else 0)} active units. ")
        per_seed = findings["per_seed"]
        wins = [f["beats"] for f in per_seed]
        if not short:
            if several:
                lost = [str(f["seed"]) for f in per_seed if not f["beats"]]
                text += (f"β = 4 beats β = 1 on both MIG and the β-VAE score (by more than {METRIC_TIE:g}) with "
                         f"{sum(wins)} of {len(seeds)} seeds" + (f" (not with seed {', '.join(lost)})" if lost else "")
                         + ". ")
            else:
                f = per_seed[0]
                text += (f"β = 4 {'beats' if f['beats'] else 'does NOT beat'} β = 1 on both MIG and the β-VAE score "
                         f"by more than {METRIC_TIE:g} (MIG: {f['mig']['verdict']}, β-VAE score: "
                         f"{f['beta_vae']['verdict']}). ")

        def per_factor(beta: float) -> str:
            scores = per_beta[_run_key(beta, seeds[0])]["beta_vae_per_factor"]
            return "/".join("–" if v is None else f"{v:.2f}" for v in scores)

        names = "/".join(data.factor_names) if data.factor_names else "columns of the factor table"
        text += (f"β-VAE score per fixed factor ({names}{f', seed {seeds[0]}' if several else ''}): "
                 f"β = 4 {per_factor(4.0)}, β = 1 {per_factor(1.0)}. ")
        steps = cfg.epochs * math.ceil(len(data.train) / cfg.batch_size)
        if (short or not all(wins)) and steps < LONG_RUN_STEPS:
            text += (f"These runs took {steps:,} steps each; β-VAE papers train 300k or more, and on dSprites "
                     f"aekit's β = 4 beat β = 1 on both scores after {LONG_RUN_STEPS:,} with seed 0, and on MIG "
                     "only with seed 1 (`--set subsample=400000 --set bf16=true --epochs 28`, notes/issue-4.md). ")
    return text + f"({elapsed:.0f} s in total.)"


def _plot_sweep(rows: list[dict[str, Any]], path: Any) -> None:
    """Metrics, −ELBO and KL against β: the mean over seeds as a line, each seed's run as a dot."""
    from ..viz.plots import _figure, _save

    betas = list(dict.fromkeys(r["beta"] for r in rows))

    def get(r: dict[str, Any], key: str) -> float:
        return math.nan if r[key] is None else float(r[key])

    def line(ax: Any, key: str, sign: float = 1.0, **kw: Any) -> None:
        per_beta = [[sign * get(r, key) for r in rows if r["beta"] == b] for b in betas]
        lines = ax.plot(betas, [float(np.mean(v)) for v in per_beta], **kw)
        if any(len(v) > 1 for v in per_beta):
            ax.plot([b for b, v in zip(betas, per_beta) for _ in v], [x for v in per_beta for x in v], ".",
                    color=lines[0].get_color(), alpha=0.5, markersize=5)

    fig = _figure(10.0, 3.8, layout="tight")
    ax1, ax2 = fig.subplots(1, 2)
    for k in METRIC_KEYS:
        line(ax1, k, marker="o", markersize=4, label=k)
    ax1.set_ylabel("score (higher = more disentangled)")
    several = len({r["seed"] for r in rows}) > 1
    if several:
        ax1.set_title("disentanglement metrics (test codes); lines: mean over seeds, dots: seeds", fontsize=9)
    else:
        ax1.set_title("disentanglement metrics (test codes)")
    ax1.legend(fontsize=7)
    line(ax2, "elbo", -1.0, marker="o", color="C0")
    ax2.set_ylabel("−ELBO (nats per image)", color="C0")
    ax3 = ax2.twinx()
    line(ax3, "kl", marker="s", color="C3")
    ax3.set_ylabel("KL (nats per image)", color="C3")
    ax2.set_title("test −ELBO (left) and KL (right)")
    positive = all(b > 0 for b in betas)
    for ax in (ax1, ax2):
        if positive:
            ax.set_xscale("log", base=2)
        ax.set_xticks(betas, [f"{b:g}" for b in betas])
        ax.set_xlabel("β")
        ax.grid(alpha=0.3)
    _save(fig, path)
