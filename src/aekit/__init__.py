"""aekit: build, train, evaluate and explore autoencoders.

>>> import aekit
>>> run = aekit.train("vae", "digits", "runs/vae", latent_dim=8, epochs=5)   # doctest: +SKIP
>>> model = aekit.load("runs/vae")                                           # doctest: +SKIP
>>> model.sample(16)                                                         # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import evaluate  # noqa: E402  (a callable module: aekit.evaluate(model, data), aekit.evaluate.likelihood)
from .data import DataConfig, load_data  # noqa: E402
from .hub import from_pretrained, save_pretrained  # noqa: E402
from .models import MODELS, build_model  # noqa: E402
from .train import Run, TrainConfig, load, load_run, train  # noqa: E402

__all__ = [
    "MODELS", "DataConfig", "Run", "TrainConfig", "__version__", "build_model", "evaluate", "from_pretrained",
    "load", "load_data", "load_run", "save_pretrained", "train",
]
