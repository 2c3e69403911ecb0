"""Training: the trainer (a short loop plus callbacks), checkpoints, a model's own stages and run directories.

``aekit.train(...)`` — the whole job with evaluation and report — is :func:`aekit.pipeline.train`; this layer
trains and writes ``config.json``, ``metrics.csv``, checkpoints and ``model.safetensors``
(:func:`aekit.train.run.train_run`).
"""

from .callbacks import (
                        Callback,
                        Checkpoint,
                        DivergenceGuard,
                        EarlyStopping,
                        LambdaCallback,
                        MetricsCSV,
                        Progress,
                        read_metrics,
)
from .config import TrainConfig
from .run import Run, load, load_run, read_config, split_options, train_run
from .stages import run_stages
from .trainer import Trainer, default_callbacks, fit, mean_losses, resolve_device

__all__ = ["Callback", "Checkpoint", "DivergenceGuard", "EarlyStopping", "LambdaCallback", "MetricsCSV", "Progress",
           "Run", "TrainConfig", "Trainer", "default_callbacks", "fit", "load", "load_run", "mean_losses",
           "read_config", "read_metrics", "resolve_device", "run_stages", "split_options", "train_run"]
