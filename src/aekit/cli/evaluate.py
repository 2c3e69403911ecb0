"""``aekit evaluate RUN [--data SPEC] [--split test] [--json]``: the test figures of a run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..fileio import dumps_json
from ._common import add_data_flags, dataset_for


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory")
    add_data_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--iwae-samples", type=int, default=None, metavar="K",
                   help="VAE: add the importance-weighted estimate of -log p(x) with K samples (nll, "
                        "bits_per_dim), active_units and kl_per_dim (Burda et al. 2016; e.g. 5000)")
    p.add_argument("--corruption", default=None, metavar="SPEC",
                   help="deterministic AEs: also the error of reconstructing clean test inputs from corrupted ones "
                        "(mask:0.25, gaussian:0.1, salt-pepper:0.1; default: a denoising AE's own corruption)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate
    from ..train import load_run

    run = load_run(args.run)
    result = evaluate(run.model, dataset_for(run, args), args.split, iwae_samples=args.iwae_samples,
                      corruption=args.corruption)
    result = {"run": str(args.run), "model": run.model_name, **result}
    if args.json:  # standard JSON: a non-finite figure is null, never NaN
        sys.stdout.write(dumps_json(result) + "\n")
    else:
        for k, v in result.items():
            sys.stdout.write(f"{k:>16}: {v:.6g}\n" if isinstance(v, float) else f"{k:>16}: {v}\n")
    return 0
