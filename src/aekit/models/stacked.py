"""Stacked autoencoder: greedy layer-wise pretraining, then end-to-end fine-tuning of a tied MLP autoencoder.

The procedure of the notes (and of Bengio et al. 2007, with autoencoders where Hinton & Salakhutdinov 2006 use
RBMs): train AE₁ — one hidden layer — on x; drop its decoder and encode the training data; train AE₂ on those
codes; and so on for every layer of ``--hidden`` and the ``--latent-dim`` code.  Then stack the encoders,
mirror them with tied weights (the decoder of layer k is W_kᵀ, the same parameter) and fine-tune end to end.

Each greedy stage AE_k is built from the final model's own parameters: its encoder is layer k (W_k, b_k and
the layer's activation; the code activation for the last layer), its decoder is W_kᵀ plus the bias the final
decoder uses at the mirrored position.  Training a stage therefore trains the final model in place — every
stage's encoder (and its decoder bias) is carried into the stacked model, and the pretrained-only model
(``--finetune-epochs 0``) already reconstructs.  Stage losses: the model's reconstruction loss on x for stage
1; for deeper stages cross-entropy on the (0, 1) codes of a sigmoid layer (the RBM / Bengio choice), squared
error on the activated output otherwise.

The model declares ``staged``: :meth:`StackedAE.stages` yields the greedy stages, and the train layer
(:func:`aekit.train.stages.run_stages`) trains each before the main fit (the ``finetune`` stage); each stage
writes its rows, tagged ``pretrain-1``, ``pretrain-2``, …, into ``metrics.csv``, and the pretrained weights are
kept as ``pretrained.safetensors`` so a resumed run never repeats a finished pretraining.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import losses as L
from ..config import check, opt
from ..data import Batch, Dataset, DataShape, Split, to_float
from ..data.corrupt import corruption_transform, parse_corruption
from .ae import AE, AEConfig
from .base import Autoencoder, Losses, ModelConfig, Stage
from .blocks import Activation, TiedDecoder, activation

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StackedAEConfig(ModelConfig):
    hidden: tuple[int, ...] = opt((512, 256), "encoder widths; the decoder mirrors them with tied weights")
    latent_dim: int = opt(16, "size of the code z (the last greedy layer)")
    activation: Activation = opt("sigmoid", "activation of the hidden layers, in every greedy stage and in the "
                                            "stacked model")
    code_activation: Literal["linear", "sigmoid", "relu"] = opt("linear", "activation of the code")
    recon_loss: Literal["auto", "bce", "mse"] = opt(
        "auto", "reconstruction loss: bce (nats) or mse (sum of squared errors); auto: bce for images in [0, 1]")
    corruption: str = opt("none", "stacked *denoising* AE: corrupt each stage's input (and the fine-tuning "
                                  "input): mask:P, gaussian:SIGMA or salt-pepper:P")
    pretrain_epochs: int = opt(10, "epochs of each greedy stage (0: no pretraining, the from-scratch baseline)")
    finetune_epochs: int | None = opt(None, "end-to-end fine-tuning epochs; sets --epochs (default: --epochs)")

    def __post_init__(self) -> None:
        check(self.latent_dim >= 1, "--latent-dim must be at least 1")
        check(all(h >= 1 for h in self.hidden), "--hidden widths must be positive, e.g. --hidden 1000,500,250")
        check(self.pretrain_epochs >= 0, "--pretrain-epochs must be ≥ 0 (0 = train from scratch)")
        check(self.finetune_epochs is None or self.finetune_epochs >= 0,
              "--finetune-epochs must be ≥ 0 (0 = keep the pretrained model as it is)")
        parse_corruption(self.corruption)

    def resolve(self, data: Dataset | DataShape) -> StackedAEConfig:
        self.check_shape(data)
        loss = self.recon_loss if self.recon_loss != "auto" else ("bce" if data.in_unit_interval else "mse")
        return dataclasses.replace(self, input_shape=tuple(data.shape), recon_loss=loss)

    def train_overrides(self) -> tuple[StackedAEConfig, dict[str, Any]]:
        """``finetune_epochs`` is the trainer's ``epochs`` (the fine-tuning is the main fit)."""
        if self.finetune_epochs is None:
            return self, {}
        return dataclasses.replace(self, finetune_epochs=None), {"epochs": self.finetune_epochs}

    def ae_config(self) -> AEConfig:
        """The tied MLP autoencoder this model is: plain linear + activation layers, no normalisation."""
        return AEConfig(input_shape=self.input_shape, arch="mlp", hidden=self.hidden, latent_dim=self.latent_dim,
                        activation=self.activation, norm="none", code_activation=self.code_activation, tied=True,
                        recon_loss=self.recon_loss, corruption=self.corruption)


