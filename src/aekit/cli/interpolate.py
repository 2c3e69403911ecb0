"""``aekit interpolate RUN --a 0 --b 1 [--spherical] --out path.png``: decode a path between two codes."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ..errors import AekitError
from ._common import LABEL_HELP, add_data_flags, check_out_file, check_outputs, check_png, dataset_for

log = logging.getLogger("aekit")


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory")
    add_data_flags(p)
    p.add_argument("--a", type=int, default=0, help="index of the first sample in the split (default 0)")
    p.add_argument("--b", type=int, default=1, help="index of the second sample (default 1)")
    p.add_argument("--steps", type=int, default=10, help="images along the path (default 10)")
    p.add_argument("--spherical", action="store_true", help="slerp instead of a straight line")
    p.add_argument("--label", default=None, metavar="CLASS",
                   help="conditional models (--model cvae): the class the path is decoded with; each sample is "
                        "encoded with its own label (its style), so the path shows both in this class (default: "
                        f"the class of --a; an unlabelled split encodes with it too). {LABEL_HELP}")
    p.add_argument("--out", required=True, help="PNG file")


def cmd_interpolate(args: argparse.Namespace) -> int:
    from ..data import to_float
    from ..latent import interpolate, interpolation_labels
    from ..train import load_run
    from ..viz.plots import plot_interpolation

    check_out_file(args.out, (".png",))  # before any work
    run = load_run(args.run)
    label = None if args.label is None else run.model.label_index(args.label, "--label")  # one-line errors
    check_outputs(max(2, args.steps), run.model.input_shape, "--steps", png=True)
    s = dataset_for(run, args).split(args.split)
    for name, i in (("--a", args.a), ("--b", args.b)):
        if not 0 <= i < len(s):
            raise AekitError(f"{name} {i} is out of range: the {args.split} split has {len(s)} samples (0..{len(s) - 1})")
    labels: tuple[int, int] | None = None
    path: int | None = None
    if run.model.conditional:  # the one rule of latent.interpolation_labels (the explorer's too)
        own = (int(s.y[args.a]), int(s.y[args.b])) if s.y is not None and s.y.ndim == 1 else None
        labels, path = interpolation_labels(own, label)
    strip = interpolate(run.model, to_float(s.x[args.a]), to_float(s.x[args.b]), max(2, args.steps), args.spherical,
                        labels=labels, path_label=path)
    plot_interpolation(strip, check_png(args.out))
    log.info("wrote %s", args.out)
    return 0
