"""Input corruption for denoising autoencoders: ``mask:P``, ``gaussian:SIGMA`` and ``salt-pepper:P``.

A spec string is parsed once (:func:`parse_corruption`, one-line error naming the fix) into a kind and a level.
:func:`corrupt` is vectorised (one random tensor per batch, no per-sample Python).  Noise is drawn on the CPU
from ``generator`` — by default the global CPU generator, which training checkpoints save, so a run is
deterministic given its seed and a resumed run draws exactly the noise an uninterrupted one would — and moved
to the batch's device (a few hundred kB per batch: negligible next to a training step).

- ``mask:P``: each input element is set to 0 with probability P (Vincent et al.'s masking noise)
- ``gaussian:SIGMA``: x + SIGMA·N(0, 1), not clipped (additive isotropic noise)
- ``salt-pepper:P``: each element is set, with probability P, to the low or the high end of its range (0 or 1
  for images; the training split's per-feature minimum / maximum for tables), each with probability P/2
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import ConfigError
from .base import Dataset, to_float
from .batch import Batch

KINDS = ("mask", "gaussian", "salt-pepper")

_FIX = "use --corruption mask:P, gaussian:SIGMA or salt-pepper:P (e.g. mask:0.25), or none"


@dataclasses.dataclass(frozen=True)
class Corruption:
    kind: str  # one of KINDS
    level: float  # P for mask / salt-pepper, SIGMA for gaussian

    def __str__(self) -> str:
        return f"{self.kind}:{self.level:g}"


def parse_corruption(spec: str | None) -> Corruption | None:
    """``"mask:0.25"`` → ``Corruption("mask", 0.25)``; ``"none"`` / ``""`` / None → None; otherwise ConfigError."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    kind, sep, level = spec.strip().lower().partition(":")
    if kind not in KINDS or not sep:
        raise ConfigError(f"--corruption {spec!r} is not a corruption: {_FIX}")
    try:
        value = float(level)
    except ValueError:
        raise ConfigError(f"--corruption {spec!r}: the level {level!r} is not a number; {_FIX}") from None
    if kind == "gaussian" and not value > 0:
        raise ConfigError(f"--corruption {spec!r}: the noise SIGMA must be > 0, e.g. gaussian:0.1")
    if kind != "gaussian" and not 0 < value < 1:
        raise ConfigError(f"--corruption {spec!r}: the probability must be in (0, 1), e.g. {kind}:0.25")
    return Corruption(kind, value)


def corrupt(
    x: torch.Tensor,
    kind: str,
    level: float,
    *,
    generator: torch.Generator | None = None,
    low: torch.Tensor | float = 0.0,
    high: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """A corrupted copy of the float batch ``x`` (``low`` / ``high``: salt-and-pepper values, broadcastable)."""
    dev = generator.device if generator is not None else torch.device("cpu")
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
        return x + level * noise
    u = torch.rand(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
    if kind == "mask":
        return x * (u >= level).to(x.dtype)
    if kind == "salt-pepper":
        low_t = torch.as_tensor(low, dtype=x.dtype, device=x.device).expand_as(x)
        high_t = torch.as_tensor(high, dtype=x.dtype, device=x.device).expand_as(x)
        return torch.where(u < level / 2, low_t, torch.where(u < level, high_t, x))
    raise ConfigError(f"unknown corruption kind {kind!r}: {_FIX}")


def value_range(data: Dataset) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """Salt-and-pepper values of ``data``: (0, 1) for images, per-feature train min / max for tables."""
    if data.kind == "image":
        return 0.0, 1.0
    x = to_float(data.train.x).flatten(1)
    return x.amin(0), x.amax(0)


@dataclasses.dataclass(frozen=True)
class Corrupt:
    """The denoising batch transform: the model's input becomes a corrupted copy, the clean batch its target."""

    corruption: Corruption
    low: torch.Tensor | float = 0.0
    high: torch.Tensor | float = 1.0

    @property
    def name(self) -> str:
        return f"corruption {self.corruption}"

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        c = self.corruption
        noisy = corrupt(batch.x, c.kind, c.level, generator=generator, low=self.low, high=self.high)
        return batch._replace(x=noisy, target=batch.clean)


def corruption_transform(spec: str | None, data: Dataset) -> Corrupt | None:
    """The :class:`Corrupt` transform of ``spec`` on ``data`` (None when ``spec`` is none)."""
    c = parse_corruption(spec)
    if c is None:
        return None
    low, high = value_range(data)
    return Corrupt(c, low, high)
