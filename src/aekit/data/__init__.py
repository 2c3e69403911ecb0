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

import difflib
from collections.abc import Callable

from ..errors import DataError
from .base import DataConfig, Dataset, Split, iterate_batches, make_dataset, to_float
from .sources import SOURCES

__all__ = [
    "DataConfig",
    "Dataset",
    "Split",
    "SOURCES",
    "iterate_batches",
    "load_data",
    "make_dataset",
    "parse_spec",
    "to_float",
]


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"idx:/data"`` → ``("idx", "/data")``; ``"digits"`` → ``("digits", None)``."""
    name, sep, arg = spec.partition(":")
    name = name.strip().lower()
    if name not in SOURCES:
        close = difflib.get_close_matches(name, list(SOURCES), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "choose one of " + ", ".join(sorted(SOURCES))
        raise DataError(f"unknown dataset {spec!r}: {hint}")
    needs_arg = SOURCES[name].needs_arg
    if needs_arg and not arg:
        raise DataError(f"dataset '{name}' needs a path: use --data {name}:PATH")
    if not needs_arg and sep:
        raise DataError(f"dataset '{name}' takes no argument: use --data {name}")
    return name, (arg or None)


def load_data(cfg: DataConfig | str) -> Dataset:
    """Load the dataset described by ``cfg`` (a :class:`DataConfig` or a spec string)."""
    if isinstance(cfg, str):
        cfg = DataConfig(spec=cfg)
    name, arg = parse_spec(cfg.spec)
    loader: Callable = SOURCES[name]
    return loader(arg, cfg)
