"""A staged model's own training stages (``model.staged``: stacked-ae's greedy layer-wise pretraining, a
VQ-VAE's prior).

:func:`run_stages` trains each :class:`~aekit.models.base.Stage` the model yields, in order, before the main
fit (those with ``after`` are left to :func:`run_after_stages`).  With a run directory every stage's rows go
into ``metrics.csv`` (column ``stage``) and the weights after the last stage into ``pretrained.safetensors``; on
resume a run whose main fit has a checkpoint, or whose stages finished, is not trained through its stages
again (an unfinished staging restarts: it is deterministic).  The global random state is left as it was, so the
main fit starts from the same state either way.

:func:`run_after_stages` trains the ``after`` stages once the main fit has finished, each with its own rows in
``metrics.csv``.  A stage trains exactly its model's parameters: they are unfrozen (``requires_grad``) for its
fit and frozen again after (the VQ-VAE keeps its prior frozen in the main fit).  The weights after them go into
``after_stages.safetensors``, tagged with a SHA-256 of the main fit's final weights and of the configs; a
resumed run whose main fit has nothing left to train loads them instead of training again when the tag matches
(the main fit is the one they were trained from), and otherwise the after stages restart from the main fit's
weights (their old rows are dropped first): a kill during the prior stage resumes to the same weights and rows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..data import Dataset
from ..models.base import Autoencoder
from . import distributed
from .callbacks import append_metrics, read_metrics, write_metrics
from .checkpoint import atomic_save_tensors, load_state, read_tensors
from .config import TrainConfig
from .trainer import CHECKPOINT, METRICS, PRETRAINED, fit, replace_epochs

log = logging.getLogger(__name__)

AFTER = "after_stages.safetensors"  # a model's weights after the stages that follow its main fit


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
            if stage.after:  # after the main fit: run_after_stages; it comes last
                break
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


def _fingerprint(model: Autoencoder, cfg: TrainConfig) -> str:
    """SHA-256 of the model's weights (in state-dict order) and of its and the trainer's configs."""
    import hashlib
    import json

    from ..config import to_dict

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(v.dtype).encode() + str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for c in (model.config, cfg):
        try:
            h.update(json.dumps(to_dict(c), sort_keys=True, default=str).encode())
        except (TypeError, ValueError):  # a config that is not a dataclass: the weights alone
            pass
    return h.hexdigest()


def run_after_stages(model: Autoencoder, data: Dataset, cfg: TrainConfig, run_dir: Path | None = None, *,
                     resume: bool = False) -> list[dict[str, Any]]:
    """Train ``model``'s ``after`` stages (once its main fit has finished); returns their metrics rows."""
    if not model.staged:
        return []
    stages = [s for s in model.stages(data) if s.after]
    if not stages:
        return []
    writes = run_dir if run_dir is not None and distributed.is_main() else None  # rank 0 alone writes
    main_fit = _fingerprint(model, cfg)
    if run_dir is not None and resume and (Path(run_dir) / AFTER).exists():
        tensors, meta = read_tensors(Path(run_dir) / AFTER)
        if meta.get("aekit_main_fit") == main_fit:
            load_state(model, tensors, str(Path(run_dir) / AFTER))
            log.info("stages after the main fit already finished: loaded %s", Path(run_dir) / AFTER)
            return []
    names = {s.name for s in stages}
    if writes is not None and (Path(writes) / METRICS).exists():  # an unfinished (or outdated) attempt's rows go
        write_metrics(Path(writes) / METRICS, [r for r in read_metrics(Path(writes) / METRICS)
                                               if r.get("stage") not in names])
    rows: list[dict[str, Any]] = []
    with torch.random.fork_rng(devices=[]):
        for stage in stages:
            params = list(stage.model.parameters())
            frozen = [p for p in params if not p.requires_grad]
            for p in frozen:
                p.requires_grad_(True)
            try:
                stage_rows = [{"stage": stage.name, **r} for r in
                              fit(stage.model, stage.data, replace_epochs(cfg, stage.epochs), None,
                                  transforms=stage.transforms)]
            finally:
                for p in frozen:
                    p.requires_grad_(False)
            rows += stage_rows
            if writes is not None:
                append_metrics(Path(writes), stage_rows)
    if writes is not None:
        atomic_save_tensors(model.state_dict(), Path(writes) / AFTER,
                            {"aekit_stage": "after", "aekit_main_fit": main_fit})
    return rows
