"""What several commands share: the parser class, -v/-q, the data flags, loading a run's data, PNG outputs.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..errors import AekitError

log = logging.getLogger("aekit")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # one line, exit 2
        self.exit(2, f"aekit: error: {message} (see `{self.prog} --help`)\n")


def add_verbosity(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    """-v / -q; on a sub-command (``suppress``) they only set what is given, so both positions work."""
    default: Any = argparse.SUPPRESS if suppress else False
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings only, no progress bars")


SPLITS = ("train", "val", "test")


def add_data_flags(p: argparse.ArgumentParser, *, split_help: str | None = None) -> None:
    """``--data`` (default: the run's own data), ``--data-dir`` and ``--split`` of commands that read a run."""
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="dataset spec: digits, fashion-mnist, mnist, kmnist, idx:DIR, images:DIR, npy:F, npz:F, "
                        "csv:F, ... (`aekit datasets`; default: the run's own data)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="where MNIST-family files are looked up / cached")
    p.add_argument("--split", default="test", choices=SPLITS, help=split_help or "data split (default test)")


def dataset_for(run: Any, args: argparse.Namespace) -> Any:
    """The run's data, or ``--data`` / ``--data-dir`` instead; its samples must have the model's shape."""
    import dataclasses

    from ..data import load_data

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


def check_png(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise AekitError(f"--out {path}: write a .png file, e.g. --out figure.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def summary(run: Any) -> None:
    ev = run.evaluation or {}
    figures = ", ".join(f"{k}={v:.4g}" for k, v in ev.items() if isinstance(v, float))
    log.info("run written to %s  (test: %s)", run.path, figures)
    if run.path is not None and (run.path / "report.html").exists():
        log.info("report: %s", (run.path / "report.html").resolve())
