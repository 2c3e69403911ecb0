"""Runs: a run is a directory.

``config.json`` (resolved configs + aekit version + ``"layout": 2``), ``model.safetensors`` (final weights),
``metrics.csv`` (one row per epoch), ``checkpoint.safetensors`` (resumable state), ``evaluation.json`` and
``report.html`` + PNGs, and ``complete.json``, written last (after the evaluation and the report) with the
SHA-256 of ``model.safetensors``: a run is complete when its marker exists and the weights match it.  Runs of
older aekit versions (no ``layout`` key) are complete when ``model.safetensors`` exists, as before.  Loading a
run reads JSON and safetensors only: it never executes code from the run directory.

A process that trains, resumes or overwrites a run holds its exclusive lock (``RUN/.lock``, see
:func:`aekit.fileio.lock_directory`) from before it changes anything until the run is finished; a second writer
stops with a one-line error naming the PID of the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import field_types, from_dict, to_dict
from ..data import DataConfig, Dataset, load_data
from ..errors import ConfigError, RunError, option, option_name
from ..fileio import LOCK_NAME, TEMP_SUFFIX, lock_directory, remove_stale_temporaries, sha256_file
from ..models import MODELS, build_model, get_spec
from ..models.base import Autoencoder
from . import distributed
from .callbacks import Callback, read_metrics
from .checkpoint import atomic_save_tensors, atomic_write_text, load_state, read_tensors
from .config import TrainConfig, settings_of_a_saved_run
from .memory_format import resolve_memory_format
from .precision import resolve_precision, warn_if_emulated
from .stages import run_after_stages, run_stages
from .trainer import BEST, CHECKPOINT, METRICS, PRETRAINED, Trainer, fit, resolve_device

log = logging.getLogger(__name__)

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
EVALUATION = "evaluation.json"
COMPLETE = "complete.json"  # the completeness marker, written last
LAYOUT = 2  # config.json "layout": runs of this layout are complete only with their marker


@dataclasses.dataclass
class Run:
    """A loaded (or freshly trained) run."""

    path: Path | None
    model_name: str
    model: Autoencoder
    data_config: DataConfig
    train_config: TrainConfig
    metrics: list[dict[str, Any]]
    evaluation: dict[str, Any] | None = None

    def dataset(self) -> Dataset:
        """The run's recorded data, from local files only (see :func:`recorded_data`)."""
        return load_data(recorded_data(self.data_config))

    def config_dict(self) -> dict[str, Any]:
        from ..version import __version__

        return {
            "aekit_version": __version__,
            "model": self.model_name,
            "model_config": to_dict(self.model.config),
            "data": to_dict(self.data_config),
            "train": to_dict(self.train_config),
        }


def recorded_data(cfg: DataConfig) -> DataConfig:
    """A run's recorded data config as loading the run uses it: ``download=False``, so a run directory (maybe
    crafted: ``data.spec: mnist``, ``data.data_dir: /any/path``) never makes ``evaluate``, ``sample`` or
    ``serve`` download or create folders; data given explicitly (``--data``) is loaded as asked."""
    return dataclasses.replace(cfg, download=False) if cfg.download else cfg


MAX_STEPS = 10**8  # optimiser steps of one run: ~a day at 1 ms per step; more is a typo (--epochs 1e23)


