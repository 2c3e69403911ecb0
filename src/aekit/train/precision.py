"""``--precision auto|fp32|bf16``: which arithmetic the forward pass runs in, and why.

``auto`` (the default) is bf16 autocast where two things hold, fp32 otherwise:

1. the device runs bf16 natively — a CUDA GPU with bf16 (``torch.cuda.is_bf16_supported`` without
   emulation), or a CPU with AMX or AVX-512 BF16 (the ``amx_bf16`` / ``avx512_bf16`` flags the Linux kernel
   reports in ``/proc/cpuinfo``; torch has no public API for it, ``torch.backends.cpu.get_cpu_capability()``
   says ``AVX512`` for CPUs with and without BF16).  Elsewhere autocast emulates bf16 and is slower than fp32.
2. the model's bf16 parity was measured: its test loss after the same epochs, same seed, is within 0.5 nat
   of fp32 (U-Net: 0.02 per pixel) — ``python benchmarks/parity.py``, table in BENCHMARKS.md.  Only the
   registry entries in :data:`BF16_PARITY` were measured; every other model stays fp32 under ``auto``, and so
   does a measured entry's config outside the measured range (:data:`BF16_LIMITS`: an ``ae`` or ``vae`` on
   inputs of more than 784 elements or with a conv stack deeper than 2 levels, such as the dSprites recipe's
   network, which failed parity, and a ``vae`` with another likelihood than Bernoulli).

The choice is resolved once, before the run directory's ``config.json`` is written (it records the concrete
``fp32`` or ``bf16``, so a resumed run keeps it, on any machine), and logged with its reason.  ``--precision
fp32`` forces fp32; ``--bf16`` is an alias of ``--precision bf16``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch

from ..models.base import Autoencoder
from .config import TrainConfig

log = logging.getLogger("aekit.train")

__all__ = ["BF16_LIMITS", "BF16_PARITY", "bf16_native", "choose_precision", "resolve_precision", "warn_if_emulated"]

# Registry entries whose bf16 test loss was measured within the tolerance of fp32: bf16 − fp32 test loss after
# the same epochs, same seed (`python benchmarks/parity.py --threads 1`, 2026-12-02, AMD EPYC with AVX-512
# BF16; BENCHMARKS.md "bf16 parity", benchmarks/results/parity-issue20.md).
BF16_PARITY: dict[str, str] = {
    "vae": "MLP VAE 784-400-20, 10 epochs: +0.011 nat; conv VAE 32-64, 3 epochs: -0.027 nat (Fashion-MNIST); "
           "not deeper conv stacks or larger images (BF16_LIMITS)",
    "ae": "deep AE 784-1000-500-250-30, 5 epochs: -0.235 nat (Fashion-MNIST)",
    "unet": "U-Net depth 3 on 128x128 cells, 3 epochs: +0.003 per pixel",
}


def _size_outside_measured(cfg: Any, kind: str) -> str | None:
    """Why an ``ae`` / ``vae`` config lies outside the measured networks by its shape, None inside: inputs of at
    most 784 elements (one 28×28 channel), as an MLP or a conv stack of at most two levels."""
    elements = math.prod(cfg.input_shape)
    levels = len(cfg.channels) if cfg.arch == "conv" else 0
    if elements <= 28 * 28 and levels <= 2:
        return None
    what = f"a {levels}-level conv {kind}" if cfg.arch == "conv" else f"an MLP {kind}"
    return (f"{what} on {elements:,}-element inputs is outside the measured networks (784-element inputs: an MLP, "
            "and for the VAE a 2-level conv stack); the dSprites recipe's 4-level 64×64 VAE failed parity (bf16 − "
            "fp32 test ELBO −2.7 and −15.4 nats after 1,350 steps, seeds 0 and 1)")


def _vae_outside_measured(cfg: Any) -> str | None:
    """Why a ``vae`` config (a VAEConfig) lies outside what its parity covers, None inside: a Bernoulli
    likelihood on inputs of at most 784 elements, as an MLP or a conv stack of at most two levels."""
    if cfg.likelihood != "bernoulli":
        return f"a {cfg.likelihood} likelihood is outside the measured VAEs (both Bernoulli)"
    return _size_outside_measured(cfg, "VAE")


def _ae_outside_measured(cfg: Any) -> str | None:
    """Why an ``ae`` config (an AEConfig) lies outside what its parity covers (the deep AE 784-1000-500-250-30)."""
    return _size_outside_measured(cfg, "AE")


# Where an entry's parity does not reach: (registry name) → config → the reason, or None inside the measured range.
BF16_LIMITS: dict[str, Callable[[Any], str | None]] = {"vae": _vae_outside_measured, "ae": _ae_outside_measured}


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_native(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` runs bf16 natively, and what says so (for the log line)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} has bf16"
        return False, f"{name} has no native bf16"
    if device.type == "cpu":
        flags = _cpu_flags()
        if "amx_bf16" in flags:
            return True, "CPU with AMX"
        if "avx512_bf16" in flags:
            return True, "CPU with AVX-512 BF16"
        return False, f"CPU ({platform.machine()}) without AMX or AVX-512 BF16"
    return False, f"bf16 autocast not measured on {device.type}"


Precision = Literal["auto", "fp32", "bf16"]


def choose_precision(precision: Precision, model_name: str | None,
                     device: torch.device, config: Any = None) -> tuple[Literal["fp32", "bf16"], str]:
    """(``"fp32"`` or ``"bf16"``, the reason) for ``precision`` on ``device`` for the registry entry
    ``model_name`` (None: a model built outside the registry, never measured) with model ``config`` (checked
    against :data:`BF16_LIMITS` when given)."""
    if precision != "auto":
        return precision, f"--precision {precision}"
    native, why = bf16_native(device)
    if not native:
        return "fp32", f"auto: {why}"
    if model_name not in BF16_PARITY:
        return "fp32", f"auto: {why}, but bf16 parity was not measured for --model {model_name or '(unregistered)'}"
    limit = BF16_LIMITS.get(model_name)
    outside = None if limit is None else "its config was not given" if config is None else limit(config)
    if outside:
        return "fp32", f"auto: {why}, but {outside}"
    return "bf16", f"auto: {why}, bf16 parity measured for --model {model_name}"


def warn_if_emulated(precision: str, device: torch.device) -> None:
    """A warning when a run trains in bf16 on a device without native bf16: honoured (it was asked for), but no
    fast path there (a run calls this once, on rank 0, also when resumed)."""
    if precision != "bf16":
        return
    native, why = bf16_native(device)
    if native:
        return
    cost = ("emulated on this CPU, several times slower than fp32 (one step 7–8× for an MLP VAE and 12× for a conv "
            "VAE on an AVX2 CPU: benchmarks/bf16_step.py)" if device.type == "cpu"
            else "its speed on this device was not measured")
    log.warning("this run trains in bf16, but bf16 is not native here (%s): %s; --precision auto (or fp32) "
                "trains in fp32 here", why, cost)


def resolve_precision(cfg: TrainConfig, model: Autoencoder, device: torch.device) -> TrainConfig:
    """``cfg`` with ``precision`` resolved to fp32 or bf16 for ``model`` (a registered model: its
    ``registry_name``) on ``device``; logs the choice when it was ``auto``."""
    if cfg.precision != "auto":
        return cfg
    chosen, why = choose_precision("auto", model.registry_name, device, model.config)
    log.info("precision %s (%s; --precision fp32 forces fp32)", chosen, why)
    return dataclasses.replace(cfg, precision=chosen)
