"""Experiments: one command each, turning a claim of the notes into a table, plots and a stated finding.

``aekit experiment NAME --data SPEC --out DIR`` runs ``EXPERIMENTS[NAME]``.  Every experiment writes
``results.csv``, ``results.md`` (the same table in Markdown), its PNG figures and ``summary.md`` (the finding in
numbers) into ``DIR`` through :class:`ExperimentResult`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..registry import Registry
from ..train.checkpoint import atomic_write_text

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ExperimentContext:
    """What every experiment receives."""

    data: str  # dataset spec
    out: Path  # output directory (created)
    quick: bool = False  # tiny settings for tests / smoke runs (seconds, not minutes)
    epochs: int | None = None  # override the experiment's default number of epochs
    seed: int = 0
    progress: bool = True
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # extra --set key=value pairs

    def run_dir(self, name: str) -> Path:
        """A sub-directory for one trained run of the experiment."""
        return self.out / "runs" / name

    def config(self, cls: type, quick: dict[str, Any], name: str, epoch_fields: tuple[str, ...] = ("epochs",)) -> Any:
        """The experiment's typed config: its defaults, then ``quick`` (with ``--quick``), then ``--set`` options,
        then ``--epochs`` into ``epoch_fields``; unknown keys and wrong types are one-line errors."""
        from ..config import from_dict

        values: dict[str, Any] = {**(quick if self.quick else {}), **self.options}
        if self.epochs is not None:
            values.update(dict.fromkeys(epoch_fields, self.epochs))
        return from_dict(cls, values, what=f"experiment {name} (--set)")


@dataclasses.dataclass
class ExperimentResult:
    name: str
    rows: list[dict[str, Any]]  # the table
    summary: str  # the finding, in numbers (Markdown)
    figures: list[str] = dataclasses.field(default_factory=list)  # PNG file names inside out
    # anything else worth keeping (JSON); "seconds": the experiment timed itself (from its start, data load
    # included) and its summary says so; run_experiment adds "wall_seconds" and "threads" to every result
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(out / "results.csv", buf.getvalue())
        atomic_write_text(out / "results.md", markdown_table(self.rows, keys))
        figs = "".join(f"\n![{f}]({f})\n" for f in self.figures)
        wall, threads = self.extra.get("wall_seconds"), self.extra.get("threads")
        # an experiment that times itself (extra "seconds") states its wall time in its summary already
        timing = (f"\n\nWall time of the whole experiment: {wall:.0f} s (data load included; torch threads: "
                  f"{threads})." if wall is not None and "seconds" not in self.extra else "")
        atomic_write_text(out / "summary.md", f"# {self.name}\n\n{self.summary.strip()}{timing}\n\n"
                                              f"{markdown_table(self.rows, keys)}{figs}")
        if self.extra:
            atomic_write_text(out / "extra.json", json.dumps(self.extra, indent=2, default=str))


# Training length floor for small data sets (see enough_steps); Fashion-MNIST's defaults are above it already
MIN_STEPS = 5000


def epoch_fields(cls: Any) -> list[str]:
    """A config's training-length fields governed by its ``min_steps``: every ``…epochs`` field but the LR
    warm-up (not a length) and those with a floor of their own (``classifier_epochs`` has
    ``classifier_min_steps``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return [f.name for f in dataclasses.fields(cls) if f.name.endswith("epochs") and f.name != "lr_warmup_epochs"
            and (f.name == "epochs" or f.name.replace("epochs", "min_steps") not in names)]


def judged_images(ctx: ExperimentContext, cfg: Any, data_cfg: Any, name: str, *,
                  unit: bool = False) -> tuple[Any, Any]:
    """The experiment's labelled image data (``data_cfg``; in [0, 1] with ``unit``) and the
    domain classifier that judges its generated images (trained once per output folder, ``cfg.classifier_epochs``
    / ``cfg.classifier_min_steps``); a one-line DataError for other data."""
    from ..data import load_data
    from ..errors import DataError
    from ..evaluate.classifier import FILE, load_or_train

    data = load_data(data_cfg)
    if (data.kind != "image" or data.train.y is None or data.train.y.ndim != 1 or data.test.y is None
            or (unit and not data.in_unit_interval)):
        what = "labelled images in [0, 1]" if unit else "labelled images"
        raise DataError(f"{name} needs {what} (its classifier learns the classes); {data.name!r} is not: use e.g. "
                        "--data fashion-mnist or digits")
    clf = load_or_train(ctx.out / FILE, data, epochs=cfg.classifier_epochs, min_steps=cfg.classifier_min_steps,
                        seed=ctx.seed)
    return data, clf


def enough_steps(cfg: Any, ctx: ExperimentContext, n_train: int) -> Any:
    """``cfg`` with its default epoch counts raised so that each training run takes at least ``cfg.min_steps``
    optimiser steps: 20 epochs are 8,600 steps on Fashion-MNIST but 220 on the 8×8 digits, far from converged.

    Epoch counts given explicitly (``--epochs`` or ``--set ...epochs=``) are kept.  Pretraining and
    fine-tuning epochs (stacked) are scaled by one factor, so their ratio stays the configured one.
    """
    if cfg.min_steps <= 0 or ctx.epochs is not None:
        return cfg
    names = [f for f in epoch_fields(cfg) if f not in ctx.options]
    changes: dict[str, int] = {}
    if "finetune_epochs" in names and "pretrain_epochs" in names:
        steps = math.ceil(n_train / cfg.batch_size) * cfg.finetune_epochs
        factor = max(1, math.ceil(cfg.min_steps / steps))
        changes = {"pretrain_epochs": cfg.pretrain_epochs * factor, "finetune_epochs": cfg.finetune_epochs * factor}
    else:
        for name in names:
            bs = getattr(cfg, name.replace("epochs", "batch_size"), cfg.batch_size)
            changes[name] = max(getattr(cfg, name), math.ceil(cfg.min_steps / math.ceil(n_train / bs)))
    changed = {k: v for k, v in changes.items() if v != getattr(cfg, k)}
    if changed:
        log.info("small data (%d training samples): epochs raised to reach %d steps: %s", n_train, cfg.min_steps,
                 ", ".join(f"{k} {getattr(cfg, k)} → {v}" for k, v in changed.items()))
    return dataclasses.replace(cfg, **changed)


def steps_of(n_train: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps of a training run: batches per epoch × epochs."""
    return math.ceil(n_train / batch_size) * epochs


def too_short(ctx: ExperimentContext, done: int | None = None, needed: int = MIN_STEPS,
              unit: str = "optimiser steps") -> str:
    """Why a run is too short to show a finding that needs ``needed`` ``unit`` ("" when it is long enough):
    a ``--quick`` smoke run, or ``done`` < ``needed``.  Pass it as ``short`` to :func:`finding`."""
    if ctx.quick:
        return "a --quick smoke run"
    if done is not None and done < needed:
        return f"{done:,} {unit}, fewer than the {needed:,} the finding needs"
    return ""


def finding(claim: str, holds: bool, evidence: str, *, negation: str, short: str = "") -> str:
    """One summary sentence that states a finding only where its own numbers show it.

    ``holds`` is the finding's test against a threshold that ``evidence`` (the numbers) states, e.g.
    ``finding("the decoder spans PCA's subspace", angle < 5, f"largest angle {angle:.1f}° (threshold 5°)",
    negation="the decoder does not span PCA's subspace")``.  Where the numbers fall short of the threshold the
    sentence is ``negation``, or, when the run is too short to show the finding (``short``, from
    :func:`too_short`), "This run is too short to tell whether …" instead: a smoke run neither confirms nor
    refutes a claim that needs a converged model.
    """
    if holds:
        text = f"{claim}: {evidence}"
    elif short:
        text = f"this run ({short}) is too short to tell whether {claim}: {evidence}"
    else:
        text = f"{negation}: {evidence}"
    return text[:1].upper() + text[1:] + "."


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]], keys: list[str] | None = None) -> str:
    if not rows:
        return "(no rows)\n"
    keys = keys or list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# name -> function(ctx) -> ExperimentResult.  Feature modules register themselves below.
EXPERIMENTS: Registry[Callable[[ExperimentContext], ExperimentResult]] = Registry("experiment")


def register(name: str) -> Callable:
    def deco(fn: Callable[[ExperimentContext], ExperimentResult]) -> Callable:
        EXPERIMENTS.register(name, fn)
        return fn

    return deco


def run_experiment(name: str, ctx: ExperimentContext) -> ExperimentResult:
    _load_all()
    experiment = EXPERIMENTS.get_entry(name)
    ctx.out.mkdir(parents=True, exist_ok=True)
    import torch

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if ctx.quick:  # tiny models: one thread is many times faster than two contending ones (a loaded 2-core CPU)
        torch.set_num_threads(1)
        try:
            result = experiment(ctx)
        finally:
            torch.set_num_threads(threads)
    else:
        result = experiment(ctx)
    # one wall time for every experiment, measured the same way: the whole call, data load and figures included
    wall = time.perf_counter() - t0
    result.extra = {**result.extra, "wall_seconds": round(wall, 1), "threads": 1 if ctx.quick else threads}
    log.info("experiment %s took %.0f s (data load included, %d threads)", name, wall, result.extra["threads"])
    result.write(ctx.out)
    return result


# Modules defining experiments (imported lazily so `import aekit` stays light).
EXPERIMENT_MODULES: tuple[str, ...] = ("aekit.experiments.anomaly", "aekit.experiments.vae_geometry",
                                       "aekit.experiments.seed_family", "aekit.experiments.segmentation",
                                       "aekit.experiments.contractive", "aekit.experiments.linear_vae",
                                       "aekit.experiments.likelihood_family", "aekit.experiments.cvae",
                                       "aekit.experiments.vqvae", "aekit.experiments.disentangle")


def _load_all() -> None:
    import importlib

    for m in EXPERIMENT_MODULES:
        importlib.import_module(m)
