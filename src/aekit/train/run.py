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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import field_types, from_dict, to_dict
from ..data import DataConfig, Dataset, load_data
from ..errors import ConfigError, RunError
from ..models import MODELS, build_model, get_spec
from ..models.base import Autoencoder
from . import distributed
from .callbacks import Callback, read_metrics
from .checkpoint import atomic_save_tensors, atomic_write_text, load_state, read_tensors
from .config import TrainConfig
from .stages import run_stages
from .trainer import BEST, CHECKPOINT, METRICS, PRETRAINED, Trainer, fit, resolve_device

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
        from ..version import __version__

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
        for name in (CONFIG, WEIGHTS, METRICS, CHECKPOINT, EVALUATION, BEST, PRETRAINED):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def train_run(
    model: str = "ae",
    data: str | DataConfig = "digits",
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    **options: Any,
) -> tuple[Run, Dataset]:
    """Train a registered model and (with ``out``) write its run directory: ``config.json``, ``metrics.csv``,
    the checkpoint and ``model.safetensors``.  Returns the :class:`Run` and its dataset (for evaluation).

    Every option, the data and the device are validated before anything is created or replaced.
    """
    if resume is not None:
        return _resume(Path(resume), callbacks=callbacks, **options)
    m_opts, t_opts, d_opts = split_options(model, options)
    spec = get_spec(model)
    model_cfg = spec.make_config(m_opts, name=model)
    train_cfg = from_dict(TrainConfig, {**spec.train_defaults, **t_opts}, what="training")  # model defaults first
    if isinstance(data, DataConfig):
        data_cfg = dataclasses.replace(data, **d_opts) if d_opts else data
    else:
        data_cfg = from_dict(DataConfig, {"spec": data, **d_opts}, what="data")
    resolve_device(train_cfg.device)  # a missing GPU fails here, before any directory exists
    dataset = load_data(data_cfg)  # bad data fails here too
    model_cfg = model_cfg.resolve(dataset)
    model_cfg, overrides = model_cfg.train_overrides()  # stacked-ae: --finetune-epochs is the trainer's epochs
    if "epochs" in overrides and "epochs" in t_opts and train_cfg.epochs != overrides["epochs"]:
        raise ConfigError("--finetune-epochs and --epochs both set the fine-tuning epochs: give only one")
    train_cfg = dataclasses.replace(train_cfg, **overrides)
    with torch.random.fork_rng(devices=[]):  # the initial weights come from the run's seed; the caller's RNG stays
        torch.manual_seed(train_cfg.seed)
        net = build_model(model, model_cfg)
    run = Run(Path(out) if out is not None else None, model, net, data_cfg, train_cfg, [])
    if run.path is not None and distributed.is_main():  # under torchrun, rank 0 alone writes the run directory
        _prepare_out(run.path, overwrite)
        atomic_write_text(run.path / CONFIG, json.dumps({**run.config_dict(), "created": _now()}, indent=2))
    _train(run, dataset, resume=False, callbacks=callbacks)
    return run, dataset


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


RESUME_OPTIONS = ("epochs", "lr", "progress", "device", "log_every")


def _resume(path: Path, *, callbacks: Sequence[Callback] = (), **options: Any) -> tuple[Run, Dataset]:
    cfg = read_config(path)
    bad = [k for k in options if k.replace("-", "_") not in RESUME_OPTIONS]
    if bad:
        raise ConfigError(f"--resume keeps the run's saved configuration; only --{', --'.join(RESUME_OPTIONS)} "
                          f"may change, not --{bad[0].replace('_', '-')}")
    model_name, model_cfg, data_cfg, train_cfg = _configs_from(cfg, path)
    if options:
        overrides = {k.replace("-", "_"): v for k, v in options.items()}
        train_cfg = from_dict(TrainConfig, {**to_dict(train_cfg), **overrides}, what="--resume")
    resolve_device(train_cfg.device)
    dataset = load_data(data_cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_cfg.seed)
        net = build_model(model_name, model_cfg)
    ckpt = path / CHECKPOINT
    if ckpt.exists():  # a corrupt or foreign checkpoint fails here, before the finished run's weights are touched
        Trainer(train_cfg).validate_checkpoint(build_model(model_name, model_cfg), ckpt)
    elif not (path / WEIGHTS).exists():
        log.warning("%s has no checkpoint yet: training starts from epoch 0", path)
    run = Run(path, model_name, net, data_cfg, train_cfg, [])
    if distributed.is_main():
        (path / WEIGHTS).unlink(missing_ok=True)  # the run is incomplete again until training finishes
        atomic_write_text(path / CONFIG, json.dumps({**run.config_dict(), "created": cfg.get("created", _now())},
                                                    indent=2))
    _train(run, dataset, resume=True, callbacks=callbacks)
    return run, dataset


