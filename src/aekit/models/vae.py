"""Variational autoencoder (and β-VAE: ``VAE(VAEConfig(beta=4))``).

The encoder outputs μ and log σ² of a diagonal Gaussian posterior q(z|x); z = μ + σ⊙ε (reparameterisation);
the prior is N(0, I); KL is in closed form.  ``loss`` returns −ELBO = recon + β·KL in nats per sample (summed
over dimensions, averaged over the batch), with ``recon`` = −log p(x|z) for the chosen likelihood.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn as nn

from .. import losses as L
from ..config import check, opt
from ..data import Batch, Dataset, DataShape
from .base import Autoencoder, Losses, NetConfig
from .blocks import Activation, ConvDecoder, ConvEncoder, mlp


class DiagonalGaussian:
    """A batch of diagonal Gaussians N(mean, diag(exp(logvar))): ``sample()``, ``mode()``, ``kl()``."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is None:  # same draws; and torch.compile traces randn_like with a dynamic batch size
            eps = torch.randn_like(self.mean)
        else:
            eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL to N(0, I) per sample, shape (B,), in nats."""
        return L.gaussian_kl(self.mean, self.logvar)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z) summed over latent dims; ``z`` may have extra leading sample dims."""
        return -0.5 * ((z - self.mean).pow(2) * torch.exp(-self.logvar) + self.logvar + L.LOG_2PI).sum(-1)


@dataclasses.dataclass(frozen=True)
class VAEConfig(NetConfig):
    arch: Literal["mlp", "conv"] = opt("mlp", "network: mlp (any data) or conv (images: stride-2 convolutions)")
    activation: Activation = opt("relu", "activation of the hidden layers")
    beta: float = opt(1.0, "weight of the KL term: loss = recon + β·KL; β > 1 gives a β-VAE")
    likelihood: Literal["auto", "bernoulli", "gaussian", "laplace"] = opt(
        "auto", "p(x|z): bernoulli (images in [0, 1]), gaussian or laplace; auto: bernoulli for images, "
                "gaussian for tables")
    scale: float = opt(1.0, "σ (gaussian) or b (laplace) of p(x|z) when not learned", scope="--likelihood gaussian|laplace")
    learn_scale: bool = opt(False, "learn one shared log-scale of p(x|z)", scope="--likelihood gaussian|laplace")
    objective: Literal["elbo", "iwae"] = opt(
        "elbo", "training bound: elbo (one posterior draw) or iwae, the importance-weighted bound of Burda et al. "
                "(2016) with --iwae-k draws, tighter for k > 1 (same encoder and decoder)")
    iwae_k: int = opt(5, "importance samples of the IWAE bound (k = 1 is the ELBO)", scope="--objective iwae")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.beta >= 0, "--beta must be ≥ 0")
        check(self.iwae_k >= 1, f"--iwae-k {self.iwae_k}: the IWAE bound needs at least 1 sample, e.g. --iwae-k 5")
        check(not (self.objective == "iwae" and self.beta != 1.0),
              "--objective iwae is the bound on log p(x) itself: it has no β; drop --beta (or use --objective elbo)")
        check(self.scale > 0, "--scale must be > 0")
        check(not (self.learn_scale and self.likelihood == "bernoulli"),
              "--learn-scale needs --likelihood gaussian or laplace: a Bernoulli likelihood has no scale")

    def resolve(self, data: Dataset | DataShape) -> VAEConfig:
        self.check_shape(data)
        lik = self.likelihood if self.likelihood != "auto" else ("bernoulli" if data.in_unit_interval else "gaussian")
        check(not (self.learn_scale and lik == "bernoulli"),
              "--learn-scale needs --likelihood gaussian or laplace: these images get a Bernoulli likelihood")
        return dataclasses.replace(self, input_shape=tuple(data.shape), likelihood=lik)


