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

``run.py`` calls :meth:`StackedAE.pretrain` before the trainer's normal fit (the ``finetune`` stage); each
stage writes its rows, tagged ``pretrain-1``, ``pretrain-2``, …, into ``metrics.csv``, and the pretrained
weights are kept as ``pretrained.safetensors`` so a resumed run never repeats a finished pretraining.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import losses as L
from ..config import check
from ..data import Dataset, Split, to_float
from ..data.corrupt import make_corrupter, parse_corruption
from .ae import AE, AEConfig
from .base import Autoencoder, Losses
from .blocks import Activation, activation

if TYPE_CHECKING:
    from ..train.trainer import TrainConfig

log = logging.getLogger(__name__)

_AE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AEConfig)}


@dataclasses.dataclass(frozen=True)
class StackedAEConfig:
    input_shape: tuple[int, ...] = ()
    hidden: tuple[int, ...] = (512, 256)  # encoder widths; the decoder mirrors them with tied weights
    latent_dim: int = 16
    activation: Activation = "sigmoid"  # of the hidden layers, in every greedy stage and in the stacked model
    code_activation: Literal["linear", "sigmoid", "relu"] = "linear"
    recon_loss: Literal["auto", "bce", "mse"] = "auto"  # auto: bce for [0, 1] images, mse otherwise
    corruption: str = "none"  # stacked *denoising* AE: corrupt each stage's input (and the fine-tuning input)
    pretrain_epochs: int = 10  # epochs of each greedy stage (0: no pretraining — the from-scratch baseline)
    finetune_epochs: int | None = None  # end-to-end epochs; sets --epochs (None: --epochs as given)

    # what AE's forward pass and loss read besides the fields above (not options): tied weights, and AEConfig's
    # defaults for everything else (an MLP, no sparsity penalty, no normalisation, ...)
    tied = property(lambda self: True)
    norm = property(lambda self: "none")  # the greedy stages are plain linear+activation layers

    def __getattr__(self, name: str) -> Any:
        default = _AE_DEFAULTS.get(name, dataclasses.MISSING)
        if default is dataclasses.MISSING:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return default

    def __post_init__(self) -> None:
        check(self.latent_dim >= 1, "--latent-dim must be at least 1")
        check(all(h >= 1 for h in self.hidden), "--hidden widths must be positive, e.g. --hidden 1000,500,250")
        check(self.pretrain_epochs >= 0, "--pretrain-epochs must be ≥ 0 (0 = train from scratch)")
        check(self.finetune_epochs is None or self.finetune_epochs >= 0,
              "--finetune-epochs must be ≥ 0 (0 = keep the pretrained model as it is)")
        parse_corruption(self.corruption)

    @property
    def code_act_name(self) -> str:
        return self.code_activation

    def resolve(self, input_shape: tuple[int, ...], unit_interval: bool) -> StackedAEConfig:
        loss = self.recon_loss if self.recon_loss != "auto" else ("bce" if unit_interval else "mse")
        return dataclasses.replace(self, input_shape=tuple(input_shape), recon_loss=loss)


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

    def loss(self, x: torch.Tensor, anneal: float = 1.0, target: torch.Tensor | None = None) -> Losses:
        target = (x if target is None else target).flatten(1)
        out = self.decode_logits(self.encode(x))
        if self.output == "bce":
            recon = L.bernoulli_nll(out, target)
        else:
            recon = L.sse(out if self.out_act is None else self.out_act(out), target)
        return Losses(recon.mean(), {"recon": recon.mean()})


