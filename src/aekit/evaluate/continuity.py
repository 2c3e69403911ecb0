"""Perturbation continuity: do nearby points of the latent space decode to similar outputs?

The notes define continuity as *nearby points of the latent space decode to similar outputs*.
:func:`perturbation_continuity` measures exactly that at the codes where users decode (``sites``: draws from a
VAE's prior N(0, I); for a plain AE draws from a Gaussian fitted to its training codes, or its own codes):

1. every site z gets one random unit direction u (uniform on the sphere of R^d, seeded) and is moved to
   ``z + δ · s ⊙ (√d · u)`` for each δ in ``deltas`` (default 0.1, 0.25, 0.5), where ``s`` (d,) is the
   **aggregate codes' per-dimension standard deviation** (:func:`aggregate_code_sd`);
2. both points are decoded and the **decoded change** is measured in pixels (L2 over the whole image) and in
   the domain classifier's penultimate features (L2, :mod:`aekit.evaluate.classifier`), each divided by the mean
   distance between two random test images in the same space (0 = no change, 1 = as different as two random
   images); the **label flip share** is the fraction of perturbations that change the classifier's argmax label;
3. the result gives, per δ, the median and 95th percentile of both changes and the flip share, each with a
   bootstrap standard error (the flip share's is the binomial one).

Why ``s ⊙ (√d · u)``: in coordinates standardised by ``s`` (z_j / s_j) the step is a random direction of
length δ·√d, i.e. δ times the typical distance of a standardised Gaussian code from its centre, and the
root-mean-square step along each dimension j is exactly δ·s_j ("a fraction δ of the per-dimension sd").  A
plain AE's latent scale is arbitrary *per dimension* (its decoder can absorb any scaling of any unit), so the
measure is built to be invariant to every diagonal rescaling of the latent space, not only a global one:
rescaling unit j by c_j (and the decoder's input by 1/c_j) rescales s_j by c_j and leaves every decoded pair,
hence every number here, unchanged.  (δ·‖s‖·u would only be invariant to one global scale, and would push
low-variance AE units as far as high-variance ones.)  Directions are *not* renormalised after the scaling: the
step's length in the raw latent space varies with u, as it should where the units' spreads differ.

For a VAE, ``s`` is the aggregate posterior's sd, sqrt(Var_x(μ_j(x)) + E_x[σ_j(x)²]) (≈ 1 where q(z)
matches the prior, and ≈ 1 for an inactive unit, whose decoder ignores it); for a deterministic AE it is the
sd of its codes.

Everything is vectorised over a batch of sites (no per-sample Python), memory is bounded by ``batch_size``,
and the same seed gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..data import iterate_batches, to_float
from ..models.base import Autoencoder
from .classifier import DomainClassifier, classify_all

__all__ = ["DELTAS", "aggregate_code_sd", "perturbation_continuity", "perturbation_steps", "random_directions",
           "reference_distances"]

DELTAS: tuple[float, ...] = (0.1, 0.25, 0.5)
MEASURES = ("pixel_median", "pixel_p95", "feature_median", "feature_p95", "label_flip")


def random_directions(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` directions uniform on the unit sphere of R^d (normalised Gaussian draws), (n, d) float64."""
    g = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return g / g.norm(dim=1, keepdim=True).clamp_min(1e-300)


