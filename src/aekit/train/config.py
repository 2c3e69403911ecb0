"""The trainer's configuration: one frozen dataclass, every field documented for the CLI.

This module imports no torch, so the options of ``aekit train`` can be listed cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from ..config import check, opt

# boolean aliases of two settings: alias -> (setting, its value when the alias is on, when it is off).  TrainConfig
# normalises an alias that is on into its setting; the CLI maps --no-ALIAS to the off value; a saved run written
# before the setting existed ran with the value its alias gives (see :func:`settings_of_a_saved_run`).
ALIASES: dict[str, tuple[str, str, str]] = {"bf16": ("precision", "bf16", "fp32"),
                                            "channels_last": ("memory_format", "channels_last", "nchw")}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def settings_of_a_saved_run(train: dict[str, Any]) -> dict[str, Any]:
    """A saved run's ``train`` options with each aliased setting it lacks (written before ``--precision`` /
    ``--memory-format`` existed) set to what the run trained with: its alias's value, never ``auto``."""
    missing = {setting: on if train.get(alias) is True else off
               for alias, (setting, on, off) in ALIASES.items() if setting not in train}
    return {**train, **missing}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = opt(20, "passes over the training split")
    batch_size: int = opt(128, "samples per optimiser step")
    lr: float = opt(1e-3, "peak learning rate")
    optimizer: Literal["adam", "adamw"] = opt("adam", "adam, or adamw (decoupled weight decay)")
    weight_decay: float = opt(0.0, "L2 penalty (adam) or decoupled weight decay (adamw)")
    schedule: Literal["constant", "cosine"] = opt("constant", "learning rate after the warm-up: constant, or a "
                                                              "cosine decay to 0 at the last step")
    lr_warmup_epochs: float = opt(0.0, "linear learning-rate warm-up from 0 over these epochs (fractions allowed)")
    beta_warmup_epochs: float = opt(0.0, "KL annealing: the regulariser weight ramps 0 → 1 over these epochs")
    grad_clip: float = opt(0.0, "clip the gradient norm to this value; 0 = off")
    early_stopping: int = opt(0, "stop after this many epochs without a better validation loss and restore the "
                                 "best epoch; 0 = off")
    seed: int = opt(0, "seed of the initial weights, the batch order and the model's noise")
    device: Literal["auto", "cpu", "cuda", "mps"] = opt("auto", "where to train; auto: cuda, then mps, then cpu")
    precision: Literal["auto", "fp32", "bf16"] = opt(
        "auto", "arithmetic of the forward pass: bf16 autocast, fp32, or auto: bf16 where the device runs it "
                "natively (CUDA with bf16, CPUs with AMX or AVX-512 BF16) and the model's bf16 parity was measured "
                "(vae, ae, unet), for vae and ae only on inputs of ≤ 784 elements and conv stacks of ≤ 2 levels (vae: "
                "Bernoulli), else fp32; "
                "config.json records the choice")
    bf16: bool = opt(False, "alias: --bf16 is --precision bf16, --no-bf16 is --precision fp32")
    compile: bool = opt(False, "torch.compile the model's loss (forward + loss terms); off by default: on 2 CPU "
                               "cores its compilation paid back after 36 to 154 epochs, or never (the conv VAE), "
                               "see BENCHMARKS.md")
    memory_format: Literal["auto", "nchw", "channels_last"] = opt(
        "auto", "layout of the weights and image batches: channels_last (NHWC), nchw, or auto: channels_last for a "
                "model with 2-D convolutions in fp32 on an x86-64 CPU (the conv VAE 25 % faster there, BENCHMARKS.md), "
                "nchw elsewhere (MLPs: nothing to gain; bf16: mixed results; GPUs, ARM: not measured); config.json "
                "records the choice", scope="conv models")
    channels_last: bool = opt(False, "alias: --channels-last is --memory-format channels_last, --no-channels-last is "
                                     "--memory-format nchw (not given: --memory-format decides)", scope="conv models")
    checkpoint_every_s: float = opt(
        60.0, "write the resumable checkpoint at the end of an epoch when this many seconds passed since the last one "
              "(and always after the last epoch); a killed run resumes exactly from it, replaying the epochs after it; "
              "0 = after every epoch")
    log_every: int = opt(25, "steps between progress updates and finiteness checks (each costs a device sync)")
    progress: bool = opt(True, "progress bars (-q turns them off)")
    tensorboard: bool = opt(False, "log loss terms and reconstructions per epoch to RUN/tensorboard (needs "
                                   "tensorboard)")

    def __post_init__(self) -> None:
        check(self.epochs >= 0, "--epochs must be ≥ 0")
        check(self.batch_size >= 1, "--batch-size must be ≥ 1")
        check(math.isfinite(self.lr) and self.lr > 0, "--lr must be a finite number > 0, e.g. --lr 1e-3")
        check(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
              "--weight-decay must be a finite number ≥ 0, e.g. --weight-decay 1e-4 (0 = off)")
        check(math.isfinite(self.grad_clip) and self.grad_clip >= 0,
              "--grad-clip must be a finite number ≥ 0, e.g. --grad-clip 1.0 (0 = off)")
        check(math.isfinite(self.lr_warmup_epochs) and self.lr_warmup_epochs >= 0,
              "--lr-warmup-epochs must be a finite number ≥ 0, e.g. --lr-warmup-epochs 1 (0 = off)")
        check(math.isfinite(self.beta_warmup_epochs) and self.beta_warmup_epochs >= 0,
              "--beta-warmup-epochs must be a finite number ≥ 0, e.g. --beta-warmup-epochs 5 (0 = off)")
        check(0 <= self.seed < 2**63, "--seed must be an integer in [0, 2**63), e.g. --seed 0")
        check(self.log_every >= 1, "--log-every must be ≥ 1")
        check(self.early_stopping >= 0, "--early-stopping must be ≥ 0 (0 = off)")
        check(math.isfinite(self.checkpoint_every_s) and self.checkpoint_every_s >= 0,
              "--checkpoint-every-s must be a finite number ≥ 0, e.g. --checkpoint-every-s 60 (0 = every epoch)")
        for alias, (setting, on, off) in ALIASES.items():  # normalised, so config.json and replace() see one setting
            if getattr(self, alias):
                check(getattr(self, setting) != off,
                      f"{flag(alias)} and {flag(setting)} {off} contradict each other: give one of them")
                object.__setattr__(self, setting, on)
                object.__setattr__(self, alias, False)
