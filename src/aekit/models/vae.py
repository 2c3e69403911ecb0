"""Variational autoencoder (and β-VAE: ``VAE(VAEConfig(beta=4))``).

The encoder outputs μ and log σ² of a diagonal Gaussian posterior q(z|x); z = μ + σ⊙ε (reparameterisation);
the prior is N(0, I); KL is in closed form.  ``loss`` returns −ELBO = recon + β·KL in nats per sample (summed
over dimensions, averaged over the batch), with ``recon`` = −log p(x|z) for the chosen likelihood.

With ``hidden=()`` both networks are linear (encoder x → [μ, log σ²], decoder z → mean of x, no output
activation for a Gaussian likelihood), and a Gaussian p(x|z) = N(Wz + b, σ²I) with a learned shared σ
(``learn_scale=True``) is probabilistic PCA (Tipping & Bishop 1999); with ``scale_shape="per-dim"`` (one learned
σᵢ per input dimension, Ψ = diag(σᵢ²)) it is factor analysis (``aekit experiment linear-vae``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Literal, cast

import torch
import torch.nn as nn

from .. import losses as L
from ..config import check, opt
from ..data import Batch, Dataset, DataShape
from .base import Autoencoder, Losses, NetConfig, checked_temperature
from .blocks import Activation, ConvDecoder, ConvEncoder, mlp

log = logging.getLogger("aekit.models")


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
    beta: float = opt(1.0, "weight of the KL term: loss = recon + β·KL; β > 1 gives a β-VAE (with --objective "
                           "tcvae: the weight of the total correlation only)")
    likelihood: Literal["auto", "bernoulli", "gaussian", "laplace"] = opt(
        "auto", "p(x|z): bernoulli (images in [0, 1]), gaussian or laplace; auto: bernoulli for images, "
                "gaussian for tables")
    scale: float = opt(1.0, "σ (gaussian) or b (laplace) of p(x|z) when not learned", scope="--likelihood gaussian|laplace")
    learn_scale: bool = opt(False, "learn one shared log-scale of p(x|z)", scope="--likelihood gaussian|laplace")
    scale_shape: Literal["shared", "per-dim"] = opt(
        "shared", "the learned scale of p(x|z): shared (one σ for every dimension: with a linear encoder and decoder, "
                  "--hidden '', probabilistic PCA) or per-dim (one σᵢ per input dimension: factor analysis)",
        scope="--learn-scale")
    objective: Literal["elbo", "iwae", "tcvae"] = opt(
        "elbo", "training bound: elbo (one posterior draw) or iwae, the importance-weighted bound of Burda et al. "
                "(2016) with --iwae-k draws, tighter for k > 1 (same encoder and decoder), or tcvae, the β-TCVAE "
                "objective of Chen et al. (2018): the KL split into --tc-alpha·MI + --beta·TC + --tc-gamma·dimKL")
    iwae_k: int = opt(5, "importance samples of the IWAE bound (k = 1 is the ELBO)", scope="--objective iwae")
    free_bits: float = opt(0.0, "free bits λ in nats (Kingma et al. 2016): the training loss counts at least λ nats of "
                                "KL (per unit or per sample, --free-bits-mode), so a KL below λ is not pushed "
                                "to 0; the reported kl and elbo stay the true ones; 0 = off", scope="--objective elbo")
    free_bits_mode: Literal["unit", "sample"] = opt(
        "unit", "unit: each latent unit's KL, averaged over the minibatch, clamped below at λ, then summed (the "
                "paper's rule); sample: each sample's total KL clamped at λ", scope="--free-bits > 0")

    tc_alpha: float = opt(1.0, "α, the weight of the index-code mutual information (1: as in the ELBO)",
                          scope="--objective tcvae")
    tc_gamma: float = opt(1.0, "γ, the weight of the dimension-wise KL (1: as in the ELBO)", scope="--objective tcvae")
    tc_dataset_size: int = opt(0, "N of the minibatch-weighted sampling estimate of q(z); 0: the training split's "
                                  "size, set from the data at train time", scope="--objective tcvae")
    tc_estimator: Literal["mws", "mss"] = opt(
        "mws", "estimate of log q(z) from the batch: mws (minibatch-weighted sampling, the paper's) or mss "
               "(minibatch stratified sampling: a far smaller offset in the reported mi, tc, dim_kl)",
        scope="--objective tcvae")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.beta >= 0, "--beta must be ≥ 0")
        check(self.iwae_k >= 1, f"--iwae-k {self.iwae_k}: the IWAE bound needs at least 1 sample, e.g. --iwae-k 5")
        check(not (self.objective == "iwae" and self.beta != 1.0),
              "--objective iwae is the bound on log p(x) itself: it has no β; drop --beta (or use --objective elbo)")
        check(math.isfinite(self.free_bits) and self.free_bits >= 0,
              f"--free-bits {self.free_bits:g}: must be a finite number of nats ≥ 0, e.g. --free-bits 0.5 (0 = off)")
        check(self.scale > 0, "--scale must be > 0")
        check(not (self.scale_shape == "per-dim" and self.likelihood == "bernoulli"),
              "--scale-shape per-dim needs --likelihood gaussian or laplace: a Bernoulli likelihood has no scale")
        check(not (self.scale_shape == "per-dim" and not self.learn_scale),
              "--scale-shape per-dim is a learned scale per dimension: add --learn-scale (a fixed scale is --scale)")
        check(not (self.learn_scale and self.likelihood == "bernoulli"),
              "--learn-scale needs --likelihood gaussian or laplace: a Bernoulli likelihood has no scale")
        check(self.tc_alpha >= 0 and self.tc_gamma >= 0, "--tc-alpha and --tc-gamma must be ≥ 0")
        check(self.tc_dataset_size >= 0, f"--tc-dataset-size {self.tc_dataset_size}: must be ≥ 0 (0: from the data)")
        check(self.objective == "tcvae" or (self.tc_alpha == 1.0 and self.tc_gamma == 1.0),
              "--tc-alpha and --tc-gamma weigh the terms of --objective tcvae: add --objective tcvae or drop them")

    def resolve(self, data: Dataset | DataShape) -> VAEConfig:
        self.check_shape(data)
        lik = self.likelihood if self.likelihood != "auto" else ("bernoulli" if data.in_unit_interval else "gaussian")
        check(not (self.learn_scale and lik == "bernoulli"),
              "--learn-scale needs --likelihood gaussian or laplace: these images get a Bernoulli likelihood")
        n = self.tc_dataset_size
        if self.objective == "tcvae" and n == 0:  # the MWS estimator's N: the training split's size
            known = len(data.train) if isinstance(data, Dataset) else data.num_train
            check(known is not None, "--objective tcvae needs the training-set size N of its q(z) "
                                     "estimate: give --tc-dataset-size N to build it without data")
            n = int(cast(int, known))
        free_bits = self.free_bits
        if free_bits > 0 and self.objective != "elbo":  # e.g. the vae entry's default under --objective iwae
            log.info("--free-bits applies to --objective elbo: this --objective %s run trains without it "
                     "(config.json records free_bits 0)", self.objective)
            free_bits = 0.0
        return dataclasses.replace(self, input_shape=tuple(data.shape), likelihood=lik, tc_dataset_size=n,
                                   free_bits=free_bits)


class VAE(Autoencoder):
    generative = True
    posterior = True
    units = {"recon": "nats per sample (−log p(x|z), one posterior draw)", "kl": "nats per sample",
             "elbo": "nats per sample (−(recon + kl); the true ELBO, also with --free-bits)",
             "kl_free_bits": "nats per sample (the KL the --free-bits objective counts: at least λ per unit or "
                             "sample; loss = recon + β·kl_free_bits)",
             "iwae_bound": "nats per sample (the k-sample importance-weighted bound on log p(x); --objective iwae)",
             "mi": "nats per sample (index-code MI E[log q(z|x) − log q(z)], --tc-estimator; --objective tcvae)",
             "tc": "nats per sample (total correlation E[log q(z) − Σⱼ log q(zⱼ)], --tc-estimator; --objective tcvae)",
             "dim_kl": "nats per sample (dimension-wise KL E[Σⱼ log q(zⱼ) − log p(z)], --tc-estimator; --objective "
                       "tcvae)"}
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
        if c.scale_shape == "per-dim":  # one log σᵢ per input element, shaped like a sample (broadcasts in nll)
            self.log_scale = nn.Parameter(torch.full(tuple(c.input_shape), math.log(c.scale)), requires_grad=True)
        else:
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
        return L.likelihood_nll(self.likelihood, out, x, None if self.likelihood == "bernoulli" else self.log_scale)

    @torch.no_grad()
    def linear_gaussian(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The generative model of a linear Gaussian VAE (``--arch mlp --hidden '' --likelihood gaussian``),
        p(x|z) = N(Wz + b, diag σ²): (W (d, q), b (d,), σᵢ² (d,)), float64 on the CPU, σ clamped as in
        :meth:`nll`.  A one-line ``ConfigError`` for any other VAE."""
        c = self.config
        check(c.arch == "mlp" and c.hidden == () and self.likelihood == "gaussian",
              "linear_gaussian needs a linear Gaussian VAE (--arch mlp --hidden '' --likelihood gaussian), not "
              f"--arch {c.arch} --hidden {','.join(map(str, c.hidden)) or chr(39) * 2} --likelihood {self.likelihood}")
        (lin,) = [m for m in self.decoder.modules() if isinstance(m, nn.Linear)]
        w = lin.weight.detach().double().cpu()
        b = lin.bias.detach().double().cpu()
        var = torch.exp(2.0 * self.log_scale.detach().clamp(min=L.MIN_LOG_SCALE).double().cpu()).reshape(-1)
        return w, b, var.expand(w.shape[0]).clone()

    def loss(self, batch: Batch) -> Losses:
        """−ELBO with the KL weighted by β·anneal (one draw z ~ q(z|x) from the global generator), or with
        ``objective="iwae"`` the negative importance-weighted bound (``anneal`` does not apply to it)."""
        if self.config.objective == "iwae":
            return self._iwae_loss(batch)
        if self.config.objective == "tcvae":
            return self._tcvae_loss(batch)
        q = self.encode(batch.x)
        z = q.sample()
        recon = self.nll(self.decode_logits(z), batch.clean).mean()
        kl = q.kl().mean()
        if self.config.free_bits > 0:  # the objective's KL; the reported kl / elbo stay the true ones
            kl_fb = self.free_bits_kl(q)
            total = recon + (self.config.beta * batch.anneal) * kl_fb
            return Losses(total, {"recon": recon, "kl": kl, "elbo": -(recon + kl), "kl_free_bits": kl_fb})
        total = recon + (self.config.beta * batch.anneal) * kl
        return Losses(total, {"recon": recon, "kl": kl, "elbo": -(recon + kl)})

    def free_bits_kl(self, q: DiagonalGaussian) -> torch.Tensor:
        """The KL term of the free-bits objective (Kingma et al. 2016, appendix C.8), nats per sample.

        ``unit``: Σⱼ max(λ, E_batch KL(q(zⱼ|x) ‖ N(0, 1))), the paper's rule with one group per latent unit (as
        ``kl_min`` in its reference code); ``sample``: E_batch max(λ, KL(q(z|x) ‖ N(0, I))).  Below λ the
        gradient of a unit's (or sample's) KL is 0: the encoder may use those nats for free.
        """
        lam = self.config.free_bits
        if self.config.free_bits_mode == "sample":
            return q.kl().clamp(min=lam).mean()
        per_unit = 0.5 * (q.mean.pow(2) + q.logvar.exp() - 1.0 - q.logvar)  # (B, d), sums to q.kl()
        return per_unit.mean(0).clamp(min=lam).sum()

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
    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> torch.Tensor:
        """``n`` draws z = τ·ε, ε ~ N(0, I), decoded (τ = ``temperature``; no autograd: ``model.sample(2).numpy()``
        works)."""
        t = checked_temperature(temperature)
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device) * t
        return self.decode(z)

    def _tcvae_loss(self, batch: Batch) -> Losses:
        """β-TCVAE (Chen et al. 2018): recon + anneal·(α·MI + β·TC + γ·dimKL), nats per sample, one draw
        z ~ q(z|x) per sample; log q(z) and Σⱼ log q(zⱼ) by minibatch-weighted (or stratified) sampling over the
        batch with N = ``tc_dataset_size``.  MI + TC + dimKL is the one-draw estimate of KL(q(z|x) ‖ p(z)), so α = β = γ = 1 is
        the ELBO; ``kl`` and ``elbo`` are reported with the closed-form KL, as for ``objective="elbo"``.  The
        estimates depend on the batch (size M): evaluation's batches are larger than training's."""
        c = self.config
        check(c.tc_dataset_size >= 1, "--objective tcvae: tc_dataset_size is 0 (the config was never resolved "
                                      "against data): give --tc-dataset-size N")
        q = self.encode(batch.x)
        z = q.sample()
        recon = self.nll(self.decode_logits(z), batch.clean).mean()
        log_qz_x = q.log_prob(z)
        log_pz = -0.5 * (z.pow(2) + L.LOG_2PI).sum(-1)
        log_qz, log_prod = L.minibatch_log_q(z, q.mean, q.logvar, c.tc_dataset_size, c.tc_estimator == "mss")
        mi, tc, dim_kl = (log_qz_x - log_qz).mean(), (log_qz - log_prod).mean(), (log_prod - log_pz).mean()
        kl = q.kl().mean()
        total = recon + batch.anneal * (c.tc_alpha * mi + c.beta * tc + c.tc_gamma * dim_kl)
        return Losses(total, {"recon": recon, "kl": kl, "elbo": -(recon + kl), "mi": mi, "tc": tc, "dim_kl": dim_kl})
