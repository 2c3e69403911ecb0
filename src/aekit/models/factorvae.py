"""FactorVAE (Kim & Mnih 2018): a VAE whose total correlation is penalised through a density-ratio discriminator.

The VAE is aekit's :class:`~aekit.models.vae.VAE` (its encoder, decoder, diagonal Gaussian posterior and
likelihoods, built from this config), plus a discriminator D: an MLP of 6 × 1000 leaky-ReLU (slope 0.2) units
with two logits, as in the paper's appendix and disentanglement_lib's ``fc_discriminator``.  D tells codes
z ~ q(z) (class 0) from codes with every latent unit permuted independently across a batch (class 1: draws
from the product of the marginals Πⱼ q(zⱼ), :func:`permute_dims`), so that its logit difference estimates
log q(z) / Πⱼ q(zⱼ).  Terms (nats per sample, averaged over the batch):

- ``recon`` −log p(x|z), one posterior draw; ``kl`` KL(q(z|x) ‖ N(0, I)) in closed form; ``elbo`` −(recon + kl)
- ``tc`` = E_q(z)[D(z)₀ − D(z)₁], the discriminator's estimate of the total correlation KL(q(z) ‖ Πⱼ q(zⱼ))
- ``discriminator`` D's cross-entropy ½·CE(D(z), 0) + ½·CE(D(permuted z'), 1) (nats per code); log 2 = 0.693
  is chance

The VAE minimises ``recon + anneal·(kl + γ·tc)`` (``total``); D is trained by its own optimiser (Adam, lr 1e-4,
betas (0.5, 0.9): the paper's) on ``discriminator``.  One training step (:meth:`FactorVAE.train_step`), as the
paper's Algorithm 1: the batch is split in two halves; the VAE steps on the first half, then D steps on the
first half's codes against the second half's permuted codes (both drawn again from the updated encoder, without
gradient to it).  ``loss(batch)`` (validation, evaluation) gives the same terms on one batch, D's fake codes
being the batch's own codes permuted (as disentanglement_lib's ``factor_vae``).

γ: 35 by default, the dSprites value of the PyTorch reference 1Konny/FactorVAE (``run_dsprites.sh``: ``--gamma 35``
with z_dim 10, batch 64, Adam 1e-4 / D 1e-4 (0.5, 0.9); the repository also ships γ = 6.4 and 10 dSprites scripts, and
its ``main.py`` default is 6.4); the paper's own text was not available to check; disentanglement_lib has no default
(a gin binding is required; its unsupervised study sweeps γ ∈ {10, 20, 30, 40, 50, 100}).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import check, opt
from ..data import Batch, Dataset, DataShape
from .base import Autoencoder, Losses, NetConfig, Optimizers, ParamGroup
from .blocks import Activation
from .vae import VAE, DiagonalGaussian, VAEConfig

__all__ = ["FactorVAE", "FactorVAEConfig", "discriminator_loss", "permute_dims", "tc_estimate"]


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``z`` (B, D) with each column permuted independently across the batch (Kim & Mnih 2018, Algorithm 1): every
    column keeps its values, the joint of the columns is broken (a draw from the product of the marginals)."""
    keys = torch.rand(z.shape, generator=generator, device=z.device)
    return torch.gather(z, 0, keys.argsort(dim=0))


def tc_estimate(logits: torch.Tensor) -> torch.Tensor:
    """Per code (B,): D(z)₀ − D(z)₁ = log(p_real / p_permuted), the density-ratio estimate of log q(z) / Πⱼ q(zⱼ)."""
    return logits[:, 0] - logits[:, 1]


def discriminator_loss(real_logits: torch.Tensor, perm_logits: torch.Tensor) -> torch.Tensor:
    """½·CE(real, class 0) + ½·CE(permuted, class 1), each averaged over its codes: nats per code."""
    zeros = torch.zeros(len(real_logits), dtype=torch.long, device=real_logits.device)
    ones = torch.ones(len(perm_logits), dtype=torch.long, device=perm_logits.device)
    return 0.5 * (F.cross_entropy(real_logits, zeros) + F.cross_entropy(perm_logits, ones))


