"""``aekit export RUN --onnx DIR``: the run's encoder and decoder as ONNX graphs (see :mod:`aekit.export`)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ..errors import ConfigError
from ._common import check_out_dir

log = logging.getLogger("aekit")


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("run", help="a run directory")
    p.add_argument("--onnx", metavar="DIR", help="write encoder.onnx, decoder.onnx and onnx.json into DIR")
    p.add_argument("--exporter", default="dynamo", choices=["dynamo", "torchscript"],
                   help="torch.onnx exporter (default dynamo; torchscript is the legacy one)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison with PyTorch")


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import DECODER, ENCODER, FORWARD, export_onnx
    from ..train import load_run

    if not args.onnx:
        raise ConfigError("aekit export needs a format: --onnx DIR")
    check_out_dir(args.onnx, flag="--onnx")  # before any work
    run = load_run(args.run)
    manifest = export_onnx(run.model, args.onnx, model_name=run.model_name, exporter=args.exporter,
                           opset=args.opset, check=not args.no_check)
    diffs = manifest.get("max_abs_diff")
    files = (f"{ENCODER} ({', '.join(manifest['encoder_outputs'])}) and {DECODER}"
             if manifest["graph"] == "autoencoder" else f"{FORWARD} (x -> y)")
    if manifest.get("conditional"):  # both graphs take the class ids as a second input
        files += f", both with a second input 'labels' (int64 class ids 0..{len(manifest['class_names']) - 1})"
    log.info("wrote %s to %s; %s", files, args.onnx,
             f"max |onnxruntime − PyTorch| = {max(diffs.values()):.2g}" if diffs else "not checked")
    return 0
