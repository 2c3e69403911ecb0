"""``aekit experiment NAME --data SPEC --out DIR``: a named experiment (table, plots and summary.md)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

log = logging.getLogger("aekit")


def experiment_lines() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every registered experiment (its docstring's first line)."""
    import importlib

    from .. import experiments

    for module in experiments.EXPERIMENT_MODULES:  # the experiments register themselves on import
        importlib.import_module(module)
    lines = []
    for name, fn in experiments.EXPERIMENTS.items():
        text = getattr(fn, "help", None) or (fn.__doc__ or "").strip()
        lines.append((name, text.splitlines()[0].strip() if text else "(no description)"))
    return lines


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    if "-h" in argv or "--help" in argv:  # the list costs the experiments' imports: only for --help
        rows = experiment_lines()
        width = max(len(n) for n, _ in rows)
        p.epilog = "experiments:\n" + "\n".join(f"  {n:<{width}}  {text}" for n, text in rows)
    p.add_argument("name", help="experiment name (listed below)")
    p.add_argument("--data", default="digits", metavar="SPEC", help="dataset spec (default: digits)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--epochs", type=int, default=None, help="override the default number of epochs")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run in seconds")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra experiment option (repeatable)")


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
    from ..experiments import ExperimentContext, run_experiment
    from ._common import check_out_dir

    ctx = ExperimentContext(data=args.data, out=check_out_dir(args.out), quick=args.quick, epochs=args.epochs,
                            seed=args.seed, progress=not getattr(args, "quiet", False),
                            options=_parse_set(args.set or []))
    result = run_experiment(args.name, ctx)
    log.info("%s", result.summary.strip())
    log.info("wrote %s/summary.md, results.csv, results.md and %d figure(s)", args.out, len(result.figures))
    return 0
