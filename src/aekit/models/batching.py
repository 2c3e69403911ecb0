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
def loss_draws(model: Autoencoder, split: Split, draws: int = 1, batch_size: int | None = None,
               seed: int = 1234) -> dict[str, torch.Tensor]:
    """Batch-size-weighted mean of each loss term over a split, once per posterior draw: ``{term: (draws,)}``
    float64 tensors.  Every batch's loss is evaluated ``draws`` times in a row from one generator seeded with
    ``seed`` (deterministic; with ``draws=1`` the draws of :func:`mean_losses`); the global RNG of every device
    is restored afterwards."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
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
            batch = split_batch(model, split, idx)
            for s in range(draws):
                losses = model.loss(batch)
                for k, v in {"loss": losses.total, **losses.terms}.items():
                    if k not in sums:
                        sums[k] = torch.zeros(draws, dtype=torch.float64, device=v.device)
                    sums[k][s] += v.detach().double() * len(idx)
    model.train(was_training)
    return {k: v.cpu() / max(1, n) for k, v in sums.items()}


def mean_losses(model: Autoencoder, split: Split, batch_size: int | None = None, seed: int = 1234,
                draws: int = 1) -> dict[str, float]:
    """Batch-size-weighted mean of each loss term over a split (fixed noise seed; the global RNG of every device
    is restored afterwards); ``draws`` > 1 averages each term over that many posterior draws per sample
    (:func:`loss_draws`)."""
    return {k: float(v.mean()) for k, v in loss_draws(model, split, draws, batch_size, seed).items()}
