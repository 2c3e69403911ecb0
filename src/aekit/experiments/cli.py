"""`aekit experiment NAME --data SPEC --out DIR`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _parse_set(items: list[str]) -> dict[str, str]:
    from ..errors import ConfigError

    out = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {it!r}: write KEY=VALUE, e.g. --set latent_dim=8")
        out[key.replace("-", "_")] = value
    return out


def cmd_experiment(args: argparse.Namespace) -> int:
    from . import ExperimentContext, run_experiment

    ctx = ExperimentContext(data=args.data, out=Path(args.out), quick=args.quick, epochs=args.epochs,
                            seed=args.seed, progress=not args.quiet, options=_parse_set(args.set or []))
    result = run_experiment(args.name, ctx)
    log.info("%s", result.summary.strip())
    log.info("wrote %s/summary.md, results.csv, results.md and %d figure(s)", args.out, len(result.figures))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="run a named experiment (table, plots and summary.md)")
    p.add_argument("name", help="experiment name (see README)")
    p.add_argument("--data", default="digits", help="dataset spec (default: digits)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--epochs", type=int, default=None, help="override the default number of epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run in seconds")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra experiment option (repeatable)")
    p.set_defaults(func=cmd_experiment)
