"""Command-line interface: a thin layer over the library API.

Flags become a dict of options, the library validates them into typed configs (unknown keys and wrong types
are rejected with a message that says how to fix them), and the library does the work.  Every user error
exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .errors import AekitError

log = logging.getLogger("aekit")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"aekit: error: {message} (see `{self.prog} --help`)\n")


def _option_fields() -> dict[str, Any]:
    """Every config field a user may set on `aekit train`, with its type (union over all models)."""
    from .config import field_types
    from .data import DataConfig
    from .models import MODELS
    from .train import TrainConfig

    fields: dict[str, Any] = {}
    for spec in MODELS.values():
        fields.update(field_types(spec.config_cls))
    fields.update(field_types(TrainConfig))
    fields.update(field_types(DataConfig))
    for internal in ("input_shape", "spec"):
        fields.pop(internal, None)
    return fields


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model / training / data options (validated against the chosen model)")
    for name, tp in sorted(_option_fields().items()):
        flag = "--" + name.replace("_", "-")
        if tp is bool:
            g.add_argument(flag, dest=name, action="store_const", const=True, default=argparse.SUPPRESS)
            g.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_const", const=False,
                           default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        else:
            g.add_argument(flag, dest=name, metavar="V", default=argparse.SUPPRESS)


def _data_flag(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--data", default=None if not required else argparse.SUPPRESS, required=required,
                   help="dataset spec: digits, fashion-mnist, mnist, kmnist, idx:DIR, images:DIR, npy:F, npz:F, csv:F "
                        "(default: the run's own data)")
    p.add_argument("--data-dir", default=None, help="where MNIST-family files are looked up / cached")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])


def build_parser() -> argparse.ArgumentParser:
    from .models import MODELS

    p = _Parser(prog="aekit", description="Build, train, evaluate and explore autoencoders.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model and write a run directory")
    t.add_argument("--model", default="vae", help="one of: " + ", ".join(MODELS) + " (default vae)")
    t.add_argument("--data", dest="data_spec", default="digits",
                   help="dataset spec (default: digits): digits, fashion-mnist, mnist, kmnist, dsprites, cells, "
                        "idx:DIR, images:DIR, seg:DIR, npy:FILE, npz:FILE, csv:FILE (aekit datasets lists them)")
    t.add_argument("--out", help="run directory to create")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint (its saved config)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    t.add_argument("--no-report", action="store_true", help="skip report.html and the figures")
    _add_config_flags(t)

    e = sub.add_parser("evaluate", help="evaluate a run on a data split")
    e.add_argument("run")
    _data_flag(e)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--iwae-samples", type=int, default=None, metavar="K",
                   help="VAE: add the importance-weighted estimate of -log p(x) with K samples (nll, "
                        "bits_per_dim), active_units and kl_per_dim (Burda et al. 2016; e.g. 5000)")
    e.add_argument("--corruption", default=None, metavar="SPEC",
                   help="deterministic AEs: also the error of reconstructing clean test inputs from corrupted ones "
                        "(mask:0.25, gaussian:0.1, salt-pepper:0.1; default: a denoising AE's own corruption)")

    r = sub.add_parser("reconstruct", help="originals vs reconstructions as a PNG")
    r.add_argument("run")
    _data_flag(r)
    r.add_argument("-n", type=int, default=10)
    r.add_argument("--out", required=True, help="PNG file")

    s = sub.add_parser("sample", help="decode draws from the prior (VAE)")
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="PNG file (or .npy for raw arrays)")

    i = sub.add_parser("interpolate", help="decode a path between the codes of two inputs")
    i.add_argument("run")
    _data_flag(i)
    i.add_argument("--a", type=int, default=0, help="index of the first sample in the split")
    i.add_argument("--b", type=int, default=1, help="index of the second sample")
    i.add_argument("--steps", type=int, default=10)
    i.add_argument("--spherical", action="store_true", help="slerp instead of a straight line")
    i.add_argument("--out", required=True, help="PNG file")

    c = sub.add_parser("encode", help="write the codes of a data split to .npy or .csv")
    c.add_argument("run")
    _data_flag(c)
    c.add_argument("--out", required=True, help="codes.npy or codes.csv")

    d = sub.add_parser("demo", help="train the default model on the embedded digits and write a report")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--epochs", type=int, default=None)

    sub.add_parser("models", help="list the registered models")
    sub.add_parser("datasets", help="list the data sources")
    for name, sp in sub.choices.items():
        sp.set_defaults(func=COMMANDS[name])
    for module in PLUGINS:  # feature modules add their own sub-commands
        importlib.import_module(module).register(sub)
    return p


def _dataset_for(run: Any, args: argparse.Namespace) -> Any:
    import dataclasses

    from .data import load_data

    cfg = run.data_config
    if getattr(args, "data", None):
        cfg = dataclasses.replace(cfg, spec=args.data)
    if getattr(args, "data_dir", None):
        cfg = dataclasses.replace(cfg, data_dir=args.data_dir)
    data = load_data(cfg)
    if data.shape != run.model.input_shape:
        raise AekitError(
            f"data {cfg.spec!r} has samples of shape {data.shape} but the model expects {run.model.input_shape}: "
            "use data like the run's training data (e.g. --image-size at training time)"
        )
    return data


def _check_png(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise AekitError(f"--out {path}: write a .png file, e.g. --out figure.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    reserved = {"command", "func", "verbose", "quiet", "model", "data_spec", "out", "resume", "overwrite", "no_report"}
    options = {k: v for k, v in vars(args).items() if k not in reserved}
    if args.quiet:
        options.setdefault("progress", False)
    if args.resume:
        run = train(resume=args.resume, report=not args.no_report, **options)
    else:
        if not args.out:
            raise AekitError("aekit train needs --out DIR: the run directory to create")
        run = train(args.model, args.data_spec, args.out, overwrite=args.overwrite, report=not args.no_report,
                    **options)
    _summary(run)
    return 0


def _summary(run: Any) -> None:
    ev = run.evaluation or {}
    figures = ", ".join(f"{k}={v:.4g}" for k, v in ev.items() if isinstance(v, float))
    log.info("run written to %s  (test: %s)", run.path, figures)
    if run.path is not None and (run.path / "report.html").exists():
        log.info("report: %s", (run.path / "report.html").resolve())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .train import load_run

    run = load_run(args.run)
    result = evaluate(run.model, _dataset_for(run, args), args.split, iwae_samples=args.iwae_samples,
                      corruption=args.corruption)
    result = {"run": str(args.run), "model": run.model_name, **result}
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for k, v in result.items():
            sys.stdout.write(f"{k:>16}: {v:.6g}\n" if isinstance(v, float) else f"{k:>16}: {v}\n")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from .data import to_float
    from .train import load_run
    from .viz.plots import plot_reconstructions

    run = load_run(args.run)
    s = _dataset_for(run, args).split(args.split)
    x = to_float(s.x[: max(1, args.n)])
    with torch.no_grad():
        recon = run.model.reconstruct(x)
    plot_reconstructions(x, recon, _check_png(args.out), n=len(x))
    log.info("wrote %s", args.out)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from .latent import sample
    from .train import load_run
    from .viz.plots import plot_samples

    run = load_run(args.run)
    if not run.model.can_sample:
        raise AekitError(f"model '{run.model_name}' has no prior to sample from: train a --model vae")
    if args.n < 1:
        raise AekitError("-n must be at least 1")
    x = sample(run.model, args.n, seed=args.seed)
    if args.out.endswith(".npy"):
        np.save(args.out, x.cpu().numpy())
    else:
        plot_samples(x, _check_png(args.out))
    log.info("wrote %s", args.out)
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .data import to_float
    from .latent import interpolate
    from .train import load_run
    from .viz.plots import plot_interpolation

    run = load_run(args.run)
    s = _dataset_for(run, args).split(args.split)
    for name, i in (("--a", args.a), ("--b", args.b)):
        if not 0 <= i < len(s):
            raise AekitError(f"{name} {i} is out of range: the {args.split} split has {len(s)} samples (0..{len(s) - 1})")
    strip = interpolate(run.model, to_float(s.x[args.a]), to_float(s.x[args.b]), max(2, args.steps), args.spherical)
    plot_interpolation(strip, _check_png(args.out))
    log.info("wrote %s", args.out)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from .latent import encode_all
    from .train import load_run

    run = load_run(args.run)
    s = _dataset_for(run, args).split(args.split)
    codes = encode_all(run.model, s.x).numpy()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, codes)
    elif out.suffix == ".csv":
        header = ",".join(f"z{j}" for j in range(codes.shape[1]))
        table = codes
        if s.y is not None and s.y.ndim == 1:  # class labels (not segmentation masks)
            header += ",label"
            table = np.concatenate([codes, s.y.numpy()[:, None].astype(codes.dtype)], axis=1)
        np.savetxt(out, table, delimiter=",", header=header, comments="", fmt="%.7g")
    else:
        raise AekitError(f"--out {args.out}: use a .npy or .csv file name")
    log.info("wrote %d codes of dimension %d to %s", codes.shape[0], codes.shape[1], out)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .train import train

    options: dict[str, Any] = dict(DEMO_OPTIONS)
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if args.quiet:
        options["progress"] = False
    log.info("demo: training a VAE on the embedded 8x8 digits -> %s", args.out)
    run = train("vae", "digits", args.out, overwrite=True, **options)
    _summary(run)
    return 0


# The demo's settings: a small MLP VAE that trains on the 1,437 training digits in well under a minute.
DEMO_OPTIONS: dict[str, Any] = {"hidden": "256,128", "latent_dim": 8, "epochs": 150, "batch_size": 64,
                                "lr": 2e-3, "beta_warmup_epochs": 10}


def cmd_models(args: argparse.Namespace) -> int:
    from .models import MODELS

    for name, spec in MODELS.items():
        sys.stdout.write(f"{name:<12} {spec.help}\n")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import SOURCES

    for name, src in SOURCES.items():
        sys.stdout.write(f"{name + (':PATH' if src.needs_arg else ''):<16} {src.help}\n")
    return 0


# Modules that add sub-commands: each has ``register(subparsers)``, which adds parsers with ``func`` defaults.
PLUGINS: tuple[str, ...] = ("aekit.experiments.cli", "aekit.traverse_cli", "aekit.serve.cli", "aekit.anomaly", "aekit.export", "aekit.segment",
                            "aekit.bench")

COMMANDS = {
    "train": cmd_train, "evaluate": cmd_evaluate, "reconstruct": cmd_reconstruct, "sample": cmd_sample,
    "interpolate": cmd_interpolate, "encode": cmd_encode, "demo": cmd_demo, "models": cmd_models,
    "datasets": cmd_datasets,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    try:
        return args.func(args)
    except AekitError as e:
        sys.stderr.write(f"aekit: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("aekit: interrupted; a training run continues with `aekit train --resume RUN`\n")
        return 130
