"""The one batch type every model's ``loss`` takes, and the batch transforms the trainer applies.

A :class:`Batch` is what a training or evaluation step feeds a model: the input ``x`` (float, on the model's
device), the ``target`` a reconstruction is scored against (``None``: ``x`` itself; a denoising AE gets the
clean input here while ``x`` is corrupted), ``labels`` (class ids (B,) or segmentation masks (B, H, W)) and
``anneal`` ∈ [0, 1], the warm-up weight of a model's regulariser (β warm-up).  The trainer never branches on a
model's kind: it builds one Batch per step and calls ``model.loss(batch)``.

A :class:`BatchTransform` maps a Batch to a Batch with a ``torch.Generator`` that the trainer seeds from
(seed, step, transform index): every draw is a pure function of the step, so a resumed run gets exactly the
corruption and augmentation an uninterrupted one would, with no random state to checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Protocol

import torch


class Batch(NamedTuple):
    x: torch.Tensor
    target: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    anneal: float = 1.0

    @property
    def clean(self) -> torch.Tensor:
        """What a reconstruction is scored against: ``target``, or ``x`` when there is none."""
        return self.x if self.target is None else self.target


class BatchTransform(Protocol):
    """``transform(batch, generator) -> batch``; ``name`` is shown in the log."""

    @property
    def name(self) -> str: ...

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch: ...


@dataclasses.dataclass(frozen=True)
class DataShape:
    """What a model config's ``resolve`` reads of a dataset, for building a model without one: the shape of a
    sample, whether inputs lie in [0, 1] (images), the class count of segmentation masks and the size of the
    training split (None: unknown; β-TCVAE's q(z) estimate needs it)."""

    shape: tuple[int, ...]
    in_unit_interval: bool = True
    num_classes: int | None = None
    num_train: int | None = None


def eval_batch_size(sample_numel: int, cap: int = 1024, budget: int = 1 << 21) -> int:
    """A batch size for evaluation and validation bounded by memory: ``budget`` input elements per batch
    (2 Mi: 2,674 Fashion-MNIST images, 128 images of 128×128), at most ``cap``, at least 1."""
    return max(1, min(cap, budget // max(1, int(sample_numel))))
