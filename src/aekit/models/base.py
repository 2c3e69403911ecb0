"""What every model shares: the :class:`Losses` tuple and the small verb set (see :class:`Autoencoder`)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn as nn


class Losses(NamedTuple):
    """``total`` is what the optimiser minimises (batch mean); ``terms`` are its named parts (batch means)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class Autoencoder(nn.Module):
    """Base of every model: one frozen config as the only constructor argument, and the same verbs.

    - ``encode(x)``: the code (a tensor; a VAE returns its posterior, a :class:`DiagonalGaussian`)
    - ``embed(x)``: a deterministic code tensor for every model (VAE: the posterior mean)
    - ``decode(z)``: data-space output (the mean of p(x|z)), shaped like the input
    - ``forward(x)``: the reconstruction
    - ``loss(x, anneal=1.0) -> Losses``: per-sample sums averaged over the batch; ``anneal`` ∈ [0, 1]
      scales the regulariser during warm-up (β warm-up for VAEs, ignored by others)
    """

    can_sample: ClassVar[bool] = False
    closed_form: ClassVar[bool] = False  # fitted by :meth:`fit`, not by gradient descent

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.config.input_shape)

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.embed(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not generative")

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")
