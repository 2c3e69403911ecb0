"""aekit: build, train, evaluate and explore autoencoders.

>>> import aekit
>>> run = aekit.train("vae", "digits", "runs/vae", latent_dim=8, epochs=5)   # doctest: +SKIP
>>> model = aekit.load("runs/vae")                                           # doctest: +SKIP
>>> model.sample(16)                                                         # doctest: +SKIP

The public names are imported on first use (PEP 562), so ``import aekit`` — and ``aekit --help`` — do not
import torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .version import __version__

# public name -> (module, attribute; None: the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "evaluate": ("aekit.evaluate", None),  # a callable module: aekit.evaluate(model, data), aekit.evaluate.likelihood
    "DataConfig": ("aekit.data", "DataConfig"),
    "load_data": ("aekit.data", "load_data"),
    "from_pretrained": ("aekit.hub", "from_pretrained"),
    "save_pretrained": ("aekit.hub", "save_pretrained"),
    "MODELS": ("aekit.models", "MODELS"),
    "build_model": ("aekit.models", "build_model"),
    "Run": ("aekit.train", "Run"),
    "TrainConfig": ("aekit.train", "TrainConfig"),
    "load": ("aekit.train", "load"),
    "load_run": ("aekit.train", "load_run"),
    "train": ("aekit.pipeline", "train"),
}

if TYPE_CHECKING:
    from . import evaluate
    from .data import DataConfig, load_data
    from .hub import from_pretrained, save_pretrained
    from .models import MODELS, build_model
    from .pipeline import train
    from .train import Run, TrainConfig, load, load_run


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'aekit' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    helpers = {"annotations", "importlib", "sys", "types", "TYPE_CHECKING", "Any"}  # this file's own imports
    own = (n for n in globals() if n not in helpers and (n.startswith("__") or not n.startswith("_")))
    return sorted({*_LAZY, *own})


class _Package(types.ModuleType):
    """``aekit.train`` is the function: importing the ``aekit.train`` sub-package (which binds the sub-package
    as an attribute of its parent) must not replace it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "MODELS", "DataConfig", "Run", "TrainConfig", "__version__", "build_model", "evaluate", "from_pretrained",
    "load", "load_data", "load_run", "save_pretrained", "train",
]
