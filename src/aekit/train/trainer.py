"""The trainer: a short, model-agnostic loop plus callbacks and batch transforms.

It needs only the model contract: ``model.train_step(batch, optimizers) -> Losses`` (by default ``loss(batch)``
and one optimiser step; ``fit(x)`` for ``closed_form`` models).  Each step slices a batch of resident tensors,
applies the batch transforms (corruption, augmentation) with a generator seeded from (seed, step, transform),
and lets the model take its step with one optimiser per parameter group (:class:`StepRunner`: the run's
precision, DDP, gradient clipping and the divergence check apply to each of them).  Everything else is a
:class:`~aekit.train.callbacks.Callback`: the divergence guard, progress, the metrics CSV, early stopping,
TensorBoard (from the viz layer) and the checkpoint, in that order.  A run killed at any point resumes exactly:
the checkpoint holds model, optimiser, data order and the callbacks' states, and every device's sampling noise
is reseeded from (seed, epoch, rank) at each epoch start.

``fit`` leaves no global state changed: the random generators of every device and the denormal flushing it
turns on are restored when it returns (a scikit-learn user calling ``fit`` keeps their process as it was).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import Batch, BatchTransform, Dataset, to_float
from ..errors import ConfigError, DataError, RunError
from ..models.base import Autoencoder, Losses
from ..models.batching import mean_losses
from . import distributed
from .callbacks import (
    Callback,
    Checkpoint,
    CollapseWarning,
    DivergenceGuard,
    EarlyStopping,
    LambdaCallback,
    MetricsCSV,
    Progress,
)
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .memory_format import resolve_memory_format
from .optim import NamedOptimizers, make_optimizers
from .precision import resolve_precision

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.csv"
BEST = "best.safetensors"
PRETRAINED = "pretrained.safetensors"  # a model's weights after its own training stages (stacked-ae)

__all__ = ["BEST", "CHECKPOINT", "METRICS", "PRETRAINED", "TrainConfig", "Trainer", "compile_options",
           "default_callbacks", "fit", "lr_at", "mean_losses", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def compile_options(device: torch.device) -> dict[str, bool]:
    """Inductor options of ``--compile``, each measured on an MLP VAE step (``benchmarks/profile_step.py``).

    ``fallback_random``: random ops (the VAE's reparameterisation noise) stay ATen's vectorised kernels, the
    same draws as without ``--compile``; inductor's own per-element Philox took 3 % of a CPU step.
    ``cpp_wrapper`` (CPU): the compiled graphs' launcher in C++ instead of Python, 5 % of a CPU step; it adds
    a few seconds of compilation to the first epoch.
    """
    return {"fallback_random": True, **({"cpp_wrapper": True} if device.type == "cpu" else {})}


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate as a pure function of the global step (nothing to save for resume)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = cfg.lr_warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "cosine":
        t = (step - warm) / max(1.0, total - warm)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return cfg.lr


def transform_generator(seed: int, step: int, index: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of batch transform ``index`` at ``step`` on ``rank``: a pure function of them (each
    rank's shard gets its own draws, as the shards of one process's batch would)."""
    return torch.Generator().manual_seed(
        (seed * 2**32 + step + index * 0x9E3779B97F4A7C15 + rank * 0x632BE59BD9B4E019) % 2**64)


def _flush_denormal_on() -> bool:
    """Whether denormal flushing is on now (public API only: a denormal input reads as zero when it is)."""
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    return bool((tiny * 1.0).item() == 0.0)


@contextlib.contextmanager
def preserved_global_state(device: torch.device) -> Iterator[None]:
    """Run the block with denormal flushing on (CPU: Adam's moments fill with denormals and slow every step
    otherwise) and give back every device's random generator and the flushing setting as they were."""
    devices = [device] if device.type == "cuda" else []
    flush = _flush_denormal_on()
    with torch.random.fork_rng(devices=devices):
        if device.type == "cpu":
            torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(flush)


class StepRunner:
    """The :class:`~aekit.models.base.Optimizers` a model's ``train_step`` gets: ``forward`` runs a loss method
    under the run's autocast (through DDP under torchrun; ``loss`` itself compiled with ``--compile``), ``step``
    zeroes, backpropagates, clips and steps one parameter group.  ``stepped`` holds this step's losses (for the
    divergence guard)."""

    def __init__(self, model: Autoencoder, wrapped: Any, loss_fn: Callable[..., Any], optimizers: NamedOptimizers,
                 autocast: Any, grad_clip: float):
        self.own_loss = model.loss  # ``forward(model.loss, ...)`` runs ``loss_fn`` (compiled with --compile)
        self.wrapped = wrapped  # ``call(fn, ...)``: the model's methods, or them through DDP's forward
        self.loss_fn = loss_fn
        self.optimizers = optimizers
        self.autocast = autocast
        self.grad_clip = grad_clip
        self.stepped: list[torch.Tensor] = []

    def forward(self, fn: Callable[..., Losses], *args: Any) -> Losses:
        with self.autocast:
            return self.loss_fn(*args) if fn == self.own_loss else self.wrapped.call(fn, *args)

    def step(self, group: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[group]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.optimizers.params[group], self.grad_clip)
        opt.step()
        self.stepped.append(loss)

    def checked(self) -> torch.Tensor:
        """The loss the divergence guard checks: the one stepped loss, or the sum of several (NaN in any)."""
        if len(self.stepped) == 1:
            return self.stepped[0]
        return torch.stack([t.detach().float() for t in self.stepped]).sum()


class Trainer:
    """Trains one model with ``cfg``; ``callbacks`` run in list order, ``transforms`` map every training batch."""

    def __init__(self, cfg: TrainConfig, callbacks: Sequence[Callback] = (),
                 transforms: Sequence[BatchTransform] = ()):
        self.cfg = cfg
        self.callbacks = list(callbacks)
        self.transforms = list(transforms)
        self.model: Autoencoder | Any = None
        self.data: Dataset | Any = None
        self.optimizer: NamedOptimizers | None = None  # one optimiser per parameter group of the model
        self.data_generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch = 0  # epochs finished
        self.step = 0  # optimiser steps taken
        self.steps_per_epoch = 0
        self.world = 1  # processes (torchrun)
        self.should_stop = False
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------------- state
    def loop_state(self) -> dict[str, Any]:
        """The JSON part of a checkpoint: counters and every keyed callback's state."""
        return {"epoch": self.epoch, "step": self.step, "steps_per_epoch": self.steps_per_epoch,
                "batch_size": self.cfg.batch_size, "world": self.world,
                "callbacks": {c.key: c.state_dict() for c in self.callbacks if c.key}}

    def _restore(self, checkpoint: Path, check_geometry: bool = True) -> None:
        assert self.optimizer is not None
        loop = load_checkpoint(checkpoint, self.model, self.optimizer, self.data_generator)
        try:
            self.epoch, self.step = int(loop["epoch"]), int(loop["step"])
        except (KeyError, TypeError, ValueError):
            raise RunError(f"{checkpoint} has no valid loop counters: start a new run") from None
        if not 0 <= self.epoch <= self.cfg.epochs:
            raise RunError(f"{checkpoint} claims epoch {self.epoch} of a {self.cfg.epochs}-epoch run: it does not "
                           f"belong to this run; raise --epochs or start a new run")
        saved = {k: loop[k] for k in ("steps_per_epoch", "batch_size", "world") if k in loop}  # older: absent
        now = {"steps_per_epoch": self.steps_per_epoch, "batch_size": self.cfg.batch_size, "world": self.world}
        changed = [k for k in saved if saved[k] != now[k]] if check_geometry else []
        if changed:  # the schedule and the warm-up are functions of the step: they would shift silently
            k = changed[0]
            raise RunError(f"{checkpoint} was written with {k} {saved[k]}, this run has {now[k]}: resume with the "
                           "same batch size and number of processes, or start a new run")
        states = loop.get("callbacks")
        if states is None and "best_epoch" in loop:  # checkpoints written before callbacks had state
            states = {"early_stopping": {k: loop[k] for k in ("best", "best_epoch", "bad_epochs") if k in loop}}
        states = states or {}
        for c in self.callbacks:
            if c.key and c.key in states:
                c.load_state_dict(states[c.key])
        log.info("resumed from %s at epoch %d", checkpoint, self.epoch)

    def validate_checkpoint(self, model: Autoencoder, checkpoint: Path) -> None:
        """Load ``checkpoint`` into ``model`` (a scratch copy) and a fresh optimiser: a truncated, corrupted or
        foreign checkpoint raises the one-line RunError here, before a resume changes anything."""
        self.model = model
        self.optimizer = make_optimizers(model, self.cfg.lr, self.cfg.weight_decay, self.cfg.optimizer)
        self._restore(checkpoint, check_geometry=False)  # the data and processes are checked when training starts

    def _emit(self, hook: str, *args: Any) -> None:
        for c in self.callbacks:
            getattr(c, hook)(self, *args)

    # ------------------------------------------------------------------------------------------- fit
    def fit(self, model: Autoencoder, data: Dataset, *, resume_from: Path | None = None) -> list[dict[str, Any]]:
        """Train ``model`` on ``data.train``, validating on ``data.val`` every epoch; returns the metrics rows."""
        ctx = distributed.setup(resolve_device(self.cfg.device))
        self.cfg = resolve_precision(self.cfg, model, ctx.device)  # a run resolved both before writing config.json
        self.cfg = resolve_memory_format(self.cfg, model, ctx.device)
        self.model, self.data = model, data
        self._converted = False  # set when this fit moves the model to channels_last
        with preserved_global_state(ctx.device):
            model.to(ctx.device)
            with ctx.sync_batchnorm(model):  # DDP on CUDA: SyncBatchNorm while training, the caller's layers after
                try:
                    self._fit(model, data, ctx, resume_from)
                finally:  # the caller's model back in the default layout: the same numbers, and outputs bit-equal
                    if self._converted:  # to the model loaded from the saved weights
                        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
                        self._converted = False
        return self.history

    def _fit(self, model: Autoencoder, data: Dataset, ctx: distributed.Context, resume_from: Path | None) -> None:
        try:
            if model.closed_form:
                self._fit_closed_form(model, data, ctx.device)
            else:
                self._fit_gradient(model, data, ctx, resume_from)
        except BaseException as e:
            for c in self.callbacks:  # every callback releases what it holds, even if one of them fails
                try:
                    c.on_exception(self, e)
                except Exception:  # noqa: BLE001 - the training error is the one to report
                    log.exception("%s.on_exception failed", type(c).__name__)
            raise

    def _epoch_row(self, model: Autoencoder, data: Dataset, row: dict[str, Any]) -> dict[str, Any]:
        if len(data.val):
            row.update({f"val_{k}": v for k, v in mean_losses(model, data.val).items()})
        return row

    def _fit_closed_form(self, model: Autoencoder, data: Dataset, device: torch.device) -> None:
        self._emit("on_fit_start")
        self._emit("on_epoch_start", 0)
        t0 = time.perf_counter()
        model.fit(to_float(data.train.x).to(device))
        row = {"epoch": 1.0, "time_s": time.perf_counter() - t0,
               **{f"train_{k}": v for k, v in mean_losses(model, data.train).items()}}
        self.epoch = 1
        self.history.append(self._epoch_row(model, data, row))
        self._emit("on_epoch_end", row)
        self._emit("on_fit_end")

    def _fit_gradient(self, model: Autoencoder, data: Dataset, ctx: distributed.Context,
                      resume_from: Path | None) -> None:
        cfg, device = self.cfg, ctx.device
        train_x = data.train.x.to(device)
        train_y = data.train.y.to(device) if model.needs_labels and data.train.y is not None else None
        if model.needs_labels and train_y is None:
            raise DataError(f"{data.name!r} has no labels, and this model trains with them (masks for "
                            "segmentation, class ids for a conditional model): use labelled data")
        self.steps_per_epoch = ctx.steps_per_epoch(len(train_x), cfg.batch_size)
        self.world = ctx.world
        if self.steps_per_epoch == 0 and cfg.epochs > 0:
            raise DataError(f"the training split of {data.name!r} is empty: use more data or a smaller --val-fraction")
        self.optimizer = opt = make_optimizers(model, cfg.lr, cfg.weight_decay, cfg.optimizer)
        if resume_from is not None and resume_from.exists():
            self._restore(resume_from)
        channels_last = cfg.memory_format == "channels_last" and train_x.dim() == 4
        if channels_last:  # after a resume's load: the optimiser's moments follow their parameters
            # Module.to accepts memory_format at run time; torch's overload stubs omit it
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self._converted = True
            for state in (st for o in opt.optimizers.values() for st in o.state.values()):
                for k, v in state.items():
                    if torch.is_tensor(v) and v.dim() == 4:
                        state[k] = v.contiguous(memory_format=torch.channels_last)
        wrapped = ctx.wrap(model, several_steps=len(opt) > 1)  # DDP routes each loss through its forward
        loss_fn = wrapped.loss
        if cfg.compile:
            options: dict[str, str | int | bool | Callable[..., Any]] = {**compile_options(device)}
            loss_fn = torch.compile(loss_fn, options=options)
        autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if cfg.precision == "bf16"
                    else contextlib.nullcontext())
        warm_steps = cfg.beta_warmup_epochs * self.steps_per_epoch
        runner = StepRunner(model, wrapped, loss_fn, opt, autocast, cfg.grad_clip)
        self._emit("on_fit_start")
        for epoch in range(self.epoch, cfg.epochs):
            if self.should_stop:
                break
            model.train()
            ctx.seed_epoch(cfg.seed, epoch)  # every device's sampling noise: a pure function of (seed, epoch, rank)
            self._emit("on_epoch_start", epoch)
            t0 = time.perf_counter()
            acc: torch.Tensor | None = None  # the epoch's loss sums, one device tensor (2 small kernels per step)
            names: list[str] = []
            seen = 0
            lr = None
            for i, (rows, labels, idx) in enumerate(ctx.batches(data.train, train_x, train_y, cfg.batch_size,
                                                                self.data_generator)):
                if lr != (lr := lr_at(cfg, self.step, self.steps_per_epoch)):  # only when the schedule changes it
                    opt.set_lr(lr)
                # idx is already on the device; index_select copies whole rows (12x faster than rows[idx] for a
                # uint8 batch of 128 Fashion-MNIST images)
                batch = Batch(to_float(rows.index_select(0, idx)),
                              labels=None if labels is None else labels.index_select(0, idx),
                              anneal=min(1.0, (self.step + 1) / warm_steps) if warm_steps > 0 else 1.0)
                for k, t in enumerate(self.transforms):
                    batch = t(batch, transform_generator(cfg.seed, self.step, k, ctx.rank))
                if channels_last:
                    batch = batch._replace(x=batch.x.contiguous(memory_format=torch.channels_last))
                runner.stepped = []
                losses = model.train_step(batch, runner)
                self.step += 1
                seen += len(idx)
                terms = {"loss": losses.total, **losses.terms}
                if names and names != list(terms):
                    raise RuntimeError(f"{type(model).__name__}.loss returned the terms {list(terms)} after "
                                       f"{names}: a model must return the same terms at every step")
                names = list(terms)
                vec = torch.stack([v.detach().float() for v in terms.values()])
                acc = vec.mul_(len(idx)) if acc is None else acc.add_(vec, alpha=len(idx))
                if (i + 1) % cfg.log_every == 0 or i + 1 == self.steps_per_epoch:
                    self._emit("on_log", losses, ctx.loss_value(runner.checked()))  # one sync per log_every steps
                self._emit("on_step_end", epoch, i)
            sums, seen = ctx.reduce_sums(dict(zip(names, acc)) if acc is not None else {}, seen)  # over all ranks
            means = {f"train_{k}": float(v) / max(1, seen) for k, v in sums.items()}  # a sync: the epoch's work done
            row: dict[str, Any] = {"epoch": float(epoch + 1), "step": float(self.step),
                                   "lr": opt.param_groups[0]["lr"], "time_s": time.perf_counter() - t0, **means}
            self._epoch_row(model, data, row)
            self.epoch = epoch + 1
            self.history.append(row)
            self._emit("on_epoch_end", row)
            self.should_stop = ctx.any(self.should_stop)  # every rank stops together, or none does
        self._emit("on_fit_end")


