"""PCA as an autoencoder: fitted in closed form by SVD, with the same encode / decode interface.

encode(x) = (x − mean) Vₖᵀ, decode(z) = z Vₖ + mean, where Vₖ holds the top-k right singular vectors of the
centred training data.  Saved and loaded like any run (its parameters are buffers in ``model.safetensors``).
"""

from __future__ import annotations

import dataclasses

import torch

from .. import losses as L
from ..config import check, opt
from ..data import Batch
from .base import Autoencoder, Losses, ModelConfig


@dataclasses.dataclass(frozen=True)
class PCAConfig(ModelConfig):
    latent_dim: int = opt(16, "number of principal components kept (the code size)")
    whiten: bool = opt(False, "scale the codes to unit variance")

    def __post_init__(self) -> None:
        check(self.latent_dim >= 1, "--latent-dim must be at least 1")


class PCA(Autoencoder):
    closed_form = True
    units = {"recon": "sum of squared errors per sample"}
    # buffers (registered in __init__)
    mean: torch.Tensor
    components: torch.Tensor
    explained_variance: torch.Tensor

    def __init__(self, config: PCAConfig):
        super().__init__(config)
        d, k = self.input_dim, config.latent_dim
        check(k <= d, f"--latent-dim {k} exceeds the input dimension {d}: choose at most {d}")
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("components", torch.eye(k, d))  # (k, d), orthonormal rows
        self.register_buffer("explained_variance", torch.zeros(k))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Fit on float inputs (N, ...) in float64 for accuracy."""
        xf = x.flatten(1).to(torch.float64)
        mean = xf.mean(0)
        xc = xf - mean
        k = self.config.latent_dim
        if xc.shape[0] >= xc.shape[1]:  # eigen-decomposition of the d×d covariance: cheap for tall data
            cov = xc.T @ xc / max(1, xc.shape[0] - 1)
            evals, evecs = torch.linalg.eigh(cov)
            order = torch.argsort(evals, descending=True)[:k]
            comps, var = evecs[:, order].T, evals[order].clamp(min=0)
        else:
            _, s, vh = torch.linalg.svd(xc, full_matrices=False)
            comps, var = vh[:k], s[:k] ** 2 / max(1, xc.shape[0] - 1)
        if comps.shape[0] < k:  # fewer samples than components: pad with zero rows
            comps = torch.cat([comps, torch.zeros(k - comps.shape[0], comps.shape[1], dtype=comps.dtype)])
            var = torch.cat([var, torch.zeros(k - var.shape[0], dtype=var.dtype)])
        # deterministic sign: largest-|.| entry of each component positive (as scikit-learn's svd_flip)
        signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True))).squeeze(1)
        signs[signs == 0] = 1
        self.mean.copy_(mean.to(self.mean))
        self.components.copy_((comps * signs[:, None]).to(self.components))
        self.explained_variance.copy_(var.to(self.explained_variance))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.flatten(1) - self.mean) @ self.components.T
        if self.config.whiten:
            z = z / self.explained_variance.clamp(min=1e-12).sqrt()
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.config.whiten:
            z = z * self.explained_variance.clamp(min=1e-12).sqrt()
        return (z @ self.components + self.mean).view(-1, *self.input_shape)

    def loss(self, batch: Batch) -> Losses:
        recon = L.sse(self.forward(batch.x), batch.clean).mean()
        return Losses(recon, {"recon": recon})
