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

log = logging.getLogger(__name__)

LOG_DIR = "tensorboard"
N_IMAGES = 8


class TensorBoardLog:
    def __init__(self, log_dir: Path, data: Dataset):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install 'aekit[tensorboard]' "
                              "(or drop --tensorboard)") from None
        self.writer = SummaryWriter(str(log_dir))
        split = data.val if len(data.val) else data.train
        self.images = to_float(split.x[:N_IMAGES]) if data.kind == "image" and len(split) else None

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
        from ..viz.plots import make_grid

        was_training = model.training
        model.eval()
        x = self.images.to(model.device)
        recon = model.reconstruct(x).float()
        model.train(was_training)
        if tuple(recon.shape) != tuple(x.shape):  # e.g. a segmentation model's class scores: no image pair
            return
        grid = make_grid(torch.cat([x, recon]).cpu(), nrow=len(x))
        self.writer.add_image("reconstructions", grid, epoch, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def open_tensorboard(enabled: bool, run_dir: Path | None, data: Dataset) -> TensorBoardLog | None:
    """A writer for ``run_dir/tensorboard`` when ``enabled`` (and there is a run directory), else None."""
    if not enabled:
        return None
    if run_dir is None:
        log.warning("--tensorboard needs a run directory (--out): nothing is logged")
        return None
    return TensorBoardLog(Path(run_dir) / LOG_DIR, data)
