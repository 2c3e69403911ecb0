"""``aekit sample RUN -n 64 --out samples.png``: decoded draws from the prior of a generative model.

A conditional model (``--model cvae``) draws every sample of ``--label`` (a class name or its id, e.g. ``--label
Sneaker`` or ``--label 7``; when class names are numbers a bare number is a name, ``id:N`` is always id N);
without it the draws go through the run's classes in turn (0, 1, …, K−1, 0, …).  ``--temperature T`` scales
the draws (1: the prior; below 1 nearer its mode: more typical, less varied samples; 0: a Gaussian prior's mode,
a VQ-VAE's greedy code grid).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ..errors import AekitError
from ._common import LABEL_HELP, check_out_file, check_outputs, write_npy

log = logging.getLogger("aekit")


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory of a generative model (e.g. --model vae)")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--label", default=None, metavar="CLASS",
                   help="conditional models (--model cvae): the class to draw, e.g. Sneaker (default: the classes "
                        f"in turn). {LABEL_HELP}")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="scale of the draws: 1 samples the prior (default); below 1 nearer its mode, more typical "
                        "and less varied samples (a Gaussian prior's draw is scaled by T; a VQ-VAE's prior draws "
                        "each code from softmax(logits/T)); 0 is the Gaussian's mode, or the VQ-VAE's greedy codes")
    p.add_argument("--out", required=True, help="PNG file (or .npy for raw arrays)")


def cmd_sample(args: argparse.Namespace) -> int:
    from ..latent import sample
    from ..models.base import checked_temperature
    from ..train import load_run

    out = check_out_file(args.out, (".png", ".npy"))  # before any work
    if args.n < 1:
        raise AekitError("-n must be at least 1")
    checked_temperature(args.temperature)  # before loading the run
    run = load_run(args.run)
    run.model.require("generative", "sampling")  # a model without a prior says so in one line
    label = None if args.label is None else run.model.label_index(args.label, "--label")  # one-line errors
    check_outputs(args.n, run.model.input_shape, "-n", png=out.suffix.lower() == ".png")
    x = sample(run.model, args.n, seed=args.seed, labels=label, temperature=args.temperature)
    if out.suffix.lower() == ".npy":
        write_npy(out, x.cpu().numpy())
    else:
        from ..viz.plots import plot_samples

        out.parent.mkdir(parents=True, exist_ok=True)
        plot_samples(x, out)
    log.info("wrote %s", args.out)
    return 0
