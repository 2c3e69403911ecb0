"""``aekit evaluate RUN [--data SPEC] [--split test] [--json]``: the test figures of a run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import ConfigError
from ..fileio import dumps_json
from ._common import add_data_flags, dataset_for

MAX_IWAE_DECODES = 10**10  # samples × K decoder passes of --iwae-samples; 5000 × 10,000 test images is 5e7


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

    if args.iwae_samples is not None and args.iwae_samples < 1:
        raise ConfigError(f"--iwae-samples {args.iwae_samples}: give K ≥ 1 importance samples, e.g. 5000")
    run = load_run(args.run)
    data = dataset_for(run, args)
    if args.iwae_samples is not None:
        n = len(data.split(args.split))
        if args.iwae_samples * n > MAX_IWAE_DECODES:
            raise ConfigError(f"--iwae-samples {args.iwae_samples}: {n} {args.split} samples × {args.iwae_samples} "
                              f"importance samples are more than {MAX_IWAE_DECODES:.0e} decoder passes (a day or "
                              f"more of compute); use --iwae-samples {max(1, MAX_IWAE_DECODES // n)} or fewer "
                              "(Burda et al. 2016 use 5000)")
    result = evaluate(run.model, data, args.split, iwae_samples=args.iwae_samples, corruption=args.corruption)
    result = {"run": str(args.run), "model": run.model_name, **result}
    if args.json:  # standard JSON: a non-finite figure is null, never NaN
        sys.stdout.write(dumps_json(result) + "\n")
    else:
        for k, v in result.items():
            sys.stdout.write(f"{k:>16}: {v:.6g}\n" if isinstance(v, float) else f"{k:>16}: {v}\n")
    return 0
