"""What several commands share: the parser class, -v/-q, the data flags, loading a run's data, PNG outputs.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
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
    """The run's data (never downloaded, see :func:`aekit.train.run.recorded_data`), or ``--data`` / ``--data-dir``
    instead; its samples must have the model's shape."""
    import dataclasses

    from ..data import load_data
    from ..train.run import recorded_data

    cfg = recorded_data(run.data_config)  # the run's own data: local files only, never a download
    if getattr(args, "data", None):  # data asked for explicitly: downloaded when needed, as `aekit train` does
        cfg = dataclasses.replace(cfg, spec=args.data, download=run.data_config.download)
    if getattr(args, "data_dir", None):
        cfg = dataclasses.replace(cfg, data_dir=args.data_dir)
    data = load_data(cfg)
    if data.shape != run.model.input_shape:
        raise AekitError(
            f"data {cfg.spec!r} has samples of shape {data.shape} but the model expects {run.model.input_shape}: "
            "use data like the run's training data (e.g. --image-size at training time)"
        )
    return data


def _writable_ancestor(target: Path, flag: str, given: str) -> None:
    """The nearest existing ancestor of ``target`` must be a directory we can create entries in.  Checked by
    creating (and at once removing) a hidden temporary directory there: ``os.access`` says yes for root even on
    read-only or virtual file systems (``/proc``)."""
    import tempfile

    parent = target
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise AekitError(f"{flag} {given} is under {parent}, which is a file: choose another path")
    try:
        tempfile.TemporaryDirectory(dir=parent, prefix=".aekit-probe-").cleanup()
    except OSError as e:
        raise AekitError(f"{flag} {given}: cannot write into {parent} ({e.strerror or e}); choose a folder you can "
                         "write to") from None


def check_out_file(path: str, suffixes: Sequence[str], *, flag: str = "--out", also: Sequence[str] = ()) -> Path:
    """``--out FILE`` of a command that writes one file (and the files ``also`` names, suffixes of the same stem):
    the suffix is one of ``suffixes``, the path is not a directory and its folder can be created and written.
    Commands call it first, before they load a run or compute anything; the folder is created only when the
    output is written."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        names = " or ".join(suffixes)
        raise AekitError(f"{flag} {path}: write a {names} file, e.g. {flag} out{suffixes[0]}")
    for p in (out, *(out.with_suffix(s) for s in also)):
        if p.is_dir():
            raise AekitError(f"{flag} {path}: {p} is a directory; give a file name, e.g. {flag} {p / ('out' + out.suffix)}")
    _writable_ancestor(out.parent, flag, path)
    return out


def check_out_dir(path: str, *, flag: str = "--out") -> Path:
    """``--out DIR`` of a command that writes a folder: not a file, under no file, creatable and writable."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise AekitError(f"{flag} {path} is a file: choose a directory path")
    _writable_ancestor(out, flag, path)
    return out


def write_npy(path: Path, array: Any) -> None:
    """``np.save`` through the atomic-write helper (no half-written file under the real name)."""
    import numpy as np

    from ..fileio import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


# the rule of Autoencoder.label_index, for every --label CLASS help line
LABEL_HELP = ("A class name, or its id; when class names are numbers a bare number is a name (one naming no class is an error); id:N is always id N")

MAX_FIGURE_IMAGES = 10_000  # images in one PNG figure (a grid of 100 × 100); more cannot be looked at or drawn


def check_outputs(n: int, shape: Sequence[int], flag: str, *, png: bool) -> None:
    """A command about to decode ``n`` samples of ``shape``: refuse what cannot fit in memory (float32 outputs,
    twice: the tensor and its NumPy copy) or, for a PNG, more images than a figure can hold."""
    from ..data.stream import check_memory

    if png and n > MAX_FIGURE_IMAGES:
        raise AekitError(f"{flag} {n}: a PNG figure holds at most {MAX_FIGURE_IMAGES} images; ask for fewer "
                         "(or write .npy where the command offers it)")
    elements = n
    for d in shape:
        elements *= int(d)
    check_memory(elements * 4 * 2, f"{flag} {n} ({n} decoded samples of shape {tuple(shape)})",
                 f"ask for fewer with {flag}")


def check_png(path: str) -> Path:
    """``--out FILE.png``: checked (see :func:`check_out_file`) and its folder created."""
    out = check_out_file(path, (".png",))
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def summary(run: Any) -> None:
    ev = run.evaluation or {}
    figures = ", ".join(f"{k}={v:.4g}" for k, v in ev.items() if isinstance(v, float))
    log.info("run written to %s  (test: %s)", run.path, figures)
    if run.path is not None and (run.path / "report.html").exists():
        log.info("report: %s", (run.path / "report.html").resolve())
