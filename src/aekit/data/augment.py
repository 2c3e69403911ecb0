"""Paired (image, mask) augmentation for segmentation, on whole batch tensors — no per-sample Python.

As in Ronneberger et al. (2015): random elements of the dihedral group (flips, and 90° rotations of square
images) and an elastic deformation — random displacement vectors on a coarse 3×3 grid (Gaussian, std
``elastic_sigma`` × the image side), interpolated bicubically to a smooth per-pixel field and applied with
``grid_sample`` (bilinear for images, nearest for masks, so class ids stay class ids).  Every random draw comes
from the ``generator`` argument (on the CPU), so a batch's augmentation is a pure function of that generator's
seed: the trainer seeds it from (seed, step), which keeps resumed runs exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batch import Batch


def dihedral(x: torch.Tensor, y: torch.Tensor, coins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: transpose (only when H == W) if ``coins[0]``, flip left-right if ``coins[1]``, flip up-down if
    ``coins[2]`` (``coins``: bool (3, B)).  Together these give all 8 flips / 90° rotations of a square."""
    t, fh, fv = (c.to(x.device) for c in coins)
    if x.shape[-1] == x.shape[-2]:
        x = torch.where(t[:, None, None, None], x.transpose(-1, -2), x)
        y = torch.where(t[:, None, None], y.transpose(-1, -2), y)
    x = torch.where(fh[:, None, None, None], x.flip(-1), x)
    y = torch.where(fh[:, None, None], y.flip(-1), y)
    x = torch.where(fv[:, None, None, None], x.flip(-2), x)
    y = torch.where(fv[:, None, None], y.flip(-2), y)
    return x, y


def elastic_grid(displacement: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A ``grid_sample`` grid (B, H, W, 2) for coarse displacements (B, 2, g, g) in pixels (x then y),
    bicubically interpolated to (H, W)."""
    h, w = size
    field = F.interpolate(displacement, size=(h, w), mode="bicubic", align_corners=True)  # (B, 2, H, W), pixels
    ys = (torch.arange(h, dtype=field.dtype, device=field.device) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, dtype=field.dtype, device=field.device) + 0.5) * (2.0 / w) - 1.0
    gx = xs[None, None, :] + field[:, 0] * (2.0 / w)
    gy = ys[None, :, None] + field[:, 1] * (2.0 / h)
    return torch.stack([gx, gy], dim=-1)


def paired_augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, *, elastic_sigma: float = 0.03,
                   grid: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment images ``x`` (B, C, H, W) float and masks ``y`` (B, H, W) integer class ids identically."""
    b, _, h, w = x.shape
    coins = torch.rand(3, b, generator=generator) < 0.5
    x, y = dihedral(x, y, coins)
    if elastic_sigma > 0:
        disp = torch.randn(b, 2, grid, grid, generator=generator) * (elastic_sigma * min(h, w))
        g = elastic_grid(disp.to(x.device), (h, w)).to(x.dtype)
        x = F.grid_sample(x, g, mode="bilinear", padding_mode="reflection", align_corners=False)
        ym = F.grid_sample(y[:, None].to(x.dtype), g, mode="nearest", padding_mode="reflection", align_corners=False)
        y = ym[:, 0].round().to(y.dtype)
    return x, y


class PairedAugment:
    """The segmentation batch transform: :func:`paired_augment` of the images and their masks (``labels``)."""

    name = "paired augmentation (flips, 90° rotations, elastic)"

    def __init__(self, elastic_sigma: float = 0.03):
        self.elastic_sigma = elastic_sigma

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        if batch.labels is None:
            return batch
        x, y = paired_augment(batch.x, batch.labels, generator, elastic_sigma=self.elastic_sigma)
        return batch._replace(x=x, labels=y)