def _train(run: Run, dataset: Dataset, *, resume: bool, callbacks: Sequence[Callback]) -> None:
    """The model's own stages (if any), the main fit, and the final weights."""
    staged = run.model.staged
    pre_rows = run_stages(run.model, dataset, run.train_config, run.path, resume=resume)
    run.metrics = fit(run.model, dataset, run.train_config, run.path, resume=resume, callbacks=callbacks,
                      stage="finetune" if staged else None)
    if run.path is None:
        run.metrics = pre_rows + run.metrics
    elif distributed.is_main():  # every stage's rows, as metrics.csv holds them
        run.metrics = read_metrics(run.path / METRICS)
    run.model.eval()
    if run.path is not None and distributed.is_main():
        atomic_save_tensors(run.model.state_dict(), run.path / WEIGHTS, {"aekit_model": run.model_name})


def read_config(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"run directory {path} does not exist: pass the --out directory of a training run")
    f = path / CONFIG
    if not f.exists():
        raise RunError(f"{path} has no {CONFIG}: it is not an aekit run directory (train one with `aekit train`)")
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunError(f"{f} is not valid JSON ({e.msg} at line {e.lineno}): restore it or retrain the run") from None
    except (UnicodeDecodeError, OSError) as e:
        raise RunError(f"{f} is not readable JSON text ({e}): restore it or retrain the run") from None
    if not isinstance(cfg, dict):
        raise RunError(f"{f} is not an aekit config (a JSON object is expected): restore it or retrain the run")
    for key in ("aekit_version", "model", "model_config", "data", "train"):
        if key not in cfg:
            raise RunError(f"{f} lacks '{key}': it was not written by aekit; retrain the run")
    if not isinstance(cfg["model"], str):
        raise RunError(f"{f}: 'model' must be a model name, not {cfg['model']!r}; restore it or retrain the run")
    for key in ("model_config", "data", "train"):
        if not isinstance(cfg[key], dict):
            raise RunError(f"{f}: '{key}' must be a JSON object, not {cfg[key]!r}; restore it or retrain the run")
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
    path = Path(path).expanduser()
    cfg = read_config(path)
    name, model_cfg, data_cfg, train_cfg = _configs_from(cfg, path)
    if not (path / WEIGHTS).exists():
        raise RunError(f"run {path} is incomplete (no {WEIGHTS}): finish it with `aekit train --resume {path}`")
    net = build_model(name, model_cfg)
    tensors, _ = read_tensors(path / WEIGHTS)
    load_state(net, tensors, str(path / WEIGHTS))
    net.to(device).eval()
    try:
        metrics = read_metrics(path / METRICS) if (path / METRICS).exists() else []
    except (OSError, UnicodeDecodeError, ValueError):  # a broken metrics.csv does not stop inference
        log.warning("%s/%s is unreadable: the run's training curves are unavailable", path, METRICS)
        metrics = []
    evaluation = None
    if (path / EVALUATION).exists():
        try:
            evaluation = json.loads((path / EVALUATION).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):  # a broken evaluation.json does not stop inference
            log.warning("%s/%s is unreadable: re-run `aekit evaluate %s`", path, EVALUATION, path)
    return Run(path, name, net, data_cfg, train_cfg, metrics, evaluation)


def load(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """The trained model of a run directory, ready for ``encode`` / ``decode`` / ``sample``."""
    return load_run(path, device).model
