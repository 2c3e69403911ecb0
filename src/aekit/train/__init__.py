"""Training: the model-agnostic trainer, checkpoints and run directories."""

from .run import Run, load, load_run, read_config, split_options, train
from .trainer import TrainConfig, fit, mean_losses, resolve_device

__all__ = ["Run", "TrainConfig", "fit", "load", "load_run", "mean_losses", "read_config", "resolve_device",
           "split_options", "train"]
