"""``--tensorboard``: the loss terms of every epoch and a grid of reconstructions, for TensorBoard.

Events go to ``RUN/tensorboard`` (``tensorboard --logdir RUN/tensorboard``).  Scalars are tagged
``TERM/SPLIT`` (``loss/train``, ``loss/val``, ``kl/val``, ...) so TensorBoard draws train and validation of a
term in one chart, plus ``lr``; the image ``reconstructions`` shows 8 validation inputs (top row) above their
reconstructions.  Needs the ``tensorboard`` package (``pip install 'aekit[tensorboard]'``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..data import Dataset, to_float
from ..errors import ConfigError
from ..train.callbacks import Callback

log = logging.getLogger(__name__)

LOG_DIR = "tensorboard"
N_IMAGES = 8


class TensorBoardLog(Callback):
    """The ``--tensorboard`` trainer callback (viz layer: it draws reconstructions); events go to ``log_dir``."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install 'aekit[tensorboard]' "
                              "(or drop --tensorboard)") from None
        self.log_dir = Path(log_dir)
        self._writer_cls = SummaryWriter
        self.writer: Any = None
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None  # their class ids (a conditional model reconstructs with them)

    def on_fit_start(self, trainer: Any) -> None:
        self.writer = self._writer_cls(str(self.log_dir))
        data: Dataset = trainer.data
        split = data.val if len(data.val) else data.train
        self.images = to_float(split.x[:N_IMAGES]) if data.kind == "image" and len(split) else None
        self.labels = split.y[:N_IMAGES] if split.y is not None and split.y.ndim == 1 else None

    def on_epoch_end(self, trainer: Any, row: dict[str, Any]) -> None:
        self.log_epoch(trainer.model, row, int(row["epoch"]))

    def on_fit_end(self, trainer: Any) -> None:
        self.close()

    def on_exception(self, trainer: Any, error: BaseException) -> None:
        self.close()

    @torch.no_grad()
    def log_epoch(self, model: Any, row: dict[str, Any], epoch: int) -> None:
        for key, value in row.items():
            if not isinstance(value, (int, float)):
                continue
            split, _, term = key.partition("_")
            if split in ("train", "val") and term:
                self.writer.add_scalar(f"{term}/{split}", value, epoch)
            elif key == "lr":
                self.writer.add_scalar("lr", value, epoch)
        if self.images is not None:
            self._reconstructions(model, epoch)
        self.writer.flush()

    def _reconstructions(self, model: Any, epoch: int) -> None:
        from .plots import make_grid

        assert self.images is not None  # called only when there are images to show
        was_training = model.training
        model.eval()
        x = self.images.to(model.device)
        recon = model.reconstruct(x, **model.label_kwargs(self.labels)).float()
        model.train(was_training)
        if tuple(recon.shape) != tuple(x.shape):  # e.g. a segmentation model's class scores: no image pair
            return
        grid = make_grid(torch.cat([x, recon]).cpu(), nrow=len(x))
        self.writer.add_image("reconstructions", grid, epoch, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
