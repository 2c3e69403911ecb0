"""Deterministic autoencoder: MLP or convolutional, optional tied weights, sparsity and denoising.

``linear-ae`` (for the PCA comparison) and ``sparse-ae`` are registry entries that set defaults on this one
model; there are no subclasses.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn as nn

from .. import losses as L
from ..config import check
from ..data.corrupt import parse_corruption
from .base import Autoencoder, Losses
from .blocks import Activation, ConvDecoder, ConvEncoder, Norm, TiedDecoder, activation, mlp

INACTIVE = 0.01  # a code unit with |activation| below this counts as inactive (fraction_inactive, dead_units)


@dataclasses.dataclass(frozen=True)
class AEConfig:
    input_shape: tuple[int, ...] = ()  # filled in from the data at train time
    arch: Literal["mlp", "conv"] = "mlp"
    hidden: tuple[int, ...] = (512, 256)  # MLP widths, encoder side (the decoder mirrors them)
    channels: tuple[int, ...] = (32, 64)  # conv channels, encoder side
    conv_hidden: tuple[int, ...] = ()  # arch conv: fully connected widths between conv features and code
    latent_dim: int = 16
    activation: Activation = "relu"
    norm: Norm = "batch"  # after each hidden linear layer of an MLP: BatchNorm trains deep AEs much faster (README)
    code_activation: Literal["auto", "linear", "sigmoid", "relu"] = "linear"  # auto: by --sparsity (see below)
    tied: bool = False  # decoder weights = encoder weights transposed (MLP only)
    recon_loss: Literal["auto", "bce", "mse"] = "auto"  # auto: bce for [0, 1] images, mse otherwise
    sparsity: Literal["none", "l1", "kl"] = "none"
    sparsity_weight: float = 1e-3  # λ for l1, β for kl
    rho: float = 0.05  # target mean activation for kl sparsity
    corruption: str = "none"  # denoising: mask:P | gaussian:SIGMA | salt-pepper:P, on training inputs only

    def __post_init__(self) -> None:
        check(self.latent_dim >= 1, "--latent-dim must be at least 1")
        check(all(h >= 1 for h in self.hidden), "--hidden widths must be positive, e.g. --hidden 512,256")
        check(all(h >= 1 for h in self.conv_hidden), "--conv-hidden widths must be positive, e.g. --conv-hidden 256")
        check(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "--channels must be positive, e.g. 32,64")
        check(not (self.tied and self.arch == "conv"), "--tied works with --arch mlp only: drop --tied or use mlp")
        check(self.sparsity_weight >= 0, "--sparsity-weight must be ≥ 0")
        check(0 < self.rho < 1, "--rho must be in (0, 1), e.g. 0.05")
        check(
            not (self.sparsity == "kl" and self.code_activation not in ("sigmoid", "auto")),
            "--sparsity kl needs activations in (0, 1): add --code-activation sigmoid",
        )
        parse_corruption(self.corruption)  # one-line ConfigError naming the accepted forms

    @property
    def code_act_name(self) -> str:
        """``auto``: sigmoid for KL sparsity (ρ̂ must be a mean activation in (0, 1)), relu for L1, else linear."""
        if self.code_activation != "auto":
            return self.code_activation
        return {"kl": "sigmoid", "l1": "relu"}.get(self.sparsity, "linear")

    def resolve(self, input_shape: tuple[int, ...], unit_interval: bool) -> AEConfig:
        """A copy with the data-dependent fields filled in (the config itself is never mutated)."""
        loss = self.recon_loss if self.recon_loss != "auto" else ("bce" if unit_interval else "mse")
        return dataclasses.replace(self, input_shape=tuple(input_shape), recon_loss=loss,
                                   code_activation=self.code_act_name)


class AE(Autoencoder):
    def __init__(self, config: AEConfig):
        super().__init__(config)
        c = config
        check(len(c.input_shape) >= 1, "AEConfig.input_shape is empty: it is set from the data at train time")
        if c.arch == "conv":
            check(len(c.input_shape) == 3, "--arch conv needs image data (C, H, W): use --arch mlp for tables")
            self.encoder = nn.Sequential(ConvEncoder(c.input_shape, c.channels, c.latent_dim, c.activation, c.conv_hidden))
            self.decoder = ConvDecoder(c.input_shape, c.channels, c.latent_dim, c.activation, c.conv_hidden)
        else:
            sizes = [self.input_dim, *c.hidden, c.latent_dim]
            self.encoder = mlp(sizes, c.activation, norm=c.norm)
            self.decoder = (TiedDecoder(self.encoder, c.activation) if c.tied
                            else mlp(sizes[::-1], c.activation, norm=c.norm))
        self.code_act = activation(getattr(c, "code_act_name", c.code_activation))

    @property
    def recon_loss(self) -> str:
        return "mse" if self.config.recon_loss == "auto" else self.config.recon_loss

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.config.arch == "conv" else x.flatten(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.code_act(self.encoder(self._in(x)))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.input_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decode_logits(z)
        return torch.sigmoid(out) if self.recon_loss == "bce" else out

    def loss(self, x: torch.Tensor, anneal: float = 1.0, target: torch.Tensor | None = None) -> Losses:
        """Reconstruction (+ sparsity) loss.  ``target`` defaults to ``x`` (denoising passes the clean input)."""
        target = x if target is None else target
        z = self.encode(x)
        out = self.decode_logits(z)
        recon = L.bernoulli_nll(out, target) if self.recon_loss == "bce" else L.sse(out, target)
        terms = {"recon": recon.mean()}
        total = terms["recon"]
        c = self.config
        if c.sparsity == "l1":
            terms["sparsity"] = c.sparsity_weight * L.l1_activation(z).mean()
            total = total + terms["sparsity"]
        elif c.sparsity == "kl":
            terms["sparsity"] = c.sparsity_weight * L.kl_sparsity(z, c.rho)
            total = total + terms["sparsity"]
        if c.sparsity != "none":  # diagnostics (not optimised): mean |a| and the share of |a| < 0.01
            a = z.detach().abs()
            terms["mean_abs_activation"] = a.mean()
            terms["fraction_inactive"] = (a < INACTIVE).float().mean()
        return Losses(total, terms)
