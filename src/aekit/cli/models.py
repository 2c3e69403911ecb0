"""``aekit models``: the registered models, one line each."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.epilog = "`aekit train --model NAME --help` lists the options of one model."


def cmd_models(args: argparse.Namespace) -> int:
    from ..models import MODELS

    for name, spec in MODELS.items():
        sys.stdout.write(f"{name:<12} {spec.help}\n")
    return 0
