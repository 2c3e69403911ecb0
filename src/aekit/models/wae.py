"""Wasserstein autoencoder, MMD variant (WAE-MMD; Tolstikhin, Bousquet, Gelly & Schölkopf, ICLR 2018).

A deterministic encoder z = E(x) and decoder G(z), trained on

    loss = c(x, G(E(x))) + λ · MMD²_k(q_Z, p_Z),   p_Z = N(0, I)

where q_Z is the aggregate distribution of the batch's codes and the MMD uses the inverse multiquadratic kernel
k(z, z') = C / (C + ‖z − z'‖²) summed over the scales C = s · 2·d_z·σ², s ∈ {0.1, 0.2, 0.5, 1, 2, 5, 10}
(σ² = 1, the prior's variance), estimated without bias from the batch and as many prior draws (the paper's
Algorithm 2 and its reference code).  Unlike the VAE, the penalty matches the *aggregate* posterior to the prior,
so a WAE can sample (decode z ~ N(0, I)) while its codes stay deterministic.

Units: ``recon`` is the sum of squared errors per sample (``mse``, the paper's squared cost) or the Bernoulli NLL
in nats per sample (``bce``); ``mmd`` is λ·MMD², a statistic of the whole batch (no per-sample value exists).
The paper's MNIST setting λ = 10 with the cost 0.05·‖x − G(z)‖² is λ = 200 on our unscaled sum of squared
errors, the default here.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn as nn

from .. import losses as L
from ..config import check, opt
from ..data import Batch, Dataset, DataShape
from .base import Autoencoder, Losses, NetConfig, checked_temperature
from .blocks import Activation, ConvDecoder, ConvEncoder, mlp

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclasses.dataclass(frozen=True)
class WAEConfig(NetConfig):
    arch: Literal["mlp", "conv"] = opt("mlp", "network: mlp (any data) or conv (images: stride-2 convolutions)")
    activation: Activation = opt("relu", "activation of the hidden layers")
    recon_loss: Literal["auto", "bce", "mse"] = opt(
        "mse", "reconstruction cost: mse (sum of squared errors, the paper's squared cost) or bce (Bernoulli NLL, "
               "nats); auto: bce for images in [0, 1], mse otherwise")
    mmd_weight: float = opt(200.0, "λ of the MMD penalty (λ = 200 on the sum of squared errors is the paper's "
                                   "MNIST λ = 10 on its 0.05·squared cost)")
    prior_var: float = opt(1.0, "σ² of the prior N(0, σ²I) and of the IMQ kernel's scale C = 2·d_z·σ²")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.mmd_weight >= 0, "--mmd-weight must be ≥ 0")
        check(self.prior_var > 0, "--prior-var must be > 0")

    def resolve(self, data: Dataset | DataShape) -> WAEConfig:
        self.check_shape(data)
        loss = self.recon_loss if self.recon_loss != "auto" else ("bce" if data.in_unit_interval else "mse")
        return dataclasses.replace(self, input_shape=tuple(data.shape), recon_loss=loss)


def imq_mmd(z: torch.Tensor, prior: torch.Tensor, var: float = 1.0,
            scales: tuple[float, ...] = IMQ_SCALES) -> torch.Tensor:
    """Unbiased MMD² between the rows of ``z`` and of ``prior`` (both (n, d)) under the multi-scale IMQ kernel."""
    n, d = z.shape
    if n < 2:
        return z.new_zeros(())
    zz = torch.cdist(z, z).pow(2)
    pp = torch.cdist(prior, prior).pow(2)
    zp = torch.cdist(z, prior).pow(2)
    off = 1.0 - torch.eye(n, device=z.device, dtype=z.dtype)
    total = z.new_zeros(())
    for s in scales:
        c = s * 2.0 * d * var
        same = ((c / (c + zz) + c / (c + pp)) * off).sum() / (n * (n - 1))
        cross = (c / (c + zp)).sum() / (n * n)
        total = total + same - 2.0 * cross
    return total


class WAE(Autoencoder):
    generative = True
    units = {"recon": "sum of squared errors per sample (mse) or nats per sample (bce)",
             "mmd": "λ·MMD² between the batch's codes and as many prior draws (a batch statistic)"}

    def __init__(self, config: WAEConfig):
        super().__init__(config)
        c = config
        check(len(c.input_shape) >= 1, "WAEConfig.input_shape is empty: it is set from the data at train time")
        self.encoder: nn.Module
        self.decoder: nn.Module
        if c.arch == "conv":
            check(len(c.input_shape) == 3, "--arch conv needs image data (C, H, W): use --arch mlp for tables")
            self.encoder = ConvEncoder(c.input_shape, c.channels, c.latent_dim, c.activation, c.conv_hidden)
            self.decoder = ConvDecoder(c.input_shape, c.channels, c.latent_dim, c.activation, c.conv_hidden)
        else:
            self.encoder = mlp([self.input_dim, *c.hidden, c.latent_dim], c.activation)
            self.decoder = mlp([c.latent_dim, *c.hidden[::-1], self.input_dim], c.activation)

    @property
    def recon_loss(self) -> str:
        return "mse" if self.config.recon_loss == "auto" else self.config.recon_loss

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x if self.config.arch == "conv" else x.flatten(1))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.input_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decode_logits(z)
        return torch.sigmoid(out) if self.recon_loss == "bce" else out

    def loss(self, batch: Batch) -> Losses:
        """recon + λ·MMD²; the prior draws come from the global generator (reseeded per epoch by the trainer)."""
        z = self.encode(batch.x)
        out = self.decode_logits(z)
        recon = L.reconstruction(out, batch.clean, self.recon_loss).mean()
        prior = torch.randn_like(z) * self.config.prior_var ** 0.5
        mmd = self.config.mmd_weight * imq_mmd(z.float(), prior.float(), self.config.prior_var)
        return Losses(recon + mmd, {"recon": recon, "mmd": mmd})

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> torch.Tensor:
        """``n`` prior draws z = τ·σ·ε, ε ~ N(0, I) (τ = ``temperature``; τ = 1: z ~ N(0, σ²I)), decoded."""
        t = checked_temperature(temperature)
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device) * (t * self.config.prior_var ** 0.5)
        return self.decode(z)