class GreedyStage(Autoencoder):
    """AE_k of the greedy procedure: one hidden layer whose parameters *are* the stacked model's.

    Encoder: ``enc_act(W x + b)`` with the stacked encoder's layer k; decoder: ``Wᵀ h + c`` with the bias of the
    stacked decoder at the mirrored position.  ``output`` is how the decoder output is scored: ``bce``
    (logits, targets in [0, 1]), ``linear`` (squared error) or an activation name (squared error after it).
    """

    def __init__(self, layer: nn.Linear, bias: nn.Parameter, enc_act: nn.Module, output: str, name: str):
        super().__init__(None)
        self.layer = layer  # shared module: training this stage trains the stacked model
        self.bias = bias
        self.enc_act = enc_act
        self.output = output
        self.out_act = None if output in ("bce", "linear") else activation(output)
        self.name = name

    @property
    def input_dim(self) -> int:
        return self.layer.in_features

    @property
    def latent_dim(self) -> int:
        return self.layer.out_features

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc_act(self.layer(x.flatten(1)))

    def decode_logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.layer.weight.t(), self.bias)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        out = self.decode_logits(h)
        if self.output == "bce":
            return torch.sigmoid(out)
        return out if self.out_act is None else self.out_act(out)

    units = {"recon": "nats per sample (bce) or sum of squared errors per sample"}

    def loss(self, batch: Batch) -> Losses:
        target = batch.clean.flatten(1)
        out = self.decode_logits(self.encode(batch.x))
        if self.output == "bce":
            recon = L.bernoulli_nll(out, target)
        else:
            recon = L.sse(out if self.out_act is None else self.out_act(out), target)
        return Losses(recon.mean(), {"recon": recon.mean()})


class StackedAE(AE):
    """A tied MLP autoencoder (see :class:`~aekit.models.ae.AE`) with greedy layer-wise pretraining."""

    staged = True

    def __init__(self, config: StackedAEConfig):
        super().__init__(config.ae_config())
        self.config = config  # the model's own config; ``ae_config`` is the network it builds

    def greedy_stages(self) -> list[GreedyStage]:
        """AE_1 … AE_L, sharing this model's encoder layers and the mirrored decoder biases."""
        layers = [m for m in self.encoder if isinstance(m, nn.Linear)]
        decoder = self.decoder
        assert isinstance(decoder, TiedDecoder)  # ae_config() builds a tied network
        last = len(layers) - 1
        stages = []
        for k, layer in enumerate(layers):
            enc_act = self.code_act if k == last else activation(self.config.activation)
            if k == 0:
                output = "bce" if self.recon_loss == "bce" else "linear"
            else:  # the stacked decoder applies the hidden activation after this layer
                output = "bce" if self.config.activation == "sigmoid" else self.config.activation
            stages.append(GreedyStage(layer, decoder.biases[last - k], enc_act, output, f"pretrain-{k + 1}"))
        return stages

    def stages(self, data: Dataset) -> Iterator[Stage]:
        """Greedy stage k trains AE_k on the codes of layer k − 1 (stage 1: on the data), ``pretrain_epochs``
        each; the codes of the next stage's data are computed after this stage has been trained."""
        n_epochs = self.config.pretrain_epochs
        if n_epochs == 0:
            return
        stages = self.greedy_stages()
        current = data
        for k, stage in enumerate(stages):
            log.info("greedy stage %d/%d: %d -> %d units, %d epochs", k + 1, len(stages), stage.input_dim,
                     stage.latent_dim, n_epochs)
            t = corruption_transform(self.config.corruption, current)
            transforms = () if t is None else (t,)
            yield Stage(stage.name, stage, current, n_epochs, transforms)
            if k < len(stages) - 1:  # encode the data once: the next stage's training set
                train, val = (Split(_codes(stage, s.x), None) for s in (current.train, current.val))
                empty = Split(torch.zeros(0, stage.latent_dim), None)
                current = Dataset(f"{data.name} (codes of layer {k + 1})", "table", train, val, empty)


@torch.no_grad()
def _codes(stage: GreedyStage, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """The stage's hidden code of every row of ``x`` (uint8 images or float codes), float32 on the CPU."""
    stage.eval()
    device = stage.device
    out = [stage.encode(to_float(x[i:i + batch_size]).to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, stage.latent_dim)
