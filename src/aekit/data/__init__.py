"""Data sources selected by a spec string: ``NAME`` or ``PREFIX:ARGUMENT``.

====================  =====================================================================
``digits``            scikit-learn's bundled 8×8 digits (the embedded default, no download)
``fashion-mnist``     Fashion-MNIST IDX files (local dirs, then checked download)
``mnist``/``kmnist``  same, for MNIST / Kuzushiji-MNIST
``idx:DIR``           any folder with the four MNIST-format IDX files (optionally .gz)
``images:DIR``        PNG/JPEG files; labels from sub-folder names when present
``npy:FILE``          a NumPy array (N, ...) — uint8 → images, floats → table
``npz:FILE``          an .npz with ``x`` (and optionally ``y``), or its first array
``csv:FILE``          numeric table, standardised with training statistics
``dsprites``          procedural dSprites (737,280 64×64 sprites, 5 factors as labels)
``cells``             procedural microscopy-like cells with segmentation masks
``seg:DIR``           segmentation pairs DIR/images/NAME.png|jpg + DIR/masks/NAME.png
====================  =====================================================================

The registry :data:`SOURCES` maps the name/prefix to a loader ``(argument, DataConfig) -> Dataset``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import DataError
from ..registry import did_you_mean
from .base import DataConfig, Dataset, Split, iterate_batches, make_dataset, to_float
from .batch import Batch, BatchTransform, DataShape, eval_batch_size
from .sources import SOURCES

__all__ = [
    "Batch",
    "BatchTransform",
    "DataConfig",
    "DataShape",
    "Dataset",
    "Split",
    "SOURCES",
    "iterate_batches",
    "load_data",
    "make_dataset",
    "parse_spec",
    "eval_batch_size",
    "to_float",
]


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"idx:/data"`` → ``("idx", "/data")``; ``"digits"`` → ``("digits", None)``."""
    name, sep, arg = spec.partition(":")
    name = name.strip().lower()
    if name not in SOURCES:
        path_hint = _path_hint(spec)
        if path_hint:
            raise DataError(f"unknown dataset {spec!r}: {path_hint}")
        raise DataError(f"unknown dataset {spec!r}: {did_you_mean(name, sorted(SOURCES))}")
    needs_arg = SOURCES[name].needs_arg
    if needs_arg and not arg:
        raise DataError(f"dataset '{name}' needs a path: use --data {name}:PATH")
    if not needs_arg and sep:
        raise DataError(f"dataset '{name}' takes no argument: use --data {name}")
    return name, (arg or None)


_ARRAY_PREFIXES = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".tsv": "csv", ".txt": "csv"}


def _folder_prefix(folder: Path) -> str:
    """The source a folder looks like: ``seg`` (images/ + masks/), ``idx`` (MNIST-format files) or ``images``."""
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        return "seg"
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return "images"
    if any("-ubyte" in n for n in names):
        return "idx"
    return "images"


def _path_hint(spec: str) -> str:
    """For a spec that is an existing path without a ``prefix:``: the spec to use instead (else "")."""
    try:
        path = Path(spec).expanduser()
        if path.is_dir():
            return f"{spec} is a folder: use --data {_folder_prefix(path)}:{spec}"
        if path.is_file():
            prefix = _ARRAY_PREFIXES.get(path.suffix.lower())
            if prefix is not None:
                return f"{spec} is a file: use --data {prefix}:{spec}"
            return f"{spec} is a file: give its folder as --data images:DIR, or an array as npy:, npz: or csv:FILE"
    except (OSError, ValueError):  # a name too long for a path, a NUL byte, ...
        return ""
    return ""


def load_data(cfg: DataConfig | str) -> Dataset:
    """Load the dataset described by ``cfg`` (a :class:`DataConfig` or a spec string)."""
    if isinstance(cfg, str):
        cfg = DataConfig(spec=cfg)
    name, arg = parse_spec(cfg.spec)
    _check_generated_size(name, arg, cfg)
    loader: Callable = SOURCES[name]
    return loader(arg, cfg)


def _check_generated_size(name: str, arg: str | None, cfg: DataConfig) -> None:
    """Sources whose size follows from the options (``cells``, ``seg:`` resized by --image-size): refuse what
    cannot fit in memory before generating or reading anything.  (``images:`` checks its own scan.)"""
    from .stream import check_memory

    fix = "pass a smaller --image-size (or --cells-count)"
    if name == "cells":
        side = cfg.image_size or 128
        # uint8 image + mask per sample, plus one image's float64 working arrays while rendering
        check_memory(cfg.cells_count * side * side * 2 + side * side * 64,
                     f"--data cells with {cfg.cells_count} images of {side}×{side}", fix, error=DataError)
    elif name == "seg" and arg and cfg.image_size:
        try:
            n = sum(1 for p in (Path(arg).expanduser() / "images").iterdir() if p.is_file())
        except OSError:
            return  # the loader reports a missing folder
        check_memory(n * cfg.image_size**2 * 4, f"--data seg:{arg} with {n} images resized to "
                     f"{cfg.image_size}×{cfg.image_size}", fix, error=DataError)
