"""A staged model's own training stages (``model.staged``: stacked-ae's greedy layer-wise pretraining).

:func:`run_stages` trains each :class:`~aekit.models.base.Stage` the model yields, in order, before the main
fit.  With a run directory every stage's rows go into ``metrics.csv`` (column ``stage``) and the weights after
the last stage into ``pretrained.safetensors``; on resume a run whose main fit has a checkpoint, or whose
stages finished, is not trained through its stages again (an unfinished staging restarts: it is deterministic).
The global random state is left as it was, so the main fit starts from the same state either way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..data import Dataset
from ..models.base import Autoencoder
from . import distributed
from .callbacks import append_metrics
from .checkpoint import atomic_save_tensors, load_state, read_tensors
from .config import TrainConfig
from .trainer import CHECKPOINT, METRICS, PRETRAINED, fit, replace_epochs

log = logging.getLogger(__name__)


def run_stages(model: Autoencoder, data: Dataset, cfg: TrainConfig, run_dir: Path | None = None, *,
               resume: bool = False) -> list[dict[str, Any]]:
    """Train ``model``'s own stages; returns their metrics rows (each with its ``stage``)."""
    if not model.staged:
        return []
    if run_dir is not None and resume:
        if (Path(run_dir) / CHECKPOINT).exists():
            return []  # the main fit has started: its checkpoint holds the weights
        if (Path(run_dir) / PRETRAINED).exists():
            load_state(model, read_tensors(Path(run_dir) / PRETRAINED)[0], str(Path(run_dir) / PRETRAINED))
            log.info("training stages already finished: loaded %s", Path(run_dir) / PRETRAINED)
            return []
    writes = run_dir if run_dir is not None and distributed.is_main() else None  # rank 0 alone writes
    if writes is not None:
        (Path(writes) / METRICS).unlink(missing_ok=True)  # an unfinished staging starts over
    rows: list[dict[str, Any]] = []
    ran = False
    with torch.random.fork_rng(devices=[]):
        for stage in model.stages(data):
            ran = True
            # no run directory for a stage's own fit: a stage checkpoint must never pass for the main fit's
            stage_rows = [{"stage": stage.name, **r} for r in
                          fit(stage.model, stage.data, replace_epochs(cfg, stage.epochs), None,
                              transforms=stage.transforms)]
            rows += stage_rows
            if writes is not None:
                append_metrics(Path(writes), stage_rows)
    if ran and writes is not None:
        atomic_save_tensors(model.state_dict(), Path(writes) / PRETRAINED, {"aekit_stage": "pretrained"})
    return rows