class StackedAE(AE):
    """A tied MLP autoencoder (see :class:`~aekit.models.ae.AE`) with greedy layer-wise pretraining."""

    def __init__(self, config: StackedAEConfig):
        super().__init__(config)

    def greedy_stages(self) -> list[GreedyStage]:
        """AE_1 … AE_L, sharing this model's encoder layers and the mirrored decoder biases."""
        layers = [m for m in self.encoder if isinstance(m, nn.Linear)]
        last = len(layers) - 1
        stages = []
        for k, layer in enumerate(layers):
            enc_act = self.code_act if k == last else activation(self.config.activation)
            if k == 0:
                output = "bce" if self.recon_loss == "bce" else "linear"
            else:  # the stacked decoder applies the hidden activation after this layer
                output = "bce" if self.config.activation == "sigmoid" else self.config.activation
            stages.append(GreedyStage(layer, self.decoder.biases[last - k], enc_act, output, f"pretrain-{k + 1}"))
        return stages

    def pretrain(self, data: Dataset, cfg: TrainConfig, run_dir: Path | None = None, *,
                 resume: bool = False) -> list[dict[str, Any]]:
        """Greedy layer-wise pretraining (``pretrain_epochs`` per stage); returns the stage rows.

        With ``run_dir``, rows go into ``metrics.csv`` (column ``stage``) and the result into
        ``pretrained.safetensors``.  ``resume``: a run whose fine-tuning has a checkpoint, or whose pretraining
        finished, is not pretrained again (an unfinished pretraining restarts; it is deterministic).
        The global RNG is left as it was, so fine-tuning starts from the same state either way.
        """
        from ..train.checkpoint import atomic_save_tensors, load_state, read_tensors
        from ..train.trainer import CHECKPOINT, METRICS, PRETRAINED, append_metrics, fit, resolve_device

        n_epochs = self.config.pretrain_epochs
        if n_epochs == 0:
            return []
        if run_dir is not None and resume:
            if (Path(run_dir) / CHECKPOINT).exists():
                return []  # fine-tuning has started: its checkpoint holds the weights
            if (Path(run_dir) / PRETRAINED).exists():
                load_state(self, read_tensors(Path(run_dir) / PRETRAINED)[0], str(Path(run_dir) / PRETRAINED))
                log.info("pretraining already finished: loaded %s", Path(run_dir) / PRETRAINED)
                return []
        if run_dir is not None:
            (Path(run_dir) / METRICS).unlink(missing_ok=True)  # an unfinished pretraining starts over
        stage_cfg = dataclasses.replace(cfg, epochs=n_epochs, early_stopping=0)
        device = resolve_device(cfg.device)
        rows: list[dict[str, Any]] = []
        stages = self.greedy_stages()
        current = data
        with torch.random.fork_rng(devices=[]):
            for k, stage in enumerate(stages):
                log.info("greedy stage %d/%d: %d -> %d units, %d epochs", k + 1, len(stages), stage.input_dim,
                         stage.latent_dim, n_epochs)
                corrupt = make_corrupter(self.config.corruption, current)
                stage_rows = fit(stage, current, stage_cfg, None, corrupt=corrupt)
                stage_rows = [{"stage": stage.name, **r} for r in stage_rows]
                rows += stage_rows
                if run_dir is not None:
                    append_metrics(Path(run_dir), stage_rows)
                if k < len(stages) - 1:  # encode the data once: the next stage's training set
                    train, val = (Split(_codes(stage, s.x, device), None) for s in (current.train, current.val))
                    empty = Split(torch.zeros(0, stage.latent_dim), None)
                    current = Dataset(f"{data.name} (codes of layer {k + 1})", "table", train, val, empty)
        if run_dir is not None:
            atomic_save_tensors(self.state_dict(), Path(run_dir) / PRETRAINED, {"aekit_stage": "pretrained"})
        return rows


@torch.no_grad()
def _codes(stage: GreedyStage, x: torch.Tensor, device: torch.device, batch_size: int = 2048) -> torch.Tensor:
    """The stage's hidden code of every row of ``x`` (uint8 images or float codes), float32 on the CPU."""
    stage.eval()
    out = [stage.encode(to_float(x[i:i + batch_size]).to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, stage.latent_dim)