@dataclasses.dataclass(frozen=True)
class FactorVAEConfig(NetConfig):
    arch: Literal["mlp", "conv"] = opt("mlp", "network: mlp (any data) or conv (images: stride-2 convolutions)")
    activation: Activation = opt("relu", "activation of the hidden layers of the encoder and decoder")
    likelihood: Literal["auto", "bernoulli", "gaussian", "laplace"] = opt(
        "auto", "p(x|z): bernoulli (images in [0, 1]), gaussian or laplace; auto: bernoulli for images, "
                "gaussian for tables")
    scale: float = opt(1.0, "σ (gaussian) or b (laplace) of p(x|z) when not learned", scope="--likelihood gaussian|laplace")
    learn_scale: bool = opt(False, "learn one shared log-scale of p(x|z)", scope="--likelihood gaussian|laplace")
    gamma: float = opt(35.0, "γ, the weight of the total-correlation estimate: loss = recon + kl + γ·tc (35: the dSprites "
                             "script of the reference 1Konny/FactorVAE; disentanglement_lib sweeps 10-100)")
    disc_hidden: tuple[int, ...] = opt((1000,) * 6, "widths of the discriminator's hidden layers (leaky ReLU 0.2)")
    disc_lr: float = opt(1e-4, "learning rate of the discriminator's Adam (the run's schedule scales it too)")
    disc_betas: tuple[float, ...] = opt((0.5, 0.9), "Adam betas of the discriminator (the paper's 0.5, 0.9)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(math.isfinite(self.gamma) and self.gamma >= 0,
              f"--gamma {self.gamma}: must be a finite number ≥ 0, e.g. --gamma 35 (0 = a plain VAE)")
        check(len(self.disc_hidden) >= 1 and all(h >= 1 for h in self.disc_hidden),
              "--disc-hidden widths must be positive, e.g. --disc-hidden 1000,1000,1000,1000,1000,1000")
        check(math.isfinite(self.disc_lr) and self.disc_lr > 0, f"--disc-lr {self.disc_lr}: must be a finite number > 0, e.g. 1e-4")
        check(len(self.disc_betas) == 2 and all(0 <= b < 1 for b in self.disc_betas),
              f"--disc-betas {','.join(map(str, self.disc_betas))}: give two numbers in [0, 1), e.g. --disc-betas 0.5,0.9")
        self.vae_config()  # the VAE's own checks (scale, learn_scale with the likelihood) as one-line errors

    def vae_config(self) -> VAEConfig:
        """The config of the VAE part: the same networks and likelihood, the plain ELBO (β = 1, no free bits)."""
        return VAEConfig(input_shape=self.input_shape, arch=self.arch, hidden=self.hidden, channels=self.channels,
                         conv_hidden=self.conv_hidden, latent_dim=self.latent_dim, activation=self.activation,
                         likelihood=self.likelihood, scale=self.scale, learn_scale=self.learn_scale)

    def resolve(self, data: Dataset | DataShape) -> FactorVAEConfig:
        self.check_shape(data)
        vae = self.vae_config().resolve(data)
        return dataclasses.replace(self, input_shape=vae.input_shape, likelihood=vae.likelihood)


