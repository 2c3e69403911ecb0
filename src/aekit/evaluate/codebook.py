"""Codebook statistics of a ``discrete`` model (a VQ-VAE) on a data split, and its prior's NLL.

- ``codebook_usage``: the fraction of the K codes that at least one grid position of the split is assigned to;
  ``dead_codes``: K minus the codes used;
- ``codebook_perplexity``: exp(H(p̄)), p̄ the mean one-hot code assignment over every grid position of the split
  (K when all codes are used equally, 1 when one code is used), as in the Sonnet VQ-VAE example (the
  model's loss term ``batch_perplexity``, also in evaluation.json, is the mean of per-batch figures and depends
  on the evaluation batch size: not the split's perplexity);
- ``prior_nll``: −log p(indices) under the model's prior (the masked or gated PixelCNN), nats per image, averaged over the split;
  ``prior_bits_per_code`` = prior_nll / (h·w·ln 2) (bits per grid position, at most log₂ K for a uniform
  prior) and ``prior_bits_per_dim`` = prior_nll / (C·H·W·ln 2) (the same bits spread over the image's
  dimensions: the prior's part of a bits-per-dimension figure, not a likelihood of the pixels).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..data import iterate_batches, to_float
from ..models.base import Autoencoder

__all__ = ["codebook_metrics", "code_indices", "usage_stats"]


@torch.no_grad()
def code_indices(model: Autoencoder, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The code index grids (N, h, w) int64 of every row of ``x`` (uint8 or float), on the CPU."""
    model.require("discrete", "code indices")
    model.eval()
    out = [model.encode(to_float(x[idx]).to(model.device)).cpu()
           for idx in iterate_batches(len(x), batch_size, shuffle=False)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def usage_stats(codes: torch.Tensor, k: int) -> dict[str, Any]:
    """Usage, perplexity and dead codes of index grids ``codes`` for a codebook of ``k`` codes."""
    counts = torch.bincount(codes.reshape(-1), minlength=k).double()
    p = counts / counts.sum().clamp_min(1)
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    used = int((counts > 0).sum())
    return {"codebook_size": k, "codebook_usage": used / k, "codebook_perplexity": math.exp(entropy),
            "dead_codes": k - used}


@torch.no_grad()
def codebook_metrics(model: Autoencoder, x: torch.Tensor, batch_size: int = 500) -> dict[str, Any]:
    """:func:`usage_stats` of the split ``x`` and the prior's NLL (see the module docstring for the units)."""
    codes = code_indices(model, x, batch_size)
    result = usage_stats(codes, model.codebook_size)
    if len(codes):
        nll = torch.cat([model.code_nll(codes[idx].to(model.device)).double().cpu()
                         for idx in iterate_batches(len(codes), batch_size, shuffle=False)])
        mean = float(nll.mean())
        positions = math.prod(codes.shape[1:])
        result.update({"prior_nll": mean, "prior_bits_per_code": mean / (positions * math.log(2)),
                       "prior_bits_per_dim": mean / (model.input_dim * math.log(2))})
    return result
