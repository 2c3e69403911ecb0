"""``aekit demo``: a small VAE on the embedded digits, with its report."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from ._common import summary

log = logging.getLogger("aekit")

# The demo's settings: a small MLP VAE that trains on the 1,437 training digits in well under a minute.
DEMO_OPTIONS: dict[str, Any] = {"hidden": "256,128", "latent_dim": 8, "epochs": 150, "batch_size": 64,
                                "lr": 2e-3, "beta_warmup_epochs": 10}


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo; replaced)")
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {DEMO_OPTIONS['epochs']})")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..pipeline import train

    options: dict[str, Any] = dict(DEMO_OPTIONS)
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if getattr(args, "quiet", False):
        options["progress"] = False
    log.info("demo: training a VAE on the embedded 8x8 digits -> %s", args.out)
    run = train("vae", "digits", args.out, overwrite=True, **options)
    summary(run)
    return 0