def default_callbacks(cfg: TrainConfig, run_dir: Path | None, *, stage: str | None = None,
                      extra: Sequence[Callback] = (), model: Autoencoder | None = None) -> list[Callback]:
    """The standard set: divergence guard, progress, metrics CSV and checkpoint (with a run directory), the
    posterior-collapse warning (a ``model`` with the ``posterior`` capability), early stopping
    (``cfg.early_stopping``), with ``extra`` (user callbacks, TensorBoard) before the checkpoint."""
    ckpt = Path(run_dir) / CHECKPOINT if run_dir is not None else None
    out: list[Callback] = [DivergenceGuard(ckpt), Progress(cfg.progress)]
    if run_dir is not None:
        out.append(MetricsCSV(Path(run_dir) / METRICS, stage))
    if model is not None and model.posterior:  # one warning when the KL stays ~0 (posterior collapse)
        out.append(CollapseWarning())
    if cfg.early_stopping:
        out.append(EarlyStopping(cfg.early_stopping, Path(run_dir) / BEST if run_dir is not None else None))
    out += list(extra)
    if ckpt is not None:
        out.append(Checkpoint(ckpt, cfg.checkpoint_every_s))
    return out


def fit(
    model: Autoencoder,
    data: Dataset,
    cfg: TrainConfig,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    transforms: Sequence[BatchTransform] | None = None,
    stage: str | None = None,
    on_step: Any = None,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``data.train``; validate on ``data.val`` every epoch.  Returns the metrics rows.

    With ``run_dir`` (rank 0 under torchrun) the standard callbacks write ``metrics.csv`` and the checkpoint;
    ``resume`` continues from that checkpoint.  ``callbacks`` are added to the standard ones (before the
    checkpoint); ``transforms`` default to the model's own (``model.batch_transforms(data)``).  ``stage``
    names this fit in metrics.csv when a model trains in stages.  ``on_step(epoch, index)`` is called after
    every optimiser step (tests use it to simulate a kill).
    """
    writes = run_dir if run_dir is not None and distributed.is_main() else None  # rank 0 alone writes
    extra = list(callbacks) + ([LambdaCallback(on_step)] if on_step is not None else [])
    trainer = Trainer(cfg, default_callbacks(cfg, writes, stage=stage, extra=extra, model=model),
                      model.batch_transforms(data) if transforms is None else transforms)
    ckpt = Path(run_dir) / CHECKPOINT if run_dir is not None and resume else None
    return trainer.fit(model, data, resume_from=ckpt)


def replace_epochs(cfg: TrainConfig, epochs: int) -> TrainConfig:
    """``cfg`` for a model's own stage: ``epochs`` epochs, no early stopping."""
    return dataclasses.replace(cfg, epochs=epochs, early_stopping=0)