def check_steps(train_cfg: TrainConfig, dataset: Dataset, closed_form: bool = False) -> None:
    """Refuse ``epochs × steps per epoch`` beyond :data:`MAX_STEPS` before training starts (it would not end)."""
    if closed_form:
        return
    steps = train_cfg.epochs * -(-len(dataset.train) // max(1, train_cfg.batch_size))
    if steps > MAX_STEPS:
        per = max(1, steps // max(1, train_cfg.epochs))
        raise ConfigError(f"--epochs {train_cfg.epochs}: {train_cfg.epochs} epochs × {per} steps per epoch is more "
                          f"than {MAX_STEPS:.0e} optimiser steps (over a day even at 1 ms per step); use --epochs "
                          f"{max(1, MAX_STEPS // per)} or fewer")


def split_options(model_name: str, options: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Route flat options (``latent_dim=8, epochs=3, image_size=32``) to model / train / data configs."""
    spec = get_spec(model_name)
    groups: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
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


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot become a run directory (a file, under a file, unwritable) before anything
    is created."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: choose a directory path")
    parent = out
    while not parent.exists() and parent != parent.parent:  # the nearest existing ancestor
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"--out {out} is under {parent}, which is a file: choose a directory path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {parent} is not writable; choose a directory you can write to")


def _leftover(p: Path) -> bool:
    """Files that do not make a directory a run: its lock and temporaries of killed writes."""
    return p.name == LOCK_NAME or (p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX))


def _exists(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` holds a run (or anything else); refused without ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: choose a directory path")
    if not (out.exists() and any(not _leftover(p) for p in out.iterdir())):
        return False
    if not overwrite:  # worded for the caller: flags in the CLI, keyword arguments in Python
        raise ConfigError(f"run directory {out} already exists: choose a new {option_name('out')}, continue it with "
                          f"{option('resume', out)}, or pass {option('overwrite')}")
    return True


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Called with the directory's lock held (it exists then, holding ``.lock``)."""
    if _exists(out, overwrite):
        (out / COMPLETE).unlink(missing_ok=True)  # first: the run is incomplete from here on
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
    hold: contextlib.ExitStack | None = None,
    **options: Any,
) -> tuple[Run, Dataset]:
    """Train a registered model and (with ``out``) write its run directory: ``config.json``, ``metrics.csv``,
    the checkpoint, ``model.safetensors`` and the completeness marker.  Returns the :class:`Run` and its
    dataset (for evaluation).

    Every option, the data and the device are validated before anything is created or replaced; the run
    directory's lock is held while it is written.  With ``hold`` the caller finishes the run: the lock stays
    held in that stack and the caller writes the marker (:func:`mark_complete`) after its own outputs.
    """
    with contextlib.ExitStack() as own:
        locks = hold if hold is not None else own
        if resume is not None:
            run, dataset = _resume(Path(resume), callbacks=callbacks, locks=locks, **options)
        else:
            run, dataset = _train_new(model, data, out, overwrite=overwrite, callbacks=callbacks, locks=locks,
                                      **options)
        if hold is None and run.path is not None and distributed.is_main():
            mark_complete(run.path)
    return run, dataset


def _lock(path: Path, locks: contextlib.ExitStack) -> None:
    """Take the run directory's lock into ``locks`` and clear temporaries left by killed writes."""
    locks.enter_context(lock_directory(path))
    for p in remove_stale_temporaries(path):
        log.info("removed %s, left over from an interrupted write", p)


def _train_new(model: str, data: str | DataConfig, out: str | Path | None, *, overwrite: bool,
               callbacks: Sequence[Callback], locks: contextlib.ExitStack, **options: Any) -> tuple[Run, Dataset]:
    m_opts, t_opts, d_opts = split_options(model, options)
    spec = get_spec(model)
    model_cfg = spec.make_config(m_opts, name=model)
    train_cfg = from_dict(TrainConfig, {**spec.train_defaults, **t_opts}, what="training")  # model defaults first
    if isinstance(data, DataConfig):
        data_cfg = dataclasses.replace(data, **d_opts) if d_opts else data
    else:
        data_cfg = from_dict(DataConfig, {"spec": data, **d_opts}, what="data")
    resolve_device(train_cfg.device)  # a missing GPU fails here, before any directory exists
    if out is not None:
        check_out(Path(out))
        _exists(Path(out), overwrite)  # checked again under the lock
    dataset = load_data(data_cfg)  # bad data fails here too
    model_cfg = model_cfg.resolve(dataset)
    model_cfg, overrides = model_cfg.train_overrides()  # stacked-ae: --finetune-epochs is the trainer's epochs
    if "epochs" in overrides and "epochs" in t_opts and train_cfg.epochs != overrides["epochs"]:
        raise ConfigError("--finetune-epochs and --epochs both set the fine-tuning epochs: give only one")
    train_cfg = dataclasses.replace(train_cfg, **overrides)
    check_steps(train_cfg, dataset, spec.model_cls.closed_form)
    with torch.random.fork_rng(devices=[]):  # the initial weights come from the run's seed; the caller's RNG stays
        torch.default_generator.manual_seed(train_cfg.seed)  # CPU init; no GPU generator touched
        net = build_model(model, model_cfg)
    device = resolve_device(train_cfg.device)
    train_cfg = resolve_precision(train_cfg, net, device)  # config.json records both
    train_cfg = resolve_memory_format(train_cfg, net, device)
    run = Run(Path(out) if out is not None else None, model, net, data_cfg, train_cfg, [])
    if run.path is not None and distributed.is_main():  # under torchrun, rank 0 alone writes the run directory
        _lock(run.path, locks)
        _prepare_out(run.path, overwrite)
        atomic_write_text(run.path / CONFIG, json.dumps({**run.config_dict(), "layout": LAYOUT, "created": _now()},
                                                        indent=2))
    _train(run, dataset, resume=False, callbacks=callbacks)
    return run, dataset


def mark_complete(path: Path, **facts: Any) -> None:
    """Write the completeness marker (last, after every other output of the run): the SHA-256 of the final
    weights, checked by :func:`load_run`."""
    marker = {"aekit_version": _version(), "completed": _now(), "weights": WEIGHTS,
              "weights_sha256": sha256_file(path / WEIGHTS), **facts}
    atomic_write_text(path / COMPLETE, json.dumps(marker, indent=2))


def _version() -> str:
    from ..version import __version__

    return __version__


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


RESUME_OPTIONS = ("epochs", "lr", "progress", "device", "log_every")


def _resume(path: Path, *, callbacks: Sequence[Callback] = (), locks: contextlib.ExitStack,
            **options: Any) -> tuple[Run, Dataset]:
    bad = [k for k in options if k.replace("-", "_") not in RESUME_OPTIONS]
    if bad:
        raise ConfigError(f"--resume keeps the run's saved configuration; only --{', --'.join(RESUME_OPTIONS)} "
                          f"may change, not --{bad[0].replace('_', '-')}")
    read_config(path)  # an existing run directory, before its lock is taken
    if distributed.is_main():
        _lock(path, locks)  # before reading what a running writer might be replacing
    cfg = read_config(path)
    model_name, model_cfg, data_cfg, train_cfg = _configs_from(cfg, path)
    saved_epochs = train_cfg.epochs
    if options:
        overrides = {k.replace("-", "_"): v for k, v in options.items()}
        train_cfg = from_dict(TrainConfig, {**to_dict(train_cfg), **overrides}, what="--resume")
    resolve_device(train_cfg.device)
    dataset = load_data(data_cfg)
    check_steps(train_cfg, dataset, get_spec(model_name).model_cls.closed_form)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(train_cfg.seed)  # CPU init; no GPU generator touched
        net = build_model(model_name, model_cfg)
    ckpt = path / CHECKPOINT
    if ckpt.exists():  # a corrupt or foreign checkpoint fails here, before the finished run's weights are touched
        check = Trainer(dataclasses.replace(train_cfg, epochs=max(train_cfg.epochs, saved_epochs)))
        check.validate_checkpoint(net, ckpt)  # the run's own model: training resumes from the same state
        if check.epoch > train_cfg.epochs:
            raise ConfigError(f"--epochs {train_cfg.epochs}: {path} has already trained {check.epoch} epochs; "
                              f"resume with --epochs {check.epoch} or more, or omit --epochs")
    elif not (path / WEIGHTS).exists():
        log.warning("%s has no checkpoint yet: training starts from epoch 0", path)
    run = Run(path, model_name, net, data_cfg, train_cfg, [])
    if distributed.is_main():
        # the run is incomplete again until training (and the caller's evaluation) finishes; the finished
        # weights stay until new ones replace them
        (path / COMPLETE).unlink(missing_ok=True)
        atomic_write_text(path / CONFIG, json.dumps({**run.config_dict(), "layout": LAYOUT,
                                                     "created": cfg.get("created", _now())}, indent=2))
    _train(run, dataset, resume=True, callbacks=callbacks)
    return run, dataset


def _train(run: Run, dataset: Dataset, *, resume: bool, callbacks: Sequence[Callback]) -> None:
    """The model's own stages (if any), the main fit, the stages after it (a VQ-VAE's prior), and the final
    weights."""
    staged = run.model.staged
    if distributed.is_main():  # once per run, whatever its stages (fit runs once per stage)
        warn_if_emulated(run.train_config.precision, resolve_device(run.train_config.device))
    pre_rows = run_stages(run.model, dataset, run.train_config, run.path, resume=resume)
    run.metrics = fit(run.model, dataset, run.train_config, run.path, resume=resume, callbacks=callbacks,
                      stage=run.model.main_stage if staged else None)
    post_rows = run_after_stages(run.model, dataset, run.train_config, run.path, resume=resume)
    if run.path is None:
        run.metrics = pre_rows + run.metrics + post_rows
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
    layout = cfg.get("layout", 1)
    if isinstance(layout, bool) or not isinstance(layout, int) or layout < 1:
        raise RunError(f"{f}: 'layout' must be a positive integer, not {layout!r}; restore it or retrain the run")
    ours = _version()
    if _version_key(str(cfg["aekit_version"])) > _version_key(ours):
        log.warning("%s was written by aekit %s, newer than this aekit %s: it may not load correctly; upgrade "
                    "aekit", path, cfg["aekit_version"], ours)
    return cfg


def _version_key(version: str) -> tuple[int, ...]:
    """``"0.10.2rc1"`` → ``(0, 10, 2)``: the numeric release part, for a newer-than comparison."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(n) for n in m.group(1).split(".")) if m else ()


def _configs_from(cfg: dict[str, Any], path: Path) -> tuple[str, Any, DataConfig, TrainConfig]:
    name = cfg["model"]
    if name not in MODELS:
        raise RunError(f"{path}: model '{name}' is unknown to this aekit version; upgrade aekit to load it")
    spec = get_spec(name)
    model_cfg: Any
    try:
        model_cfg = from_dict(spec.config_cls, cfg["model_config"], what=f"{path}/{CONFIG}")
        data_cfg = from_dict(DataConfig, cfg["data"], what=f"{path}/{CONFIG}")
        train_cfg = from_dict(TrainConfig, settings_of_a_saved_run(cfg["train"]), what=f"{path}/{CONFIG}")
    except ConfigError as e:
        raise RunError(f"{path}/{CONFIG} is invalid: {e}") from None
    shape = getattr(model_cfg, "input_shape", None)
    if shape is not None and not (len(shape) > 0 and all(type(d) is int and d > 0 for d in shape)):
        raise RunError(f"{path}/{CONFIG}: input_shape {list(shape)} is not a shape (positive integers); restore it "
                       "or retrain the run")
    return name, model_cfg, data_cfg, train_cfg


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load a complete run (config + weights + metrics).  Reads JSON and safetensors only."""
    path = Path(path).expanduser()
    cfg = read_config(path)
    name, model_cfg, data_cfg, train_cfg = _configs_from(cfg, path)
    expected = _check_complete(path, cfg)
    net = build_model(name, model_cfg)
    tensors, _ = read_tensors(path / WEIGHTS)  # an unreadable file fails here, a changed one at the checksum
    if expected is not None and sha256_file(path / WEIGHTS) != expected:
        raise RunError(f"{path / WEIGHTS} does not match the SHA-256 recorded in {COMPLETE} (it was changed or "
                       "corrupted): restore it, or retrain the run")
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


def _check_complete(path: Path, cfg: dict[str, Any]) -> str | None:
    """Raise RunError for an incomplete run; the weights' recorded SHA-256 (None for runs of older aekit)."""
    weights = path / WEIGHTS
    if cfg.get("layout", 1) < LAYOUT:  # written by an aekit without markers: complete when the weights exist
        if not weights.is_file():
            raise RunError(f"run {path} is incomplete (no {WEIGHTS}): finish it with `aekit train --resume {path}`")
        return None
    marker = path / COMPLETE
    if not marker.is_file() or not weights.is_file():
        missing = COMPLETE if not marker.is_file() else WEIGHTS
        raise RunError(f"run {path} is incomplete (no {missing}: its training, evaluation or report did not "
                       f"finish): finish it with `aekit train --resume {path}`")
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
        sha = info["weights_sha256"]
        if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise ValueError(sha)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise RunError(f"{marker} is not a valid completeness marker: finish the run again with "
                       f"`aekit train --resume {path}`") from None
    return sha


def load(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """The trained model of a run directory, ready for ``encode`` / ``decode`` / ``sample``."""
    return load_run(path, device).model