class FactorVAE(Autoencoder):
    generative = True
    posterior = True
    units = {"recon": "nats per sample (−log p(x|z), one posterior draw)", "kl": "nats per sample (closed form)",
             "elbo": "nats per sample (−(recon + kl))",
             "tc": "nats per sample (the discriminator's total-correlation estimate E_q(z)[D(z)_0 − D(z)_1]; loss = "
                   "recon + kl + γ·tc)",
             "discriminator": "nats per code (the discriminator's cross-entropy ½·CE(D(z), 0) + ½·CE(D(permuted z), "
                              "1); log 2 = 0.693 is chance; trained by its own optimiser)"}

    def __init__(self, config: FactorVAEConfig):
        super().__init__(config)
        check(len(config.input_shape) >= 1, "FactorVAEConfig.input_shape is empty: it is set from the data at train time")
        self.vae = VAE(config.vae_config())
        layers: list[nn.Module] = []
        width = config.latent_dim
        for h in config.disc_hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.discriminator = nn.Sequential(*layers, nn.Linear(width, 2))

    # ------------------------------------------------------------------------------------------ the VAE
    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        return self.vae.encode(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.embed(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode_logits(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z)

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.vae.nll(out, x)

    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> torch.Tensor:
        return self.vae.sample(n, generator, temperature=temperature)

    # -------------------------------------------------------------------------------------- the losses
    def vae_loss(self, batch: Batch) -> tuple[Losses, torch.Tensor]:
        """The VAE's Losses on ``batch`` (total = recon + anneal·(kl + γ·tc)) and its codes z (one draw each)."""
        q = self.vae.encode(batch.x)
        z = q.sample()
        recon = self.vae.nll(self.vae.decode_logits(z), batch.clean).mean()
        kl = q.kl().mean()
        tc = tc_estimate(self.discriminator(z)).mean()
        total = recon + batch.anneal * (kl + self.config.gamma * tc)
        return Losses(total, {"recon": recon, "kl": kl, "elbo": -(recon + kl), "tc": tc}), z

    def loss(self, batch: Batch) -> Losses:
        """All terms on one batch; D's permuted codes are the batch's own codes permuted (``total``: the VAE's)."""
        losses, z = self.vae_loss(batch)
        z = z.detach()
        disc = discriminator_loss(self.discriminator(z), self.discriminator(permute_dims(z)))
        return Losses(losses.total, {**losses.terms, "discriminator": disc})

    def vae_step_loss(self, batch: Batch) -> Losses:
        return self.vae_loss(batch)[0]

    def discriminator_step_loss(self, real: Batch, other: Batch) -> Losses:
        """D's loss: codes of ``real`` (class 0) against the permuted codes of ``other`` (class 1), both drawn from
        the encoder without gradient to it."""
        with torch.no_grad():
            z_real = self.vae.encode(real.x).sample()
            z_perm = permute_dims(self.vae.encode(other.x).sample())
        disc = discriminator_loss(self.discriminator(z_real), self.discriminator(z_perm))
        return Losses(disc, {"discriminator": disc})

    # ----------------------------------------------------------------------------------------- training
    def param_groups(self) -> list[ParamGroup]:
        c = self.config
        b1, b2 = c.disc_betas
        return [ParamGroup("vae", tuple(self.vae.parameters())),
                ParamGroup("discriminator", tuple(self.discriminator.parameters()), lr=c.disc_lr, betas=(b1, b2),
                           weight_decay=0.0)]

    def train_step(self, batch: Batch, optimizers: Optimizers) -> Losses:
        """The paper's step: the VAE on the first half of the batch, then D on the first half's codes against the
        second half's permuted codes (a batch of one sample serves as both halves)."""
        half = max(1, len(batch.x) // 2)
        first = _rows(batch, slice(0, half))
        second = _rows(batch, slice(half, None)) if len(batch.x) > 1 else first
        vae = optimizers.forward(self.vae_step_loss, first)
        optimizers.step("vae", vae.total)
        disc = optimizers.forward(self.discriminator_step_loss, first, second)
        optimizers.step("discriminator", disc.total)
        return Losses(vae.total, {**vae.terms, "discriminator": disc.total})


def _rows(batch: Batch, rows: slice) -> Batch:
    return Batch(batch.x[rows], None if batch.target is None else batch.target[rows],
                 None if batch.labels is None else batch.labels[rows], batch.anneal)
