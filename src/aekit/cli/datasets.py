"""``aekit datasets``: the data sources, one line each."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.epilog = "Give one to `aekit train --data SPEC`; PATH sources as PREFIX:PATH, e.g. images:photos/."


def cmd_datasets(args: argparse.Namespace) -> int:
    from ..data import SOURCES

    for name, src in SOURCES.items():
        sys.stdout.write(f"{name + (':PATH' if src.needs_arg else ''):<16} {src.help}\n")
    return 0
