"""Evaluation pipeline: a model and a dataset split in, a JSON-ready dict out.

Units: ``sse_per_image`` is the sum of squared errors over a sample's elements (inputs in [0, 1] for images;
standardised units for tables) averaged over samples — the unit of Hinton & Salakhutdinov (2006); ``mse`` is
per element.  For VAEs ``elbo`` / ``recon`` / ``kl`` are nats per sample (one posterior sample per datum,
fixed seed), ``elbo`` is a log-likelihood bound and therefore negative for Bernoulli likelihoods.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import torch

from ..data import Dataset, iterate_batches, to_float
from ..models.ae import AE
from ..models.base import Autoencoder
from ..train.trainer import mean_losses
from .metrics import principal_angles, sse_per_sample

__all__ = ["evaluate", "principal_angles", "reconstruction_errors", "sse_per_sample"]


@torch.no_grad()
def reconstruction_errors(model: Autoencoder, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Per-sample SSE of ``model``'s deterministic reconstruction of ``x`` (uint8 or float), shape (N,)."""
    model.eval()
    out = []
    for idx in iterate_batches(len(x), batch_size, shuffle=False):
        xb = to_float(x[idx]).to(model.device)
        out.append(sse_per_sample(model.reconstruct(xb), xb).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def evaluate(model: Autoencoder, data: Dataset, split: str = "test", batch_size: int = 1000,
             iwae_samples: int | None = None, corruption: str | None = None) -> dict[str, Any]:
    """Reconstruction (and VAE ELBO) figures of ``split``; ``iwae_samples=K`` adds the IWAE ``nll``,
    ``bits_per_dim``, ``active_units`` and ``kl_per_dim`` of :mod:`aekit.evaluate.likelihood` (VAEs only).

    ``corruption`` (e.g. ``"mask:0.25"``; deterministic AEs): also report ``sse_per_image_corrupted``, the error
    of reconstructing the clean inputs from corrupted ones (default: a denoising AE's own training corruption).
    """
    if corruption is not None and not isinstance(model, AE):
        from ..errors import ConfigError

        raise ConfigError(f"--corruption applies to deterministic autoencoders, not {type(model).__name__}: drop it")
    if getattr(model, "supervised", False):  # segmentation models: mIoU, Dice, boundary F1 (not reconstruction)
        from .segmentation import evaluate_segmentation

        return evaluate_segmentation(model, data, split, min(batch_size, 32))
    s = data.split(split)
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
    terms = mean_losses(model, s, batch_size)
    if model.can_sample:
        result.update({"elbo": -(terms["recon"] + terms["kl"]), "recon": terms["recon"], "kl": terms["kl"],
                       "loss": terms["loss"]})
    else:
        result.update({k: v for k, v in terms.items() if k != "elbo"})
    if isinstance(model, AE):  # code activity (sparsity) and, for denoising AEs, the error on corrupted inputs
        from .deterministic import deterministic_metrics

        result.update(deterministic_metrics(model, data, split, corruption))
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
