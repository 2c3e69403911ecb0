"""``aekit traverse RUN --out t.png``: latent traversals of a trained run (one row per latent unit, ordered by KL)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ..errors import AekitError
from ._common import (
    LABEL_HELP,
    MAX_FIGURE_IMAGES,
    add_data_flags,
    check_out_file,
    check_outputs,
    check_png,
    dataset_for,
)

log = logging.getLogger("aekit")

REFERENCE_ROWS = 2000  # rows of the split used to rank the units by KL / variance


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory")
    add_data_flags(p)
    p.add_argument("--index", type=int, default=0, help="which sample of the split gives the code (default 0)")
    p.add_argument("--dims", type=int, default=None, metavar="N", help="show only the N most used units")
    p.add_argument("--steps", type=int, default=9, help="images per row (default 9)")
    p.add_argument("--span", type=float, default=3.0, help="sweep each unit over [-span, span] (default 3)")
    p.add_argument("--label", default=None, metavar="CLASS",
                   help="conditional models (--model cvae): the class the traversal is decoded with; the sample "
                        "is encoded with its own label (its style), so the rows show it in this class (default: "
                        f"its own class; an unlabelled split encodes with it too). {LABEL_HELP}")
    p.add_argument("--out", required=True, help="PNG file")


def cmd_traverse(args: argparse.Namespace) -> int:
    import torch

    from ..data import to_float
    from ..latent import traversal_labels
    from ..train import load_run
    from ..viz.traversal import traversal_figure

    check_out_file(args.out, (".png",))  # before any work
    if args.steps < 2:
        raise AekitError(f"--steps must be at least 2, got {args.steps}")
    run = load_run(args.run)
    label = None if args.label is None else run.model.label_index(args.label, "--label")  # one-line errors
    rows = max(1, run.model.latent_dim if args.dims is None else min(args.dims, run.model.latent_dim))
    if rows * args.steps > MAX_FIGURE_IMAGES:
        raise AekitError(f"--steps {args.steps}: {rows} rows of {args.steps} images are more than the "
                         f"{MAX_FIGURE_IMAGES} a PNG figure holds; use --steps {max(2, MAX_FIGURE_IMAGES // rows)} or "
                         "fewer (or --dims N)")
    check_outputs(rows * args.steps, run.model.input_shape, "--steps", png=False)
    if len(run.model.input_shape) not in (2, 3):
        raise AekitError(f"aekit traverse draws images; run {args.run} was trained on table data "
                         f"{run.model.input_shape}: use `aekit encode` and plot the codes instead")
    s = dataset_for(run, args).split(args.split)
    if not 0 <= args.index < len(s):
        raise AekitError(f"--index {args.index} is out of range: the {args.split} split has {len(s)} samples "
                         f"(0..{len(s) - 1})")
    if args.dims is not None and args.dims < 1:
        raise AekitError(f"--dims must be at least 1, got {args.dims}")
    if not args.span > 0:
        raise AekitError(f"--span must be > 0, got {args.span}")
    out = check_png(args.out)
    x = to_float(s.x[args.index : args.index + 1])[0]
    reference = s.x[:REFERENCE_ROWS]
    enc = dec = None
    ref_labels = None
    if run.model.conditional:  # the one rule of latent.traversal_labels (the explorer's sliders too)
        y = s.y if s.y is not None and s.y.ndim == 1 else None  # an unlabelled split: None
        enc, dec = traversal_labels(None if y is None else int(y[args.index]), label)
        ref_labels = y[:REFERENCE_ROWS] if y is not None else torch.full((len(reference),), enc, dtype=torch.long)
    path, dims = traversal_figure(run.model, x, reference, out, n_dims=args.dims, steps=args.steps,
                                  span=args.span, label=enc, path_label=dec, reference_labels=ref_labels,
                                  title=f"{args.split} #{args.index}: traversals {-args.span:g} … {args.span:g}")
    log.info("wrote %s (units %s, most used first)", path, ", ".join(map(str, dims)))
    return 0
