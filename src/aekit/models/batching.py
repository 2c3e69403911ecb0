"""Batches of a split for a model, and the mean of its loss terms over a split (validation, evaluation).

Both the trainer (validation) and :mod:`aekit.evaluate` use these, so they live with the models: the trainer
must not import evaluation, nor evaluation the trainer.
"""

from __future__ import annotations

import math

import torch

from ..data import Batch, Split, eval_batch_size, iterate_batches, to_float
from .base import Autoencoder

# input elements per evaluation batch: 2 Mi for reconstruction models, 256 Ki for segmentation networks, whose
# activations per input pixel are many times larger (a 3-level U-Net: 16 images of 128×128 per batch)
EVAL_BUDGET = 1 << 21
SUPERVISED_EVAL_BUDGET = 1 << 18


def eval_batch(model: Autoencoder, split: Split) -> int:
    """The evaluation batch size of ``model`` on ``split``: bounded by memory, never the whole split."""
    numel = math.prod(int(s) for s in split.x.shape[1:])
    return eval_batch_size(numel, budget=SUPERVISED_EVAL_BUDGET if model.supervised else EVAL_BUDGET)


def split_batch(model: Autoencoder, split: Split, idx: torch.Tensor) -> Batch:
    """Rows ``idx`` of ``split`` as a :class:`Batch` on the model's device (masks for supervised models)."""
    x = to_float(split.x[idx.to(split.x.device)]).to(model.device)
    labels = None
    if model.needs_labels and split.y is not None:
        labels = split.y[idx.to(split.y.device)].to(model.device)
    return Batch(x, labels=labels)


@torch.no_grad()
def mean_losses(model: Autoencoder, split: Split, batch_size: int | None = None, seed: int = 1234) -> dict[str, float]:
    """Batch-size-weighted mean of each loss term over a split (fixed noise seed; the global RNG of every device
    is restored afterwards)."""
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    n = len(split)
    bs = batch_size or eval_batch(model, split)
    device = model.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        for idx in iterate_batches(n, bs, shuffle=False):
            losses = model.loss(split_batch(model, split, idx))
            for k, v in {"loss": losses.total, **losses.terms}.items():
                sums[k] = sums.get(k, 0.0) + v.detach().double() * len(idx)
    model.train(was_training)
    return {k: float(v) / max(1, n) for k, v in sums.items()}