def perturbation_steps(sd: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The step per unit δ: ``sd ⊙ (√d · u)`` for unit directions ``u`` (n, d) and per-dimension sds ``sd`` (d,)."""
    sd = torch.as_tensor(sd, dtype=torch.float64)
    return math.sqrt(u.shape[1]) * sd[None] * u.double()


@torch.no_grad()
def aggregate_code_sd(model: Autoencoder, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Per-dimension standard deviation (d,) float64 of the aggregate codes of inputs ``x``: for a model with a
    posterior, of the aggregate posterior q(z) = E_x q(z|x), i.e. sqrt(Var_x(μ_j) + E_x[σ_j²]); otherwise of
    the deterministic codes (``model.embed``)."""
    model.eval()
    means, variances = [], []
    for idx in iterate_batches(len(x), batch_size, shuffle=False):
        xb = to_float(x[idx]).to(model.device)
        if model.posterior:
            q = model.encode(xb)
            means.append(q.mean.double().cpu())
            variances.append(q.std.double().cpu() ** 2)
        else:
            means.append(model.embed(xb).double().cpu())
    if not means:
        return torch.zeros(model.latent_dim, dtype=torch.float64)
    m = torch.cat(means)
    var = m.var(0, unbiased=True) if len(m) > 1 else torch.zeros(m.shape[1], dtype=torch.float64)
    if variances:
        var = var + torch.cat(variances).mean(0)
    return var.sqrt()


def _pairs(n: int, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs of distinct rows of ``n`` (n ≥ 2)."""
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n
    return i, j


@torch.no_grad()
def reference_distances(images: torch.Tensor, classifier: DomainClassifier | None = None, n_pairs: int = 2000,
                        seed: int = 0) -> dict[str, float]:
    """Mean distance between two random (distinct) rows of ``images`` (uint8 or floats in [0, 1]): ``pixel``
    (L2 over the image) and, with a classifier, ``feature`` (L2 of its penultimate features)."""
    if len(images) < 2:
        raise ValueError("reference_distances needs at least 2 images")
    i, j = _pairs(len(images), n_pairs, np.random.default_rng(seed))
    rows = np.unique(np.concatenate([i, j]))  # each image used is read (and classified) once
    pa, pb = np.searchsorted(rows, i), np.searchsorted(rows, j)
    x = to_float(images[torch.from_numpy(rows)]).double().flatten(1)
    out = {"pixel": float((x[torch.from_numpy(pa)] - x[torch.from_numpy(pb)]).norm(dim=1).mean())}
    if classifier is not None:
        feats, _ = classify_all(classifier, images[torch.from_numpy(rows)])
        out["feature"] = float(np.linalg.norm(feats[pa] - feats[pb], axis=1).mean())
    return out


def _quantile_se(v: np.ndarray, q: float, rng: np.random.Generator, n_boot: int, chunk: int = 50) -> float:
    """Bootstrap standard error of the ``q`` quantile of ``v`` (resamples drawn ``chunk`` at a time)."""
    if len(v) < 2 or n_boot < 2:
        return 0.0
    est = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(v), (min(chunk, n_boot - start), len(v)))
        est.append(np.quantile(v[idx], q, axis=1))
    return float(np.concatenate(est).std(ddof=1))


@torch.no_grad()
def perturbation_continuity(decode: Callable[[torch.Tensor], torch.Tensor], sites: torch.Tensor, sd: torch.Tensor,
                            reference: torch.Tensor | dict[str, float], classifier: DomainClassifier | None = None,
                            *, deltas: Sequence[float] = DELTAS, seed: int = 0, n_pairs: int = 2000,
                            batch_size: int = 500, n_boot: int = 200, return_samples: bool = False
                            ) -> dict[str, Any]:
    """Decoded change under small random latent perturbations at ``sites`` (module docstring).

    ``decode``: codes (B, d) float32 → decoded outputs (B, …) (e.g. ``lambda z: model.decode(z).clamp(0, 1)``);
    ``sites``: the codes (N, d) where users decode; ``sd``: the aggregate codes' per-dimension sd (d,)
    (:func:`aggregate_code_sd`); ``reference``: test images for the normalising distances
    (:func:`reference_distances`, ``n_pairs`` pairs), or those distances already computed (a dict with
    ``pixel`` and, with a classifier, ``feature``); ``classifier``: the domain classifier (feature change and
    label flips; without one only the pixel measures are given).

    Returns ``{"deltas", "n", "pixel_scale", "feature_scale", "per_delta": {"0.25": {"pixel_median",
    "pixel_median_se", "pixel_p95", "pixel_p95_se", "feature_median", …, "label_flip", "label_flip_se",
    "step_norm"}}}`` where changes are in units of the reference distance, ``step_norm`` is the mean length of
    the latent step and ``label_flip`` is a share in [0, 1]; ``return_samples=True`` adds ``samples``: per δ the
    per-site arrays ``pixel`` / ``feature`` / ``flip``.
    """
    sites = torch.as_tensor(sites).double()
    n, d = sites.shape
    if n < 1:
        raise ValueError("perturbation_continuity needs at least one site")
    sd = torch.as_tensor(sd, dtype=torch.float64).reshape(-1)
    if sd.shape != (d,):
        raise ValueError(f"sd has shape {tuple(sd.shape)}; the sites have {d} dimensions")
    deltas = [float(x) for x in deltas]
    scale = dict(reference) if isinstance(reference, dict) else reference_distances(reference, classifier, n_pairs,
                                                                                    seed)
    steps = perturbation_steps(sd, random_directions(n, d, torch.Generator().manual_seed(seed)))
    k = len(deltas)
    pixel = np.zeros((k, n))
    feature = np.zeros((k, n))
    flip = np.zeros((k, n), dtype=bool)
    delta_t = torch.tensor(deltas, dtype=torch.float64)
    for idx in iterate_batches(n, batch_size, shuffle=False):
        z0, step = sites[idx], steps[idx]
        b = len(idx)
        # the sites and their k perturbed copies in one decode call: (k + 1) · b rows
        z = torch.cat([z0[None], z0[None] + delta_t[:, None, None] * step[None]]).reshape(-1, d)
        out = decode(z.float()).detach().float().cpu()
        flat = out.reshape(k + 1, b, -1).double()
        pixel[:, idx.numpy()] = (flat[1:] - flat[:1]).norm(dim=-1).numpy()
        if classifier is not None:
            feats, probs = classify_all(classifier, out)
            f = feats.reshape(k + 1, b, -1)
            label = probs.argmax(1).reshape(k + 1, b)
            feature[:, idx.numpy()] = np.linalg.norm(f[1:] - f[:1], axis=-1)
            flip[:, idx.numpy()] = label[1:] != label[:1]
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"deltas": deltas, "n": n, "pixel_scale": scale["pixel"],
                              "feature_scale": scale.get("feature") if classifier is not None else None,
                              "perturbation": "z + δ · sd ⊙ (√d · u), u a random unit direction", "per_delta": {}}
    step_norm = steps.norm(dim=1).mean()
    samples: dict[str, dict[str, np.ndarray]] = {}
    for i, delta in enumerate(deltas):
        row: dict[str, float] = {"step_norm": float(delta * step_norm)}
        spaces = [("pixel", pixel[i] / max(scale["pixel"], 1e-300))]
        if classifier is not None:
            spaces.append(("feature", feature[i] / max(scale["feature"], 1e-300)))
        for name, v in spaces:
            row[f"{name}_median"] = float(np.median(v))
            row[f"{name}_median_se"] = _quantile_se(v, 0.5, rng, n_boot)
            row[f"{name}_p95"] = float(np.quantile(v, 0.95))
            row[f"{name}_p95_se"] = _quantile_se(v, 0.95, rng, n_boot)
        if classifier is not None:
            p = float(flip[i].mean())
            row["label_flip"] = p
            row["label_flip_se"] = math.sqrt(p * (1 - p) / n)
        result["per_delta"][f"{delta:g}"] = row
        samples[f"{delta:g}"] = {"pixel": spaces[0][1], **({"feature": spaces[1][1], "flip": flip[i]}
                                                           if classifier is not None else {})}
    if return_samples:
        result["samples"] = samples
    return result
