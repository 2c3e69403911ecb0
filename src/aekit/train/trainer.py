"""A small model-agnostic trainer.

It only needs ``model.loss(x, anneal) -> Losses``.  Batches are slices of resident tensors; progress is a tqdm
bar with the live loss terms; each epoch ends with validation, a row in ``metrics.csv`` and an atomic
checkpoint; a run killed at any point resumes exactly (same weights as an uninterrupted run).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from ..config import check
from ..data import Dataset, Split, iterate_batches, to_float
from ..errors import ConfigError, TrainingDiverged
from ..models.base import Autoencoder
from . import distributed
from .checkpoint import atomic_save_tensors, load_checkpoint, read_tensors, save_checkpoint
from .optim import AdamStep, make_optimizer
from .tblog import open_tensorboard

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.csv"
BEST = "best.safetensors"
PRETRAINED = "pretrained.safetensors"  # a model's weights after its own pretraining stages (stacked-ae)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine"] = "constant"
    lr_warmup_epochs: float = 0.0
    beta_warmup_epochs: float = 0.0  # KL annealing: the regulariser weight ramps 0 → 1 over these epochs
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    early_stopping: int = 0  # patience in epochs on the validation loss; 0 = off (restores the best epoch)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    bf16: bool = False  # bfloat16 autocast for the forward pass
    compile: bool = False  # torch.compile the model's loss (forward + loss terms); see BENCHMARKS.md for when it pays
    channels_last: bool = False  # conv models: NHWC memory format for weights and batches (pays with --bf16 on CPU)
    log_every: int = 25  # steps between progress updates / finiteness checks (each costs a device sync)
    progress: bool = True
    tensorboard: bool = False  # loss terms + reconstructions per epoch in RUN/tensorboard (needs tensorboard)

    def __post_init__(self) -> None:
        check(self.epochs >= 0, "--epochs must be ≥ 0")
        check(self.batch_size >= 1, "--batch-size must be ≥ 1")
        check(self.lr > 0, "--lr must be > 0, e.g. --lr 1e-3")
        check(self.log_every >= 1, "--log-every must be ≥ 1")
        check(self.early_stopping >= 0, "--early-stopping must be ≥ 0 (0 = off)")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
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


@torch.no_grad()
def mean_losses(model: Autoencoder, split: Split, batch_size: int = 1024, seed: int = 1234) -> dict[str, float]:
    """Batch-size-weighted mean of each loss term over a split (fixed noise seed; global RNG untouched)."""
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    n = len(split)
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for idx in iterate_batches(n, batch_size, shuffle=False):
            x = to_float(split.x[idx.to(split.x.device)]).to(model.device)
            if getattr(model, "supervised", False):  # targets (e.g. masks) sliced with the same indices
                losses = model.loss(x, y=split.y[idx.to(split.y.device)].to(model.device))
            else:
                losses = model.loss(x)
            for k, v in {"loss": losses.total, **losses.terms}.items():
                sums[k] = sums.get(k, 0.0) + v.detach().double() * len(idx)
    model.train(was_training)
    return {k: float(v) / max(1, n) for k, v in sums.items()}


def read_metrics(path: Path) -> list[dict[str, float | str]]:
    """Rows of a metrics.csv: numbers as floats, text (the ``stage`` column) as is, empty cells left out."""
    def value(v: str) -> float | str:
        try:
            return float(v)
        except ValueError:
            return v

    with Path(path).open() as f:
        return [{k: value(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


class _MetricsLog:
    """metrics.csv, one row per epoch; on resume, rows after the checkpoint are dropped.

    With ``stage`` (a model's extra training stages, e.g. stacked-ae's ``pretrain-1`` … ``finetune``) rows carry
    a ``stage`` column, and rows of other stages already in the file are kept.
    """

    def __init__(self, path: Path | None, keep_epochs: int, stage: str | None = None):
        self.path = path
        self.stage = stage
        self.rows: list[dict[str, float | str]] = []
        if path is not None and path.exists():
            self.rows = [r for r in read_metrics(path)
                         if r.get("stage") != stage or (keep_epochs > 0 and float(r["epoch"]) <= keep_epochs)]
        self._write()

    def add(self, row: dict[str, float | str]) -> None:
        self.rows.append({"stage": self.stage, **row} if self.stage else row)
        self._write()

    def _write(self) -> None:
        if self.path is not None:
            _write_rows(self.path, self.rows)


def _write_rows(path: Path, rows: list[dict[str, float | str]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys or ["epoch"])
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def append_metrics(run_dir: Path, rows: list[dict[str, float | str]]) -> None:
    """Append rows (of a model's own training stage; they carry their ``stage``) to ``run_dir``'s metrics.csv."""
    path = Path(run_dir) / METRICS
    _write_rows(path, (read_metrics(path) if path.exists() else []) + list(rows))


def fit(
    model: Autoencoder,
    data: Dataset,
    cfg: TrainConfig,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    on_step: Callable[[int, int], None] | None = None,
    corrupt: Callable[[torch.Tensor], torch.Tensor] | None = None,
    stage: str | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` on ``data.train``; validate on ``data.val`` every epoch.  Returns the metrics rows.

    ``on_step(epoch, step)`` is called after every optimiser step (tests use it to simulate a kill).
    ``corrupt`` (denoising) maps a clean batch to the model input; the loss targets the clean batch.
    ``stage`` names this fit in metrics.csv (a ``stage`` column) when a model trains in stages; rows of
    earlier stages in the file are kept.
    """
    ctx = distributed.setup(resolve_device(cfg.device))  # torchrun: join the process group (else a no-op)
    device = ctx.device
    run_dir_writes = run_dir if ctx.is_main else None  # rank 0 alone writes the run directory
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # Adam's moments fill with denormals and slow every step otherwise
    model.to(device)
    metrics_path = Path(run_dir_writes) / METRICS if run_dir_writes is not None else None
    if model.closed_form:
        model.fit(to_float(data.train.x).to(device))
        row = {"epoch": 1.0, **{f"train_{k}": v for k, v in mean_losses(model, data.train).items()}}
        if len(data.val):
            row.update({f"val_{k}": v for k, v in mean_losses(model, data.val).items()})
        mlog = _MetricsLog(metrics_path, 0)
        mlog.add(row)
        tb = open_tensorboard(cfg.tensorboard, run_dir_writes, data)
        if tb is not None:
            tb.log_epoch(model, row, 1)
            tb.close()
        return mlog.rows

    train_x = data.train.x.to(device)
    # supervised models (``supervised = True``, e.g. U-Net) get the targets sliced with the same indices, and
    # their optional ``augment_batch(x, y, generator)`` with a generator seeded from (seed, step): a pure
    # function of the step, so there is nothing to checkpoint and resume stays exact
    train_y = data.train.y.to(device) if getattr(model, "supervised", False) else None
    augment = getattr(model, "augment_batch", None)
    n = len(train_x)
    steps_per_epoch = ctx.steps_per_epoch(n, cfg.batch_size)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.optimizer)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    loop = {"epoch": 0, "step": 0, "best": math.inf, "best_epoch": 0, "bad_epochs": 0}
    ckpt = Path(run_dir) / CHECKPOINT if run_dir is not None else None
    if resume and ckpt is not None and ckpt.exists():
        loop = load_checkpoint(ckpt, model, opt, data_gen)
        log.info("resumed from %s at epoch %d", ckpt, loop["epoch"])
    mlog = _MetricsLog(metrics_path, loop["epoch"], stage)
    tb = open_tensorboard(cfg.tensorboard, run_dir_writes, data)
    best_state = None
    best_path = Path(run_dir) / BEST if run_dir is not None else None
    memory_format = torch.channels_last if cfg.channels_last and train_x.dim() == 4 else None
    if memory_format is not None:  # after a resume's load: the optimiser's moments follow their parameters
        model.to(memory_format=memory_format)
        for state in opt.state.values():
            for k, v in state.items():
                if torch.is_tensor(v) and v.dim() == 4:
                    state[k] = v.contiguous(memory_format=memory_format)
    opt_step = AdamStep(opt)  # after the resume's load and the channels_last move: it keeps the state tensors
    if cfg.early_stopping and loop["best_epoch"] and best_path is not None and best_path.exists():
        best_state = read_tensors(best_path)[0]
    if run_dir_writes is None:
        ckpt = best_path = None
    loss_fn = ctx.wrap(model).loss  # DDP routes the loss through its forward; else the model's own
    if cfg.compile:
        loss_fn = torch.compile(loss_fn, options=compile_options(device))
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext()
    )
    warm_steps = cfg.beta_warmup_epochs * steps_per_epoch
    for epoch in range(loop["epoch"], cfg.epochs):
        if cfg.early_stopping and loop["bad_epochs"] >= cfg.early_stopping:
            break
        model.train()
        ctx.seed_epoch(cfg.seed, epoch)
        t0 = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        acc: torch.Tensor | None = None  # the epoch's loss sums, one device tensor (2 small kernels per step)
        seen = 0
        lr = None
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=None if cfg.progress else True,
                   leave=False, dynamic_ncols=True)
        for i, (bx, by, idx) in enumerate(ctx.batches(data.train, train_x, train_y, cfg.batch_size, data_gen)):
            step = loop["step"]
            if lr != (lr := lr_at(cfg, step, steps_per_epoch)):  # only when the schedule changes it
                for g in opt.param_groups:
                    g["lr"] = lr
            # idx is already on the device (no per-step host-device copy); index_select copies whole rows
            # (measured 12x faster than bx[idx] for a uint8 batch of 128 Fashion-MNIST images)
            x = to_float(bx.index_select(0, idx))
            if memory_format is not None:
                x = x.contiguous(memory_format=memory_format)
            yb = None if by is None else by.index_select(0, idx)
            if yb is not None and augment is not None:
                x, yb = augment(x, yb, torch.Generator().manual_seed((cfg.seed * 2**32 + step) % 2**64))
            anneal = min(1.0, (step + 1) / warm_steps) if warm_steps > 0 else 1.0
            with autocast:
                if yb is not None:
                    losses = loss_fn(x, y=yb, anneal=anneal)
                else:
                    losses = loss_fn(corrupt(x), anneal=anneal, target=x) if corrupt else loss_fn(x, anneal=anneal)
            opt_step.zero_grad()
            losses.total.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt_step()
            loop["step"] = step + 1
            seen += len(idx)
            terms = {"loss": losses.total, **losses.terms}
            vec = torch.stack([v.detach().float() for v in terms.values()])
            acc = vec.mul_(len(idx)) if acc is None else acc.add_(vec, alpha=len(idx))
            if (i + 1) % cfg.log_every == 0 or i + 1 == steps_per_epoch:
                total = ctx.loss_value(losses.total)  # one sync per log_every steps (all ranks agree)
                if not math.isfinite(total):
                    bar.close()
                    raise TrainingDiverged(
                        f"training diverged at epoch {epoch + 1}, step {i + 1} (loss is {total}): lower --lr "
                        f"(now {cfg.lr:g}) or add --grad-clip 1.0"
                        + (f"; the last good checkpoint (epoch {loop['epoch']}) is kept, resume with --resume "
                           f"{run_dir}" if ckpt is not None and ckpt.exists() else "")
                    )
                bar.set_postfix({k: f"{v.detach().item():.4g}" for k, v in losses.terms.items()})
                bar.update(i + 1 - bar.n)
            if on_step is not None:
                on_step(epoch, i)
        bar.close()
        t1 = time.perf_counter()
        if acc is not None:
            sums = dict(zip(terms, acc))
        sums, seen = ctx.reduce_sums(sums, seen)  # over all ranks (once per epoch)
        row = {"epoch": float(epoch + 1), "step": float(loop["step"]), "lr": opt.param_groups[0]["lr"],
               "time_s": t1 - t0}
        row.update({f"train_{k}": float(v) / max(1, seen) for k, v in sums.items()})
        if len(data.val):
            row.update({f"val_{k}": v for k, v in mean_losses(model, data.val).items()})
        loop["epoch"] = epoch + 1
        monitored = row.get("val_loss", row["train_loss"])
        if cfg.early_stopping:
            if monitored < loop["best"] - 1e-6:
                loop.update(best=monitored, best_epoch=epoch + 1, bad_epochs=0)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if best_path is not None:
                    atomic_save_tensors(best_state, best_path)
            else:
                loop["bad_epochs"] += 1
        mlog.add(row)
        if tb is not None:
            tb.log_epoch(model, row, epoch + 1)
        log.info("epoch %d/%d  train_loss %.4g  %s  (%.1fs)", epoch + 1, cfg.epochs, row["train_loss"],
                 "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k.startswith("val_")), row["time_s"])
        if ckpt is not None:
            save_checkpoint(ckpt, model, opt, data_gen, loop)
    if tb is not None:
        tb.close()
    if cfg.early_stopping and best_state is not None:
        model.load_state_dict(best_state)
    return mlog.rows
