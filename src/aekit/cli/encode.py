"""``aekit encode RUN --out codes.npy|codes.csv``: the codes of a data split.

The codes are ``model.embed`` vectors (N, latent_dim), floats; for a ``discrete`` model (a VQ-VAE) they are its
codebook indices, one int64 column per grid position (``c0`` … in raster order, N × h·w).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ._common import add_data_flags, check_out_file, dataset_for, write_npy

log = logging.getLogger("aekit")


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory")
    add_data_flags(p)
    p.add_argument("--out", required=True, help="codes.npy or codes.csv (with a label column when there are labels); "
                                                "a discrete model (vqvae) writes its code indices")


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from ..fileio import atomic_path
    from ..latent import encode_all
    from ..train import load_run

    out = check_out_file(args.out, (".npy", ".csv"))  # before any work
    run = load_run(args.run)
    s = dataset_for(run, args).split(args.split)
    if run.model.discrete:  # codebook indices (N, h·w), int64, raster order
        from ..evaluate.codebook import code_indices

        codes = code_indices(run.model, s.x).flatten(1).numpy()
        prefix, fmt = "c", "%d"
    else:
        labels = s.y if run.model.conditional else None  # a conditional model encodes with the rows' labels
        codes = encode_all(run.model, s.x, labels=labels).numpy()
        prefix, fmt = "z", "%.7g"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        write_npy(out, codes)
    else:
        header = ",".join(f"{prefix}{j}" for j in range(codes.shape[1]))
        table = codes
        if s.y is not None and s.y.ndim == 1:  # class labels (not segmentation masks)
            header += ",label"
            table = np.concatenate([codes, s.y.numpy()[:, None].astype(codes.dtype)], axis=1)
        with atomic_path(out) as tmp:
            np.savetxt(tmp, table, delimiter=",", header=header, comments="", fmt=fmt)
    log.info("wrote %d codes of dimension %d to %s", codes.shape[0], codes.shape[1], out)
    return 0
