"""VAE latent geometry: ``ae-vs-vae`` (completeness and continuity) and ``beta-sweep`` (disentanglement).

``aekit experiment ae-vs-vae --data fashion-mnist`` trains the same encoder / decoder as a plain AE and as a
VAE and measures the two properties the notes claim for a VAE's latent space:

- **completeness** (any point of the prior decodes to a plausible image): ``n_samples`` draws from N(0, I)
  are decoded (for the AE also draws from a full-covariance Gaussian fitted to its training codes, the fair
  version) and scored by a small CNN trained on the real training images (:mod:`aekit.evaluate.classifier`):
  ``max_prob`` = the classifier's mean confidence, ``domain_fid`` = Fréchet distance between its
  penultimate features of the generated and of the real test images (lower is better);
- **continuity** (nearby codes decode to similar images): straight paths between the codes of ``n_paths``
  random pairs of test images, ``path_steps`` points each, decoded: ``path_step_ratio`` = largest decoded
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
from . import MIN_STEPS, ExperimentContext, ExperimentResult, enough_steps, register

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- shared


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def train_or_reuse(ctx: ExperimentContext, name: str, model: str, data: DataConfig, options: dict[str, Any]) -> Run:
    """Train ``model`` into ``ctx.run_dir(name)``, or reuse / resume the run there when its saved
    configuration (model, data and every given option) matches.  The seed is ``--seed`` unless ``options``
    gives one."""
    out = ctx.run_dir(name)
    opts = {"seed": ctx.seed, **options}
    if (out / "config.json").exists():
        try:
            saved = read_config(out)
        except AekitError:
            saved = None
        if saved is not None and saved["model"] == model and saved["data"] == to_dict(data):
            stored = {**saved["model_config"], **saved["train"]}
            if all(k in stored and _same(v, stored[k]) for k, v in opts.items()):
                if (out / WEIGHTS).exists():
                    log.info("reusing the finished run %s", out)
                    return load_run(out)
                if (out / CHECKPOINT).exists():
                    log.info("resuming the interrupted run %s", out)
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


AE_VS_VAE_QUICK: dict[str, Any] = {"latent_dim": 4, "hidden": (32,), "epochs": 2, "batch_size": 64,
                                   "n_samples": 300, "n_paths": 12, "classifier_epochs": 1,
                                   "classifier_min_steps": 60, "min_steps": 0}


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
    from ..evaluate.classifier import FILE, classify_all, frechet_distance, gaussian_stats, load_or_train
    from ..viz.plots import save_image_grid
    from ..viz.traversal import plot_traversal

    cfg = ctx.config(AeVsVaeConfig, AE_VS_VAE_QUICK, "ae-vs-vae")
    data_cfg = DataConfig(spec=ctx.data, data_dir=cfg.data_dir, subsample=cfg.subsample)
    data = load_data(data_cfg)
    cfg = enough_steps(cfg, ctx, len(data.train))  # not classifier_epochs: it has its own floor
    if data.kind != "image" or data.train.y is None or data.test.y is None:
        raise DataError(f"ae-vs-vae needs labelled images (its classifier learns the classes); {data.name!r} "
                        "is not: use e.g. --data fashion-mnist or digits")
    t0 = time.perf_counter()
    clf = load_or_train(ctx.out / FILE, data, epochs=cfg.classifier_epochs, min_steps=cfg.classifier_min_steps,
                        seed=ctx.seed)
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
    for name, (kind, options) in per_model.items():
        run = train_or_reuse(ctx, name, kind, data_cfg, {**common, **options})
        model = run.model.eval()
        g = torch.Generator().manual_seed(ctx.seed)
        samplers = {"N(0, I)": torch.randn(cfg.n_samples, model.latent_dim, generator=g)}
        if name == "ae":  # the fair version: a full-covariance Gaussian fitted to the AE's training codes
            codes = encode_all(model, data.train.x[: 20000]).double()
            mu, cov = codes.mean(0), torch.cov(codes.T).reshape(model.latent_dim, model.latent_dim)
            chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(len(mu), dtype=cov.dtype))
            eps = torch.randn(cfg.n_samples, model.latent_dim, generator=g, dtype=torch.float64)
            samplers["Gaussian fitted to codes"] = (mu + eps @ chol.T).float()
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
    elapsed = time.perf_counter() - t0
    summary = _ae_vs_vae_summary(data, cfg, results, ref_scores, clf_acc, elapsed)
    extra = {"config": dataclasses.asdict(cfg), "classifier_test_accuracy": clf_acc, "results": results,
             "seconds": elapsed, "frechet_check": frechet_distance(*real, *real)}
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


def _ae_vs_vae_summary(data: Dataset, cfg: AeVsVaeConfig, r: dict[str, dict[str, Any]], ref: dict[str, float],
                       clf_acc: float, elapsed: float) -> str:
    main = _main_vae(cfg)
    v, a, af = r[f"{main}_prior"], r["ae_prior"], r["ae_fitted"]
    vae = _label(main)

    def won(ok: bool) -> str:
        return "wins" if ok else "does NOT win"

    def times(x: float, y: float) -> str:
        return f"{x / y:.2f}×" if y > 0 else "n/a"

    arch = f"MLP {','.join(map(str, cfg.hidden))}" if cfg.arch == "mlp" else f"conv {','.join(map(str, cfg.channels))}"
    closer = abs(a["path_step_ratio"] - 1) - abs(v["path_step_ratio"] - 1)
    closer_f = abs(a["path_feature_step_ratio"] - 1) - abs(v["path_feature_step_ratio"] - 1)
    return (
        f"Same encoder/decoder ({arch}, latent {cfg.latent_dim}, {cfg.epochs} epochs) trained as a plain AE and as a "
        f"VAE (β = {', '.join(f'{b:g}' for b in cfg.betas)}) on {data.name}; {cfg.n_samples} latent draws scored by "
        f"a CNN trained on the real training images (test accuracy {clf_acc:.3f}; real training images vs the test "
        f"set: domain FID {ref['domain_fid']:.3g}, max-prob {ref['max_prob']:.3f}). The comparison below is the AE "
        f"against the {vae}.\n\n"
        f"**Completeness** — samples from the prior N(0, I): {vae} domain FID {v['domain_fid']:.3g} vs AE "
        f"{a['domain_fid']:.3g} (the AE's is {times(a['domain_fid'], v['domain_fid'])} the VAE's), classifier "
        f"confidence {v['max_prob']:.3f} vs {a['max_prob']:.3f}: the VAE "
        f"{won(v['domain_fid'] < a['domain_fid'] and v['max_prob'] > a['max_prob'])} on prior samples. Against the AE "
        f"sampled from a full-covariance Gaussian fitted to its own training codes (an ex-post density, not part of "
        f"the AE): FID {af['domain_fid']:.3g} ({times(af['domain_fid'], v['domain_fid'])} the VAE's), confidence "
        f"{af['max_prob']:.3f}: the VAE {won(v['domain_fid'] < af['domain_fid'])} on FID.\n\n"
        f"**Continuity** — along {cfg.n_paths} straight paths of {cfg.path_steps} steps between test codes, the "
        f"largest decoded step is {v['path_step_ratio']:.3f}× the mean step for the {vae} vs "
        f"{a['path_step_ratio']:.3f}× for the AE (1 = perfectly even): the VAE {won(closer > 0)} "
        f"({abs(closer):.3f} {'closer to' if closer > 0 else 'farther from'} 1). Measured in the classifier's "
        f"features instead of pixels (where a decoder that merely cross-fades the two images would score exactly 1): "
        f"{v['path_feature_step_ratio']:.3f} vs {a['path_feature_step_ratio']:.3f}: the VAE {won(closer_f > 0)}. "
        f"Mean classifier entropy along the "
        f"paths: {v['path_entropy']:.3f} vs {a['path_entropy']:.3f} nats: the VAE "
        f"{won(v['path_entropy'] < a['path_entropy'])} (lower = images that look like a class). "
        f"({elapsed:.0f} s in total.)" + _collapse_note(f"The {vae}", v) + _tradeoff(cfg, r)
    )


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
    t_all = time.perf_counter()
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
        metrics = disentanglement_metrics(mean.numpy(), f_pool, quick=ctx.quick, seed=ctx.seed)
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
    summary = _beta_summary(data, cfg, rows, len(pool), extra["seconds"], extra["per_beta"])
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


def _beta_summary(data: Dataset, cfg: BetaSweepConfig, rows: list[dict[str, Any]], n_pool: int,
                  elapsed: float, per_beta: dict[str, dict[str, Any]]) -> str:
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
            f"held-out test images. ")
    best = max(betas, key=lambda b: float(values(b, "mig").mean()))
    text += f"Highest {'mean ' if several else ''}MIG at β = {best:g} ({show(best, 'mig')}). "
    if 1.0 in betas and 4.0 in betas:
        wins = [by[4.0, s]["mig"] > by[1.0, s]["mig"] and by[4.0, s]["beta_vae"] > by[1.0, s]["beta_vae"]
                for s in seeds]
        verdict = "beats" if all(wins) else "does NOT beat"
        text += (f"β = 4 vs β = 1: MIG {show(4.0, 'mig')} vs {show(1.0, 'mig')} ({diff('mig')}), β-VAE score "
                 f"{show(4.0, 'beta_vae')} vs {show(1.0, 'beta_vae')} ({diff('beta_vae')}), FactorVAE "
                 f"{show(4.0, 'factor_vae')} vs {show(1.0, 'factor_vae')}, DCI disentanglement "
                 f"{show(4.0, 'dci_disentanglement')} vs {show(1.0, 'dci_disentanglement')}; at the price of the "
                 f"ELBO ({show(4.0, 'elbo', 2)} vs {show(1.0, 'elbo', 2)} nats) with KL {show(4.0, 'kl', 2)} vs "
                 f"{show(1.0, 'kl', 2)} nats and {show(4.0, 'active_units', 1 if several else 0)} vs "
                 f"{show(1.0, 'active_units', 1 if several else 0)} active units. ")
        if several:
            lost = [str(s) for s, w in zip(seeds, wins) if not w]
            text += (f"β = 4 beats β = 1 on both MIG and the β-VAE score with {sum(wins)} of {len(seeds)} seeds"
                     + (f" (not with seed {', '.join(lost)})" if lost else "") + ". ")
        else:
            text += f"β = 4 {verdict} β = 1 on MIG and the β-VAE score. "

        def per_factor(beta: float) -> str:
            scores = per_beta[_run_key(beta, seeds[0])]["beta_vae_per_factor"]
            return "/".join("–" if v is None else f"{v:.2f}" for v in scores)

        names = "/".join(data.factor_names) if data.factor_names else "columns of the factor table"
        text += (f"β-VAE score per fixed factor ({names}{f', seed {seeds[0]}' if several else ''}): "
                 f"β = 4 {per_factor(4.0)}, β = 1 {per_factor(1.0)}. ")
        steps = cfg.epochs * math.ceil(len(data.train) / cfg.batch_size)
        if verdict != "beats" and steps < LONG_RUN_STEPS:
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
