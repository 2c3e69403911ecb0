"""Runs: a run is a directory.

``config.json`` (resolved configs + aekit version), ``model.safetensors`` (final weights: its presence marks a
complete run), ``metrics.csv`` (one row per epoch), ``checkpoint.safetensors`` (resumable state),
``evaluation.json`` and ``report.html`` + PNGs.  Loading a run reads JSON and safetensors only: it never
executes code from the run directory.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ..config import field_types, from_dict, to_dict
from ..data import DataConfig, Dataset, load_data
from ..errors import ConfigError, RunError
from ..models import MODELS, build_model, get_spec
from ..models.base import Autoencoder
from . import distributed
from .checkpoint import atomic_save_tensors, atomic_write_text, load_state, read_tensors
from .trainer import CHECKPOINT, METRICS, PRETRAINED, TrainConfig, fit, read_metrics

log = logging.getLogger(__name__)

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
EVALUATION = "evaluation.json"


@dataclasses.dataclass
class Run:
    """A loaded (or freshly trained) run."""

    path: Path | None
    model_name: str
    model: Autoencoder
    data_config: DataConfig
    train_config: TrainConfig
    metrics: list[dict[str, float]]
    evaluation: dict[str, Any] | None = None

    def dataset(self) -> Dataset:
        return load_data(self.data_config)

    def config_dict(self) -> dict[str, Any]:
        from .. import __version__

        return {
            "aekit_version": __version__,
            "model": self.model_name,
            "model_config": to_dict(self.model.config),
            "data": to_dict(self.data_config),
            "train": to_dict(self.train_config),
        }


def split_options(model_name: str, options: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Route flat options (``latent_dim=8, epochs=3, image_size=32``) to model / train / data configs."""
    spec = get_spec(model_name)
    groups = ({}, {}, {})
    targets = (field_types(spec.config_cls), field_types(TrainConfig), field_types(DataConfig))
    for key, value in options.items():
        k = key.replace("-", "_")
        for g, t in zip(groups, targets):
            if k in t:
                g[k] = value
                break
        else:
            import difflib

            every = [n for t in targets for n in t if n not in ("input_shape", "spec")]
            close = difflib.get_close_matches(k, every, n=1)
            hint = f"did you mean --{close[0].replace('_', '-')}?" if close else "see `aekit train --help`"
            raise ConfigError(f"unknown option --{k.replace('_', '-')} for --model {model_name}: {hint}")
    if "input_shape" in groups[0]:
        raise ConfigError("input_shape is set from the data: drop it from the options")
    return groups


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: choose a directory path")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"run directory {out} already exists: choose a new --out, continue it with --resume {out}, "
                "or pass --overwrite"
            )
        for name in (CONFIG, WEIGHTS, METRICS, CHECKPOINT, EVALUATION, "best.safetensors", PRETRAINED):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def train(
    model: str = "ae",
    data: str | DataConfig = "digits",
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    report: bool = True,
    evaluate: bool = True,
    **options: Any,
) -> Run:
    """Train a registered model and (with ``out``) write its run directory.  Returns the :class:`Run`.

    Options are config fields of the model, the trainer or the data, e.g.
    ``aekit.train("vae", "digits", "runs/vae", latent_dim=8, beta=4, epochs=30)``.
    ``resume=RUN`` continues a run from its last checkpoint with its saved configuration (``epochs`` may be
    raised to train longer).
    """
    if resume is not None:
        return _resume(Path(resume), report=report, evaluate=evaluate, **options)
    m_opts, t_opts, d_opts = split_options(model, options)
    spec = get_spec(model)
    model_cfg = spec.make_config(m_opts, name=model)
    train_cfg = from_dict(TrainConfig, {**spec.train_defaults, **t_opts}, what="training")  # model defaults first
    if isinstance(data, DataConfig):
        data_cfg = dataclasses.replace(data, **d_opts) if d_opts else data
    else:
        data_cfg = from_dict(DataConfig, {"spec": data, **d_opts}, what="data")
    dataset = load_data(data_cfg)  # bad data fails here, before any directory exists
    model_cfg = model_cfg.resolve(dataset.shape, dataset.in_unit_interval)
    if getattr(spec.model_cls, "supervised", False):
        model_cfg = model_cfg.resolve_targets(dataset)  # e.g. segmentation: the class count of the masks
    if getattr(model_cfg, "finetune_epochs", None) is not None:  # stacked-ae: the trainer's run is the fine-tuning
        if "epochs" in t_opts and train_cfg.epochs != model_cfg.finetune_epochs:
            raise ConfigError("--finetune-epochs and --epochs both set the fine-tuning epochs: give only one")
        train_cfg = dataclasses.replace(train_cfg, epochs=model_cfg.finetune_epochs)
        model_cfg = dataclasses.replace(model_cfg, finetune_epochs=None)
    torch.manual_seed(train_cfg.seed)
    net = build_model(model, model_cfg)
    run = Run(Path(out) if out is not None else None, model, net, data_cfg, train_cfg, [])
    if run.path is not None and distributed.is_main():  # under torchrun, rank 0 alone writes the run directory
        _prepare_out(run.path, overwrite)
        atomic_write_text(run.path / CONFIG, json.dumps({**run.config_dict(), "created": _now()}, indent=2))
    return _train_and_finish(run, dataset, resume=False, report=report, evaluate=evaluate)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _resume(path: Path, *, report: bool, evaluate: bool, **options: Any) -> Run:
    cfg = read_config(path)
    allowed = {"epochs", "progress", "device", "log_every"}
    bad = [k for k in options if k.replace("-", "_") not in allowed]
    if bad:
        raise ConfigError(f"--resume keeps the run's saved configuration; only {sorted(allowed)} may change, not --{bad[0]}")
    model_name, model_cfg, data_cfg, train_cfg = _configs_from(cfg, path)
    if options:
        overrides = {k.replace("-", "_"): v for k, v in options.items()}
        train_cfg = from_dict(TrainConfig, {**to_dict(train_cfg), **overrides}, what="--resume")
    if not (path / CHECKPOINT).exists() and not (path / WEIGHTS).exists():
        log.warning("%s has no checkpoint yet: training starts from epoch 0", path)
    dataset = load_data(data_cfg)
    torch.manual_seed(train_cfg.seed)
    net = build_model(model_name, model_cfg)
    run = Run(path, model_name, net, data_cfg, train_cfg, [])
    if distributed.is_main():
        (path / WEIGHTS).unlink(missing_ok=True)  # the run is incomplete again until training finishes
        atomic_write_text(path / CONFIG, json.dumps({**run.config_dict(), "created": cfg.get("created", _now())},
                                                    indent=2))
    return _train_and_finish(run, dataset, resume=True, report=report, evaluate=evaluate)


