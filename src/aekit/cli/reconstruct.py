"""``aekit reconstruct RUN --out recon.png``: originals above their reconstructions."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ._common import add_data_flags, check_out_file, check_outputs, check_png, dataset_for

log = logging.getLogger("aekit")


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory")
    add_data_flags(p)
    p.add_argument("-n", type=int, default=10, help="number of samples (default 10)")
    p.add_argument("--out", required=True, help="PNG file")


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from ..data import to_float
    from ..train import load_run
    from ..viz.plots import plot_reconstructions

    check_out_file(args.out, (".png",))  # before any work
    run = load_run(args.run)
    check_outputs(max(1, args.n), run.model.input_shape, "-n", png=True)
    s = dataset_for(run, args).split(args.split)
    x = to_float(s.x[: max(1, args.n)])
    labels = None if s.y is None else s.y[: max(1, args.n)]  # a conditional model reconstructs with its labels
    with torch.no_grad():
        recon = run.model.reconstruct(x, **run.model.label_kwargs(labels))
    plot_reconstructions(x, recon, check_png(args.out), n=len(x))
    log.info("wrote %s", args.out)
    return 0
