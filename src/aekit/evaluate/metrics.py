"""Metrics as pure functions over tensors (no models, no I/O)."""

from __future__ import annotations

import torch


def sse_per_sample(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors over each sample's elements, shape (N,)."""
    return (recon - x).reshape(x.shape[0], -1).pow(2).sum(1)


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (degrees, ascending) between the column spaces of ``a`` (d×k) and ``b`` (d×m)."""
    qa, _ = torch.linalg.qr(a.double())
    qb, _ = torch.linalg.qr(b.double())
    s = torch.linalg.svdvals(qa.T @ qb).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(s)).flip(0)