def _train_and_finish(run: Run, dataset: Dataset, *, resume: bool, report: bool, evaluate: bool) -> Run:
    from ..data.corrupt import make_corrupter

    corrupt = make_corrupter(getattr(run.model.config, "corruption", None), dataset)  # denoising AEs
    pretrain = getattr(run.model, "pretrain", None)  # a model's own stages before the fit (stacked-ae)
    pre_rows = pretrain(dataset, run.train_config, run.path, resume=resume) if pretrain is not None else []
    run.metrics = fit(run.model, dataset, run.train_config, run.path, resume=resume, corrupt=corrupt,
                      stage="finetune" if pretrain is not None else None)
    if run.path is None:
        run.metrics = pre_rows + run.metrics
    run.model.eval()
    if run.path is None or not distributed.is_main():
        distributed.finish()
        return run
    atomic_save_tensors(run.model.state_dict(), run.path / WEIGHTS, {"aekit_model": run.model_name})
    if evaluate:
        from ..evaluate import evaluate as _evaluate

        run.evaluation = _evaluate(run.model, dataset, "test")
        atomic_write_text(run.path / EVALUATION, json.dumps(run.evaluation, indent=2))
    if report:
        from ..viz.report import write_report

        final = [r for r in run.metrics if r.get("stage", "finetune") == "finetune"]  # curves of the last stage
        write_report(dataclasses.replace(run, metrics=final), dataset)
    distributed.finish()
    return run


def read_config(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"run directory {path} does not exist: pass the --out directory of a training run")
    f = path / CONFIG
    if not f.exists():
        raise RunError(f"{path} has no {CONFIG}: it is not an aekit run directory (train one with `aekit train`)")
    try:
        cfg = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{f} is not valid JSON ({e.msg} at line {e.lineno}): restore it or retrain the run") from None
    for key in ("aekit_version", "model", "model_config", "data", "train"):
        if key not in cfg:
            raise RunError(f"{f} lacks '{key}': it was not written by aekit; retrain the run")
    return cfg


def _configs_from(cfg: dict[str, Any], path: Path) -> tuple[str, Any, DataConfig, TrainConfig]:
    name = cfg["model"]
    if name not in MODELS:
        raise RunError(f"{path}: model '{name}' is unknown to this aekit version; upgrade aekit to load it")
    spec = get_spec(name)
    try:
        model_cfg = from_dict(spec.config_cls, cfg["model_config"], what=f"{path}/{CONFIG}")
        data_cfg = from_dict(DataConfig, cfg["data"], what=f"{path}/{CONFIG}")
        train_cfg = from_dict(TrainConfig, cfg["train"], what=f"{path}/{CONFIG}")
    except ConfigError as e:
        raise RunError(f"{path}/{CONFIG} is invalid: {e}") from None
    return name, model_cfg, data_cfg, train_cfg


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load a complete run (config + weights + metrics).  Reads JSON and safetensors only."""
    path = Path(path)
    cfg = read_config(path)
    name, model_cfg, data_cfg, train_cfg = _configs_from(cfg, path)
    if not (path / WEIGHTS).exists():
        raise RunError(f"run {path} is incomplete (no {WEIGHTS}): finish it with `aekit train --resume {path}`")
    net = build_model(name, model_cfg)
    tensors, _ = read_tensors(path / WEIGHTS)
    load_state(net, tensors, str(path / WEIGHTS))
    net.to(device).eval()
    metrics = read_metrics(path / METRICS) if (path / METRICS).exists() else []
    evaluation = json.loads((path / EVALUATION).read_text()) if (path / EVALUATION).exists() else None
    return Run(path, name, net, data_cfg, train_cfg, metrics, evaluation)


def load(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """The trained model of a run directory, ready for ``encode`` / ``decode`` / ``sample``."""
    return load_run(path, device).model
