"""``--memory-format auto|nchw|channels_last``: the layout of a run's weights and image batches, and why.

channels_last (NHWC) lets oneDNN run 2-D convolutions on a CPU without reordering tensors between layers.
Measured end to end in fp32 on a 2-core AVX2 AMD EPYC (``python benchmarks/bench.py train --impls
aekit,aekit+channels_last`` on the code before this option, where ``aekit`` was NCHW; BENCHMARKS.md
"channels_last by default for fp32 convolutions on a CPU"): the conv VAE trained 25 % faster (medians of 3 runs,
every NHWC run above every NCHW run), the dSprites recipe network 12 % (2 runs), the VQ-VAE's main fit 22 % and
its prior 3 % (epoch seconds, 2 runs); the U-Net 13 % by the medians, but its run ranges overlap and session 19's
one-row acceptance table had it 4 % slower, so that one is uncertain.  Test losses stayed within the runs' own
noise — the layouts round differently, so the trained weights are not bit-equal.  In bf16 the earlier
measurements disagree (on an AMX Xeon the U-Net ran at 92 samples/s with channels_last against 138 without,
before the redesign; on an AVX-512 BF16 EPYC it gained, session 16), so bf16 runs stay NCHW unless asked.

``auto`` (the default) therefore picks channels_last for a model with 2-D convolutions training in fp32 on an
x86-64 CPU, and nchw otherwise: an MLP on images gains nothing (one more copy per batch); ARM CPUs, CUDA and MPS
were not measured (an AVX-512 or AMX x86 CPU in fp32 was not measured either: the rule extends the AVX2
result to them).  The choice is resolved once, after the precision and before ``config.json`` is written (it
records ``nchw`` or ``channels_last``; ``--resume`` keeps it), and logged with its reason.  ``--channels-last``
is an alias of ``--memory-format channels_last``, ``--no-channels-last`` of ``nchw``.  Saved weights are always
plain contiguous tensors, and ``fit`` hands the model back in the default layout (converting does not change a
value).
"""

from __future__ import annotations

import dataclasses
import logging
import platform
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from ..models.base import Autoencoder
    from .config import TrainConfig

log = logging.getLogger("aekit.train")

__all__ = ["choose_memory_format", "has_conv2d", "resolve_memory_format"]

MemoryFormat = Literal["auto", "nchw", "channels_last"]
X86 = ("x86_64", "amd64")  # platform.machine() of the CPUs where oneDNN's NHWC convolutions were measured


def has_conv2d(model: nn.Module) -> bool:
    """Whether ``model`` holds a 2-D (transposed) convolution: the layers channels_last changes."""
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


def choose_memory_format(fmt: MemoryFormat, model: nn.Module, device: torch.device, precision: str = "fp32"
                         ) -> tuple[Literal["nchw", "channels_last"], str]:
    """(``"nchw"`` or ``"channels_last"``, the reason) for ``fmt`` with ``model`` on ``device`` training in
    ``precision`` (the resolved ``fp32`` or ``bf16``)."""
    if fmt != "auto":
        return fmt, f"--memory-format {fmt}"
    if not has_conv2d(model):
        return "nchw", "auto: the model has no 2-D convolutions"
    if device.type != "cpu":
        return "nchw", f"auto: channels_last was measured on CPUs only, not on {device.type}"
    if platform.machine().lower() not in X86:
        return "nchw", f"auto: channels_last was measured on x86-64 CPUs only, not on {platform.machine()}"
    if precision != "fp32":
        return "nchw", f"auto: channels_last in {precision} was faster on one CPU and slower on another"
    return "channels_last", "auto: 2-D convolutions in fp32 on a CPU (oneDNN runs them faster in NHWC)"


def resolve_memory_format(cfg: TrainConfig, model: Autoencoder, device: torch.device) -> TrainConfig:
    """``cfg`` with ``memory_format`` resolved for ``model`` on ``device``; logs the choice when it was ``auto``."""
    if cfg.memory_format != "auto":
        return cfg
    chosen, why = choose_memory_format("auto", model, device, cfg.precision)
    log.info("memory format %s (%s; --memory-format nchw forces NCHW)", chosen, why)
    return dataclasses.replace(cfg, memory_format=chosen)
