"""Extra evaluation of deterministic autoencoders (ae, sparse-ae, denoising-ae, stacked-ae, linear-ae).

- code activity (sparsity) of the codes ``model.embed(x)``: ``mean_abs_activation`` (mean |a| over samples
  and units), ``fraction_inactive`` (share of (sample, unit) activations with |a| < 0.01) and ``dead_units``
  (units inactive on every sample of the split)
- with a ``corruption`` in the model's config (a denoising AE): ``sse_per_image_corrupted``, the error of
  reconstructing the *clean* inputs from corrupted ones (fixed noise seed, so the figure is reproducible)

:func:`activation_stats` is a pure function of a code matrix; :func:`activity_metrics` and
:func:`corruption_metrics` run the model.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data import Dataset, iterate_batches, to_float
from ..data.corrupt import Corruption, corrupt, parse_corruption, value_range
from ..latent import encode_all
from ..models.ae import INACTIVE
from ..models.base import Autoencoder
from .metrics import sse_per_sample


def activation_stats(codes: torch.Tensor, threshold: float = INACTIVE) -> dict[str, float]:
    """``mean_abs_activation``, ``fraction_inactive`` (|a| < threshold) and ``dead_units`` of (N, units) codes."""
    a = codes.reshape(codes.shape[0], -1).abs().double()
    if a.numel() == 0:
        return {"mean_abs_activation": 0.0, "fraction_inactive": 0.0, "dead_units": 0}
    inactive = a < threshold
    return {
        "mean_abs_activation": float(a.mean()),
        "fraction_inactive": float(inactive.double().mean()),
        "dead_units": int(inactive.all(0).sum()),
    }


@torch.no_grad()
def corrupted_errors(model: Autoencoder, x: torch.Tensor, corruption: Corruption | str, *,
                     low: torch.Tensor | float = 0.0, high: torch.Tensor | float = 1.0, seed: int = 0,
                     batch_size: int = 1000) -> torch.Tensor:
    """Per-sample SSE between ``model``'s reconstruction of corrupted ``x`` and the clean ``x``, shape (N,)."""
    c = parse_corruption(corruption) if isinstance(corruption, str) else corruption
    if c is None:
        raise ValueError("corrupted_errors needs a corruption, e.g. 'mask:0.25'")
    model.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    for idx in iterate_batches(len(x), batch_size, shuffle=False):
        clean = to_float(x[idx]).to(model.device)
        noisy = corrupt(clean, c.kind, c.level, generator=g, low=low, high=high)
        out.append(sse_per_sample(model.reconstruct(noisy), clean).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def activity_metrics(model: Autoencoder, data: Dataset, split: str = "test") -> dict[str, Any]:
    """Code activity of ``split``: ``mean_abs_activation``, ``fraction_inactive`` and ``dead_units``."""
    return activation_stats(encode_all(model, data.split(split).x))


def corruption_metrics(model: Autoencoder, data: Dataset, split: str = "test",
                       corruption: str | None = None) -> dict[str, Any]:
    """The error of reconstructing clean inputs from corrupted ones (``sse_per_image_corrupted``): with
    ``corruption``, or with a denoising model's own training corruption; empty when there is neither.  A VAE
    reconstructs through its posterior mean."""
    s = data.split(split)
    result: dict[str, Any] = {}
    spec = corruption if corruption is not None else model.train_corruption()
    c = parse_corruption(spec)
    if c is not None:
        low, high = value_range(data)
        result["corruption"] = str(c)
        result["sse_per_image_corrupted"] = float(corrupted_errors(model, s.x, c, low=low, high=high).mean())
    return result
