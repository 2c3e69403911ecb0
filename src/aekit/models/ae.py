"""Deterministic autoencoder: MLP or convolutional, optional tied weights, sparsity, denoising and the
contractive penalty.

``linear-ae`` (for the PCA comparison), ``sparse-ae`` and ``contractive-ae`` are registry entries that set
defaults on this one model; there are no subclasses.

Contractive (Rifai et al. 2011): ``contractive`` = λ adds λ·‖J_f(x)‖²_F, the squared Frobenius norm of the
encoder's Jacobian at each (possibly corrupted) input, per sample.  For a one-layer MLP encoder it is exact and
needs no autograd (closed form Σⱼ σ'(aⱼ)² Σᵢ Wⱼᵢ²); for any other encoder it is Hutchinson's unbiased estimate
E‖Jᵀu‖² over Rademacher u (``contractive_probes`` vector-Jacobian products per step, differentiated by double
backward).  The estimate turns autograd on locally, so it also works under ``torch.no_grad()`` (validation and
evaluation); its gradient flows whenever the caller has autograd on.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, cast

import torch
import torch.nn as nn

from .. import losses as L
from ..config import check, opt
from ..data import Batch, Dataset, DataShape
from ..data.batch import BatchTransform
from ..data.corrupt import corruption_transform, parse_corruption
from .base import Autoencoder, Losses, NetConfig
from .blocks import Activation, ConvDecoder, ConvEncoder, Norm, TiedDecoder, activation, mlp

INACTIVE = 0.01  # a code unit with |activation| below this counts as inactive (fraction_inactive, dead_units)


@dataclasses.dataclass(frozen=True)
class AEConfig(NetConfig):
    arch: Literal["mlp", "conv"] = opt("mlp", "network: mlp (any data) or conv (images: stride-2 convolutions)")
    activation: Activation = opt("relu", "activation of the hidden layers")
    norm: Norm = opt("batch", "normalisation after each hidden linear layer: BatchNorm trains deep AEs much faster",
                     scope="--arch mlp")
    code_activation: Literal["auto", "linear", "sigmoid", "relu"] = opt(
        "linear", "activation of the code; auto: sigmoid for --sparsity kl, relu for l1, else linear")
    tied: bool = opt(False, "decoder weights = encoder weights transposed (one shared parameter per layer)",
                     scope="--arch mlp")
    recon_loss: Literal["auto", "bce", "mse"] = opt(
        "auto", "reconstruction loss: bce (Bernoulli NLL, nats) or mse (sum of squared errors); auto: bce for "
                "images in [0, 1], mse otherwise")
    sparsity: Literal["none", "l1", "kl"] = opt("none", "sparsity penalty on the code: l1 (λ·Σ|a|) or kl "
                                                        "(β·Σ KL(ρ‖ρ̂))")
    sparsity_weight: float = opt(1e-3, "λ of the l1 penalty, β of the kl penalty", scope="--sparsity l1|kl")
    rho: float = opt(0.05, "target mean activation ρ of the kl penalty", scope="--sparsity kl")
    corruption: str = opt("none", "denoising: corrupt training inputs with mask:P, gaussian:SIGMA or "
                                  "salt-pepper:P and reconstruct the clean ones")
    contractive: float = opt(0.0, "λ of the contractive penalty λ·‖J_f(x)‖²_F on the encoder's Jacobian "
                                  "(Rifai et al. 2011); 0: none")
    contractive_estimator: Literal["auto", "exact", "stochastic"] = opt(
        "auto", "how ‖J‖²_F is computed: exact (closed form, one-layer MLP encoders only) or stochastic "
                "(Hutchinson's unbiased estimate, any encoder); auto: exact where it applies",
        scope="--contractive > 0")
    contractive_probes: int = opt(1, "random probe vectors of the stochastic estimate per step (variance ∝ 1/probes)",
                                  scope="--contractive-estimator stochastic")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not (self.tied and self.arch == "conv"), "--tied works with --arch mlp only: drop --tied or use mlp")
        check(self.sparsity_weight >= 0, "--sparsity-weight must be ≥ 0")
        check(0 < self.rho < 1, "--rho must be in (0, 1), e.g. 0.05")
        check(
            not (self.sparsity == "kl" and self.code_activation not in ("sigmoid", "auto")),
            "--sparsity kl needs activations in (0, 1): add --code-activation sigmoid",
        )
        parse_corruption(self.corruption)  # one-line ConfigError naming the accepted forms
        check(self.contractive >= 0, f"--contractive {self.contractive:g}: the penalty weight λ must be ≥ 0, "
                                     "e.g. --contractive 0.1")
        check(self.contractive_probes >= 1, f"--contractive-probes {self.contractive_probes}: the stochastic "
                                            "estimate needs at least 1 probe vector")
        check(self.contractive_estimator != "exact" or self.one_layer,
              "--contractive-estimator exact needs a one-layer encoder (--arch mlp with no --hidden layers, as "
              "--model contractive-ae): use --contractive-estimator stochastic for deeper ones")

    @property
    def one_layer(self) -> bool:
        """The encoder is one linear layer followed by the code activation (the exact Jacobian applies)."""
        return self.arch == "mlp" and not self.hidden

    @property
    def contractive_exact(self) -> bool:
        """Whether the contractive penalty uses the closed form (``auto``: wherever it applies)."""
        return self.contractive_estimator == "exact" or (self.contractive_estimator == "auto" and self.one_layer)

    @property
    def code_act_name(self) -> Literal["linear", "sigmoid", "relu"]:
        """``auto``: sigmoid for KL sparsity (ρ̂ must be a mean activation in (0, 1)), relu for L1, else linear."""
        if self.code_activation != "auto":
            return self.code_activation
        auto: dict[str, Literal["linear", "sigmoid", "relu"]] = {"kl": "sigmoid", "l1": "relu"}
        return auto.get(self.sparsity, "linear")

    def resolve(self, data: Dataset | DataShape) -> AEConfig:
        """A copy with the data-dependent fields filled in (the config itself is never mutated)."""
        self.check_shape(data)
        loss = self.recon_loss if self.recon_loss != "auto" else ("bce" if data.in_unit_interval else "mse")
        return dataclasses.replace(self, input_shape=tuple(data.shape), recon_loss=loss,
                                   code_activation=self.code_act_name)


class AE(Autoencoder):
    units = {"recon": "nats per sample (bce) or sum of squared errors per sample (mse)",
             "sparsity": "λ·Σ|a| or β·Σ KL(ρ‖ρ̂) per sample", "mean_abs_activation": "mean |a| (diagnostic)",
             "fraction_inactive": "share of |a| < 0.01 (diagnostic)",
             "contractive": "λ·‖J_f(x)‖²_F per sample (exact, or Hutchinson's unbiased estimate for deep encoders)",
             "jacobian_sq_frobenius": "‖J_f(x)‖²_F per sample, code units² per input unit² (diagnostic)"}
    encoder: nn.Sequential
    decoder: nn.Module  # ConvDecoder, TiedDecoder or an MLP

    def __init__(self, config: AEConfig):
        super().__init__(config)
        self.ae_config = config  # the network's config (a stacked AE keeps its own as ``config``)
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
        self.code_act = activation(c.code_act_name)

    @property
    def recon_loss(self) -> str:
        return "mse" if self.ae_config.recon_loss == "auto" else self.ae_config.recon_loss

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.ae_config.arch == "conv" else x.flatten(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.code_act(self.encoder(self._in(x)))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.input_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decode_logits(z)
        return torch.sigmoid(out) if self.recon_loss == "bce" else out

    def loss(self, batch: Batch) -> Losses:
        """Reconstruction (+ sparsity, + contractive) loss of ``batch.x`` against ``batch.clean`` (denoising: the
        clean input)."""
        c = self.ae_config
        if c.contractive > 0:
            z, jac = self._code_and_jacobian(batch.x)
        else:
            z, jac = self.encode(batch.x), None
        out = self.decode_logits(z)
        recon = L.reconstruction(out, batch.clean, self.recon_loss)
        terms = {"recon": recon.mean()}
        total = terms["recon"]
        if jac is not None:
            terms["jacobian_sq_frobenius"] = jac.detach().mean()
            terms["contractive"] = c.contractive * jac.mean()
            total = total + terms["contractive"]
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

    def _code_and_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The code of ``x`` and ‖∂code/∂x‖²_F per sample (B,): in closed form for a one-layer encoder, else
        Hutchinson's estimate with autograd turned on here (so it works under ``no_grad`` too; it is
        differentiable exactly when the caller has autograd on)."""
        c = self.ae_config
        if c.contractive_exact:
            pre = self.encoder(self._in(x))
            z = self.code_act(pre)
            dact = {"sigmoid": lambda: z * (1 - z), "relu": lambda: (pre > 0).to(pre.dtype),
                    "linear": lambda: torch.ones_like(pre)}[c.code_act_name]()
            weight = cast(torch.Tensor, self.encoder[0].weight)  # the one Linear of the encoder
            return z, L.jacobian_sq_frobenius_one_layer(dact, weight)
        differentiable = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            z = self.encode(xg)
            return z, L.jacobian_sq_frobenius_hutchinson(z, xg, c.contractive_probes, create_graph=differentiable)

    def train_corruption(self) -> str | None:
        return None if parse_corruption(self.ae_config.corruption) is None else self.ae_config.corruption

    def batch_transforms(self, data: Dataset) -> list[BatchTransform]:
        t = corruption_transform(self.ae_config.corruption, data)
        # Corrupt's read-only ``name`` property satisfies BatchTransform at run time; mypy wants a settable one
        return [] if t is None else [t]
