"""The registry of data sources.  Each loader is ``(argument, DataConfig) -> Dataset``."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..registry import Registry
from .base import DataConfig, Dataset, Source, make_dataset


def load_digits(arg: str | None, cfg: DataConfig) -> Dataset:
    """scikit-learn's 1,797 bundled 8×8 digits (values 0..16), rescaled to uint8 0..255."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # (N, 8, 8)
    y = d.target.astype(np.int64)
    return make_dataset("digits", "image", cfg, x, y, classes=tuple(str(i) for i in range(10)))


SOURCES: Registry[Source] = Registry("dataset", DataError)
SOURCES.register("digits", Source(load_digits, False, "scikit-learn's bundled 8x8 digits (embedded default)"))

# The loaders below live in their own modules and register themselves here.
from . import arrays as _arrays  # noqa: E402
from . import cells as _cells  # noqa: E402
from . import dsprites as _dsprites  # noqa: E402
from . import idx as _idx  # noqa: E402
from . import images as _images  # noqa: E402
from . import segdir as _segdir  # noqa: E402

for _module in (_idx, _images, _arrays, _dsprites, _cells, _segdir):
    for _name, _source in _module.SOURCES.items():
        SOURCES.register(_name, _source)
