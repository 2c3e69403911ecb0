"""``aekit segment RUN IMAGE... --out DIR``: masks and overlays for your images, overlap-tile inference for big ones.

For every image it writes ``DIR/NAME_mask.png`` (single channel, pixel value = class id: readable again as a
``seg:DIR`` mask) and ``DIR/NAME_overlay.png`` (the image with the classes tinted and outlined).  The tiling is
:func:`aekit.infer.predict_tiled`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from ..errors import AekitError
from ._common import check_out_dir

log = logging.getLogger("aekit")


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory trained with --model unet")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files")
    p.add_argument("--out", required=True, help="output directory (NAME_mask.png, NAME_overlay.png)")
    p.add_argument("--tile", type=int, default=None,
                   help="tile side for images larger than the training images (default: 2× the training size, a "
                        "multiple of 2^depth)")
    p.add_argument("--margin", type=int, default=None,
                   help="pixels dropped at every inner tile edge (default: the receptive radius: exact)")


def cmd_segment(args: argparse.Namespace) -> int:
    import torch

    from ..infer import default_margin, default_tile, read_image, segment_image
    from ..train import load_run
    from ..viz.segmentation import save_mask_png, save_overlay_png

    out = check_out_dir(args.out)  # before any work
    run = load_run(args.run)
    model = run.model
    if not model.supervised:
        raise AekitError(f"run {args.run} is a {run.model_name}, not a segmentation model: train one with "
                         "`aekit train --model unet --data cells`")
    paths = [Path(p) for p in args.images]
    stems = [p.stem for p in paths]
    dup = next((s for s in stems if stems.count(s) > 1), None)
    if dup is not None:
        raise AekitError(f"two input images are named {dup!r}: their outputs would overwrite each other; rename one")
    images = [read_image(p, model.input_shape[0]) for p in paths]  # every input is checked before any output
    margin = args.margin if args.margin is not None else default_margin(model)
    tile = args.tile if args.tile is not None else default_tile(model, margin)
    out.mkdir(parents=True, exist_ok=True)
    for p, img in zip(paths, images):
        mask, tiled = segment_image(model, torch.from_numpy(img), tile, margin)
        save_mask_png(mask, out / f"{p.stem}_mask.png")
        save_overlay_png(img, mask, out / f"{p.stem}_overlay.png")
        how = f"tiles of {tile} px, margin {margin} px" if tiled else "whole image"
        counts = torch.bincount(mask.flatten(), minlength=model.num_classes).tolist()
        log.info("%s: %d×%d (%s) -> %s_mask.png, %s_overlay.png; pixels per class %s", p, img.shape[2], img.shape[1],
                 how, p.stem, p.stem, counts)
    return 0
