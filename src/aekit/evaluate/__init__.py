"""Evaluation pipeline: a model and a dataset split in, a JSON-ready dict out.

Units: ``sse_per_image`` is the sum of squared errors over a sample's elements (inputs in [0, 1] for images;
standardised units for tables) averaged over samples — the unit of Hinton & Salakhutdinov (2006); ``mse`` is
per element.  For VAEs ``elbo`` / ``recon`` / ``kl`` (and the model's other loss terms) are nats per sample,
averaged over ``elbo_draws`` posterior draws per datum (:func:`elbo_draws`: 10 on small splits, enough for
:data:`SAMPLE_DRAWS` sample-draws on larger ones but at least :data:`MIN_DRAWS`, within a memory budget; seeded,
so deterministic); ``elbo_stderr`` is the Monte-Carlo standard error of that average — the standard deviation of
the draws' split means over √draws, itself a rough estimate with few draws (±50 % with 3) — not the test-set
sampling error (``--iwae-samples``' ``nll_stderr`` is that).
``elbo`` is a log-likelihood bound and therefore negative for Bernoulli likelihoods.  ``posterior_collapse``
(models with a posterior) says whether the code is ignored: :func:`aekit.evaluate.likelihood.posterior_collapse`.
"""

from __future__ import annotations

import importlib
import math
import sys
import types
from typing import Any

import torch

from ..data import Dataset, eval_batch_size, iterate_batches, to_float
from ..models.base import Autoencoder
from ..models.batching import eval_batch, loss_draws
from .metrics import principal_angles, sse_per_sample

__all__ = ["evaluate", "principal_angles", "reconstruction_errors", "sse_per_sample"]

# posterior draws per datum behind a VAE's elbo / recon / kl: enough for SAMPLE_DRAWS sample-draws in all (the
# Monte-Carlo standard error of a split mean falls with samples × draws, not with draws alone), at least
# MIN_DRAWS and at most ELBO_DRAWS, and fewer when draws × samples × input elements would pass DRAW_BUDGET (a
# 20,000-image 64×64 test split gets 3), never fewer than 2 (a standard error needs 2).  The digits' 359 test
# images get 10 draws (one draw's noise there: 0.098 nats, seed-to-seed sd, issue 18); Fashion-MNIST's 10,000
# get 3 (standard error of an MLP VAE's test ELBO ≈ 0.017 nats; 10 draws: 0.009, at 3.3 times the cost).
ELBO_DRAWS = 10
MIN_DRAWS = 3
SAMPLE_DRAWS = 30_000
DRAW_BUDGET = 1 << 28


def elbo_draws(n: int, input_dim: int) -> int:
    """How many posterior draws :func:`evaluate` averages a split of ``n`` samples of ``input_dim`` elements over."""
    wanted = max(MIN_DRAWS, -(-SAMPLE_DRAWS // max(1, n)))
    return max(2, min(ELBO_DRAWS, wanted, DRAW_BUDGET // max(1, n * input_dim)))


@torch.no_grad()
def reconstruction_errors(model: Autoencoder, x: torch.Tensor, batch_size: int | None = None,
                          labels: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample SSE of ``model``'s deterministic reconstruction of ``x`` (uint8 or float), shape (N,);
    ``labels`` (N,): the class ids a ``conditional`` model reconstructs with."""
    model.eval()
    batch_size = batch_size or eval_batch_size(math.prod(x.shape[1:]))
    out = []
    for idx in iterate_batches(len(x), batch_size, shuffle=False):
        xb = to_float(x[idx]).to(model.device)
        kw = model.label_kwargs(None if labels is None else labels[idx.to(labels.device)])
        out.append(sse_per_sample(model.reconstruct(xb, **kw), xb).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def evaluate(model: Autoencoder, data: Dataset, split: str = "test", batch_size: int | None = None,
             iwae_samples: int | None = None, corruption: str | None = None) -> dict[str, Any]:
    """Reconstruction (and VAE ELBO) figures of ``split``; ``iwae_samples=K`` adds the IWAE ``nll``,
    ``bits_per_dim``, ``active_units`` and ``kl_per_dim`` of :mod:`aekit.evaluate.likelihood` (VAEs only).

    ``corruption`` (e.g. ``"mask:0.25"``; any reconstruction model, a VAE through its posterior mean): also
    report ``sse_per_image_corrupted``, the error of reconstructing the clean inputs from corrupted ones (default:
    a denoising AE's own training corruption).  ``batch_size`` defaults to a memory-bounded size
    (:func:`aekit.models.batching.eval_batch`).
    """
    if corruption is not None and model.supervised:
        from ..errors import ConfigError

        raise ConfigError("--corruption applies to reconstruction models, not to a segmentation model: drop it")
    if model.supervised:  # segmentation models: mIoU, Dice, boundary F1 (not reconstruction)
        from .segmentation import evaluate_segmentation

        return evaluate_segmentation(model, data, split, batch_size or eval_batch(model, data.split(split)))
    s = data.split(split)
    batch_size = batch_size or eval_batch(model, s)
    labels = s.y if model.conditional else None  # a conditional model is evaluated with the true labels
    sse = reconstruction_errors(model, s.x, batch_size, labels)
    n = len(s)
    d = model.input_dim
    result: dict[str, Any] = {
        "n": n,
        "split": split,
        "data": data.name,
        "sse_per_image": float(sse.mean()),
        "mse": float(sse.mean() / d),
    }
    # the model's own terms, in its units (a VAE's elbo, recon, kl, loss), over several posterior draws
    draws = elbo_draws(n, d) if model.posterior else 1
    per_draw = loss_draws(model, s, draws)
    result.update({k: float(v.mean()) for k, v in per_draw.items()})
    if model.posterior and "elbo" in per_draw:
        result["elbo_stderr"] = float(per_draw["elbo"].std() / math.sqrt(draws))
        result["elbo_draws"] = draws
    if model.posterior:
        from .likelihood import posterior_collapse

        result["posterior_collapse"] = posterior_collapse(model, s.x, batch_size, labels=labels)
    if not model.posterior and not model.closed_form:  # deterministic AEs: code activity (sparsity)
        from .deterministic import activity_metrics

        result.update(activity_metrics(model, data, split))
    from .deterministic import corruption_metrics  # a denoising AE's own corruption, or the one asked for

    result.update(corruption_metrics(model, data, split, corruption))
    if model.discrete:  # a VQ-VAE: codebook usage, perplexity, dead codes, the prior's NLL
        from .codebook import codebook_metrics

        result.update(codebook_metrics(model, s.x))
    if iwae_samples is not None:
        from .likelihood import likelihood_report

        result.update(likelihood_report(model, s.x, iwae_samples, image=data.kind == "image",
                                        batch_size=batch_size, labels=labels))
    return result


# ``aekit.evaluate`` is both this package (``aekit.evaluate.likelihood``, ``aekit.evaluate.disentanglement``, …)
# and the function above (``aekit.evaluate(model, data)``): the package's module object is made callable, so
# neither shadows the other (with a plain ``from .evaluate import evaluate`` in ``aekit/__init__.py``,
# ``import aekit.evaluate.likelihood as L`` raised AttributeError).
SUBMODULES = ("anomaly", "classifier", "codebook", "continuity", "deterministic", "disentanglement", "likelihood", "metrics",
              "segmentation")


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return evaluate(*args, **kwargs)


def __getattr__(name: str) -> Any:  # submodules load on first use (``aekit.evaluate.disentanglement.mig``)
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _CallableModule
