"""Evaluation pipeline: a model and a dataset split in, a JSON-ready dict out.

Units: ``sse_per_image`` is the sum of squared errors over a sample's elements (inputs in [0, 1] for images;
standardised units for tables) averaged over samples — the unit of Hinton & Salakhutdinov (2006); ``mse`` is
per element.  For VAEs ``elbo`` / ``recon`` / ``kl`` are nats per sample (one posterior sample per datum,
fixed seed), ``elbo`` is a log-likelihood bound and therefore negative for Bernoulli likelihoods.
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
from ..models.batching import eval_batch, mean_losses
from .metrics import principal_angles, sse_per_sample

__all__ = ["evaluate", "principal_angles", "reconstruction_errors", "sse_per_sample"]


@torch.no_grad()
def reconstruction_errors(model: Autoencoder, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Per-sample SSE of ``model``'s deterministic reconstruction of ``x`` (uint8 or float), shape (N,)."""
    model.eval()
    batch_size = batch_size or eval_batch_size(math.prod(x.shape[1:]))
    out = []
    for idx in iterate_batches(len(x), batch_size, shuffle=False):
        xb = to_float(x[idx]).to(model.device)
        out.append(sse_per_sample(model.reconstruct(xb), xb).double().cpu())
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
    sse = reconstruction_errors(model, s.x, batch_size)
    n = len(s)
    d = model.input_dim
    result: dict[str, Any] = {
        "n": n,
        "split": split,
        "data": data.name,
        "sse_per_image": float(sse.mean()),
        "mse": float(sse.mean() / d),
    }
    result.update(mean_losses(model, s))  # the model's own terms, in its units (a VAE's elbo, recon, kl, loss)
    if not model.posterior and not model.closed_form:  # deterministic AEs: code activity (sparsity)
        from .deterministic import activity_metrics

        result.update(activity_metrics(model, data, split))
    from .deterministic import corruption_metrics  # a denoising AE's own corruption, or the one asked for

    result.update(corruption_metrics(model, data, split, corruption))
    if iwae_samples is not None:
        from .likelihood import likelihood_report

        result.update(likelihood_report(model, s.x, iwae_samples, image=data.kind == "image",
                                        batch_size=batch_size))
    return result


# ``aekit.evaluate`` is both this package (``aekit.evaluate.likelihood``, ``aekit.evaluate.disentanglement``, …)
# and the function above (``aekit.evaluate(model, data)``): the package's module object is made callable, so
# neither shadows the other (with a plain ``from .evaluate import evaluate`` in ``aekit/__init__.py``,
# ``import aekit.evaluate.likelihood as L`` raised AttributeError).
SUBMODULES = ("anomaly", "classifier", "deterministic", "disentanglement", "likelihood", "metrics", "segmentation")


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return evaluate(*args, **kwargs)


def __getattr__(name: str) -> Any:  # submodules load on first use (``aekit.evaluate.disentanglement.mig``)
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _CallableModule
