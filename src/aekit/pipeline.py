"""The top-level job: train a model, evaluate it on the test split and write its report.

This is the only module that runs the layers in sequence (train → evaluate → viz); each layer below knows
nothing of the ones above it.  ``aekit.train(...)`` and ``aekit train`` call :func:`train`.  The run
directory's lock is held from before anything is written until the completeness marker (``complete.json``)
is written, last, after the evaluation and the report: a run killed at any point before is incomplete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import DataConfig
from .fileio import atomic_write_text, dumps_json
from .train import distributed
from .train.callbacks import Callback
from .train.run import EVALUATION, Run, mark_complete, train_run

__all__ = ["train"]


def _recorded_option(run_dir: Path, name: str) -> Any:
    """A trainer option recorded in a run's config.json (None when it cannot be read: resuming reports why)."""
    try:
        return json.loads((run_dir / "config.json").read_text()).get("train", {}).get(name)
    except (OSError, ValueError, AttributeError):
        return None


def train(
    model: str = "ae",
    data: str | DataConfig = "digits",
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    report: bool = True,
    evaluate: bool = True,
    callbacks: Sequence[Callback] = (),
    **options: Any,
) -> Run:
    """Train a registered model and (with ``out``) write its run directory, evaluation and report.

    Options are config fields of the model, the trainer or the data, e.g.
    ``aekit.train("vae", "digits", "runs/vae", latent_dim=8, beta=4, epochs=30)``.
    ``resume=RUN`` continues a run from its last checkpoint with its saved configuration (``epochs`` may be
    raised to train longer, ``lr`` lowered after a divergence).  ``callbacks`` are extra trainer callbacks.
    """
    extra = list(callbacks)
    run_dir = Path(resume) if resume is not None else Path(out) if out is not None else None
    tensorboard = options.get("tensorboard")
    if tensorboard is None and resume is not None:  # a resumed run goes on logging where it logged
        tensorboard = _recorded_option(Path(resume), "tensorboard")
    if tensorboard and run_dir is not None and distributed.is_main():
        from .viz.tblog import LOG_DIR, TensorBoardLog

        extra.append(TensorBoardLog(run_dir / LOG_DIR))  # checks the package before anything is written
    with contextlib.ExitStack() as lock:  # the run directory's lock, held until the marker is written
        run, dataset = train_run(model, data, out, resume=resume, overwrite=overwrite, callbacks=extra, hold=lock,
                                 **options)
        try:
            if run.path is None or not distributed.is_main():
                return run
            if evaluate:
                from .evaluate import evaluate as _evaluate

                run.evaluation = _evaluate(run.model, dataset, "test")
                atomic_write_text(run.path / EVALUATION, dumps_json(run.evaluation, indent=2))
            if report:
                from .viz.report import write_report

                main = run.model.main_stage  # the main fit's rows: a staged model's other stages have their own
                final = [r for r in run.metrics if r.get("stage", main) == main]
                write_report(dataclasses.replace(run, metrics=final), dataset)
            mark_complete(run.path, evaluation=bool(evaluate), report=bool(report))
            return run
        finally:
            distributed.finish()