class VAE(Autoencoder):
    generative = True
    posterior = True
    units = {"recon": "nats per sample (−log p(x|z), one posterior draw)", "kl": "nats per sample",
             "elbo": "nats per sample (−(recon + kl))",
             "iwae_bound": "nats per sample (the k-sample importance-weighted bound on log p(x); --objective iwae)"}
    encoder: nn.Module  # ConvEncoder, or an MLP body + linear head
    decoder: nn.Module  # ConvDecoder or an MLP

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        check(len(c.input_shape) >= 1, "VAEConfig.input_shape is empty: it is set from the data at train time")
        if c.arch == "conv":
            check(len(c.input_shape) == 3, "--arch conv needs image data (C, H, W): use --arch mlp for tables")
            self.encoder = ConvEncoder(c.input_shape, c.channels, 2 * c.latent_dim, c.activation, c.conv_hidden)
            self.decoder = ConvDecoder(c.input_shape, c.channels, c.latent_dim, c.activation, c.conv_hidden)
        else:
            # encoder body ends in an activation; one linear head gives [μ, log σ²]
            self.encoder = nn.Sequential(
                mlp([self.input_dim, *c.hidden], c.activation, last_act=True),
                nn.Linear(c.hidden[-1] if c.hidden else self.input_dim, 2 * c.latent_dim),
            )
            self.decoder = mlp([c.latent_dim, *c.hidden[::-1], self.input_dim], c.activation)
        self.log_scale = nn.Parameter(torch.tensor(math.log(c.scale)), requires_grad=c.learn_scale)

    @property
    def likelihood(self) -> str:
        return "bernoulli" if self.config.likelihood == "auto" else self.config.likelihood

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        h = self.encoder(x if self.config.arch == "conv" else x.flatten(1))
        mean, logvar = h.chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x).mode()

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.input_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decode_logits(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) per sample (B,), nats; ``out`` are decoder logits (bernoulli) or means."""
        if self.likelihood == "bernoulli":
            return L.bernoulli_nll(out, x)
        log_scale = self.log_scale.clamp(min=-7.0)
        if self.likelihood == "gaussian":
            return L.gaussian_nll(out, x, log_scale)
        return L.laplace_nll(out, x, log_scale)

    def loss(self, batch: Batch) -> Losses:
        """−ELBO with the KL weighted by β·anneal (one draw z ~ q(z|x) from the global generator), or with
        ``objective="iwae"`` the negative importance-weighted bound (``anneal`` does not apply to it)."""
        if self.config.objective == "iwae":
            return self._iwae_loss(batch)
        q = self.encode(batch.x)
        z = q.sample()
        recon = self.nll(self.decode_logits(z), batch.clean).mean()
        kl = q.kl().mean()
        total = recon + (self.config.beta * batch.anneal) * kl
        return Losses(total, {"recon": recon, "kl": kl, "elbo": -(recon + kl)})

    def _iwae_loss(self, batch: Batch) -> Losses:
        """−L_k = −E[log (1/k) Σ_i p(x, z_i) / q(z_i|x)], z_i ~ q(z|x) (Burda et al. 2016, eq. 8), nats per
        sample; ``recon``, ``kl`` and ``elbo`` are the usual one-draw ELBO terms averaged over the k draws."""
        k = self.config.iwae_k
        q = self.encode(batch.x)
        eps = torch.randn((k, *q.mean.shape), device=q.mean.device, dtype=q.mean.dtype)
        z = q.mean + q.std * eps  # (k, B, d): reparameterised, like q.sample()
        x = batch.clean
        nll = self.nll(self.decode_logits(z.reshape(-1, z.shape[-1])), x.repeat(k, *([1] * (x.dim() - 1))))
        nll = nll.view(k, -1)
        log_pz = -0.5 * (z.pow(2) + L.LOG_2PI).sum(-1)
        log_w = -nll + log_pz - q.log_prob(z)  # (k, B)
        bound = (torch.logsumexp(log_w, dim=0) - math.log(k)).mean()
        recon, kl = nll.mean(), q.kl().mean()
        return Losses(-bound, {"iwae_bound": bound, "recon": recon, "kl": kl, "elbo": -(recon + kl)})

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the prior, decoded (no autograd: ``model.sample(2).numpy()`` works)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode(z)
