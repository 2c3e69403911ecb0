"""Trainer callbacks: checkpointing, early stopping, the metrics CSV, the divergence guard and progress.

A :class:`Callback` overrides the hooks it needs; the trainer calls them in list order.  ``trainer`` gives the
model, the optimiser, the config and the loop state (``trainer.epoch``, ``trainer.step``,
``trainer.steps_per_epoch``, ``trainer.history``); setting ``trainer.should_stop = True`` ends training after
the current epoch.  A callback with state that must survive a kill returns it (JSON-able) from
:meth:`Callback.state_dict`; checkpoints store it under the callback's ``key`` and a resumed run gets it back
through :meth:`Callback.load_state_dict` before ``on_fit_start``.

Users pass their own: ``aekit.train.fit(model, data, cfg, callbacks=[MyCallback()])``.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import TrainingDiverged
from ..models.base import Losses
from .checkpoint import (
    atomic_save_tensors,
    atomic_write_text,
    checkpoint_epoch,
    non_finite,
    read_tensors,
    save_checkpoint,
)

if TYPE_CHECKING:
    from .trainer import Trainer

log = logging.getLogger("aekit.train")

__all__ = ["Callback", "Checkpoint", "CollapseWarning", "DivergenceGuard", "EarlyStopping", "LambdaCallback", "MetricsCSV",
           "Progress", "append_metrics", "read_metrics"]


class Callback:
    """Hooks of the training loop (all optional).  ``key`` names the callback's state in checkpoints."""

    key: str = ""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...

    def on_step_end(self, trainer: Trainer, epoch: int, index: int) -> None:
        """After every optimiser step (``index`` within the epoch): keep it cheap, no device syncs."""

    def on_log(self, trainer: Trainer, losses: Losses, loss: float) -> None:
        """Every ``log_every`` steps and at an epoch's last step; ``loss`` is the synced total (all ranks)."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """After validation; ``row`` is the epoch's metrics row (train_* and val_* terms, lr, time_s)."""

    def on_fit_end(self, trainer: Trainer) -> None: ...

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        """Training stopped with ``error`` (a divergence, a kill): release what the callback holds."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class LambdaCallback(Callback):
    """``on_step_end`` from a plain function ``fn(epoch, index)`` (tests use it to simulate a kill)."""

    def __init__(self, on_step: Any):
        self.fn = on_step

    def on_step_end(self, trainer: Trainer, epoch: int, index: int) -> None:
        self.fn(epoch, index)


# --------------------------------------------------------------------------------------------- the guard


def training_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint would save: parameters, buffers and the optimiser's state."""
    out = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    if trainer.optimizer is not None:
        for pid, st in trainer.optimizer.state_dict()["state"].items():
            out.update({f"optim.{pid}.{k}": v for k, v in st.items() if torch.is_tensor(v)})
    return out


class DivergenceGuard(Callback):
    """Stops with one line when training diverges: a non-finite loss (checked every ``log_every`` steps), or
    non-finite parameters, buffers (BatchNorm statistics) or optimiser state at an epoch end — a loss can stay
    finite while ``running_var`` or Adam's ``exp_avg_sq`` overflow.  Runs before every other epoch-end hook,
    so a diverged epoch is neither logged nor checkpointed."""

    def __init__(self, checkpoint: Path | None = None):
        self.checkpoint = checkpoint

    def _fail(self, trainer: Trainer, epoch: int, what: str) -> None:
        """``epoch``: the 1-based epoch that diverged; the checkpoint on disk is an earlier one (with
        ``--checkpoint-every-s`` maybe several epochs earlier: its own metadata says which)."""
        cfg = trainer.cfg
        keep = ""
        if self.checkpoint is not None and self.checkpoint.exists():
            run = self.checkpoint.parent
            saved = checkpoint_epoch(self.checkpoint)
            at = f" (epoch {saved})" if saved is not None else ""
            keep = (f"; the last good checkpoint{at} is kept: resume it with a lower rate, "
                    f"`aekit train --resume {run} --lr {cfg.lr / 10:g}`")
        raise TrainingDiverged(f"training diverged at epoch {epoch} ({what}): lower --lr (now "
                               f"{cfg.lr:g}) or add --grad-clip 1.0{keep}")

    def on_log(self, trainer: Trainer, losses: Losses, loss: float) -> None:
        if not math.isfinite(loss):  # mid-epoch: trainer.epoch counts the finished epochs
            self._fail(trainer, trainer.epoch + 1, f"step {trainer.step}, loss is {loss}")

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        epoch = int(row["epoch"])
        bad = non_finite(training_state(trainer))
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            self._fail(trainer, epoch, f"non-finite values in {bad[0]}{more}")
        bad_terms = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad_terms:
            self._fail(trainer, epoch, f"{bad_terms[0]} is {row[bad_terms[0]]}")


# --------------------------------------------------------------------------------------------- metrics


def read_metrics(path: Path) -> list[dict[str, float | str]]:
    """Rows of a metrics.csv: numbers as floats, text (the ``stage`` column) as is, empty cells left out."""
    def value(v: str) -> float | str:
        try:
            return float(v)
        except ValueError:
            return v

    with Path(path).open(newline="") as f:
        return [{k: value(v) for k, v in r.items() if k is not None and v not in ("", None)} for r in csv.DictReader(f)]


def _csv_text(rows: list[dict[str, Any]]) -> str:
    import io

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys or ["epoch"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, _csv_text(rows))


def append_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows (of a model's own training stage; they carry their ``stage``) to ``run_dir``'s metrics.csv."""
    path = Path(run_dir) / "metrics.csv"
    write_metrics(path, (read_metrics(path) if path.exists() else []) + list(rows))


class MetricsCSV(Callback):
    """``metrics.csv``, one row per epoch, rewritten atomically; on resume the rows after the checkpoint go.

    With ``stage`` (a model's training stages, e.g. stacked-ae's ``pretrain-1`` … ``finetune``) rows carry a
    ``stage`` column, and rows of other stages already in the file are kept.
    """

    def __init__(self, path: Path, stage: str | None = None):
        self.path = Path(path)
        self.stage = stage
        self.rows: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        keep = trainer.epoch
        old = read_metrics(self.path) if self.path.exists() else []
        self.rows = [r for r in old if r.get("stage") != self.stage or (keep > 0 and float(r["epoch"]) <= keep)]
        write_metrics(self.path, self.rows)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.rows.append({"stage": self.stage, **row} if self.stage else dict(row))
        write_metrics(self.path, self.rows)


# --------------------------------------------------------------------------------------------- early stopping


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without a better validation loss (the training loss without a validation
    split) and restores the best epoch's weights at the end; with ``path`` they are also kept on disk
    (``best.safetensors``), so a resumed run can restore them too."""

    key = "early_stopping"

    def __init__(self, patience: int, path: Path | None = None, min_delta: float = 1e-6):
        self.patience = patience
        self.path = path
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state.get("best", math.inf))
        self.best_epoch = int(state.get("best_epoch", 0))
        self.bad_epochs = int(state.get("bad_epochs", 0))

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.best_epoch and self.path is not None and self.path.exists():
            state, meta = read_tensors(self.path)
            # a kill between writing best.safetensors and the epoch's checkpoint leaves a file from an epoch the
            # checkpoint does not know: it is used only when it is the checkpoint's best epoch
            if meta.get("aekit_epoch") == str(self.best_epoch):
                self.best_state = state
        if self.bad_epochs >= self.patience:
            trainer.should_stop = True

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        monitored = row.get("val_loss", row.get("train_loss"))
        if monitored is None:  # an epoch without batches or validation: nothing to compare
            return
        if monitored < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = float(monitored), int(row["epoch"]), 0
            self.best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            if self.path is not None:
                atomic_save_tensors(self.best_state, self.path, {"aekit_epoch": str(self.best_epoch)})
        else:
            self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            trainer.should_stop = True

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)


# --------------------------------------------------------------------------------------------- checkpoint


class Checkpoint(Callback):
    """The resumable state: model, optimiser, data order, loop counters and every callback's state, written
    atomically (a kill leaves the old checkpoint or the new one).  Put it last: it saves what the callbacks
    before it have updated.

    It is written at an epoch end when ``every_s`` seconds have passed since the last write (or since training
    started), and always after the last epoch and when training stops early; ``every_s=0``: every epoch.  A
    run killed between two writes resumes from the older one and replays the epochs after it: the data order
    and the sampling noise are functions of (seed, epoch), so the replay trains what the killed run trained.
    """

    def __init__(self, path: Path, every_s: float = 0.0):
        self.path = Path(path)
        self.every_s = every_s
        self.last = 0.0

    def on_fit_start(self, trainer: Trainer) -> None:
        self.last = time.monotonic()

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.optimizer is None:  # closed-form models: nothing to resume
            return
        final = trainer.epoch >= trainer.cfg.epochs or trainer.should_stop
        if not final and self.every_s > 0 and time.monotonic() - self.last < self.every_s:
            return
        save_checkpoint(self.path, trainer.model, trainer.optimizer, trainer.data_generator, trainer.loop_state())
        self.last = time.monotonic()


# --------------------------------------------------------------------------------------------- progress


class Progress(Callback):
    """A tqdm bar per epoch with the live loss terms on a terminal; elsewhere (CI, a log file) a log line every
    ``interval`` seconds, so long epochs still show progress; and one line per epoch with its metrics."""

    def __init__(self, enabled: bool = True, interval: float = 30.0, stream: Any = None):
        self.enabled = enabled
        self.interval = interval
        self.stream = stream
        self.bar: Any = None
        self.last = 0.0

    def _tty(self) -> bool:
        s = self.stream or sys.stderr
        return bool(getattr(s, "isatty", lambda: False)())

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.last = time.monotonic()
        if self.enabled and self._tty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=trainer.steps_per_epoch, desc=f"epoch {epoch + 1}/{trainer.cfg.epochs}",
                            leave=False, dynamic_ncols=True, file=self.stream)

    def on_log(self, trainer: Trainer, losses: Losses, loss: float) -> None:
        done = trainer.step - trainer.epoch * trainer.steps_per_epoch
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v.detach().item():.4g}" for k, v in losses.terms.items()})
            self.bar.update(done - self.bar.n)
        elif self.enabled and time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            log.info("epoch %d/%d: %d/%d steps (%.0f%%), loss %.4g", trainer.epoch + 1, trainer.cfg.epochs, done,
                     trainer.steps_per_epoch, 100.0 * done / max(1, trainer.steps_per_epoch), loss)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self._close()
        log.info("epoch %d/%d  train_loss %.4g  %s  (%.1fs)", int(row["epoch"]), trainer.cfg.epochs,
                 row.get("train_loss", float("nan")),
                 "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k.startswith("val_")), row.get("time_s", 0.0))

    def on_fit_end(self, trainer: Trainer) -> None:
        self._close()

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        self._close()


# --------------------------------------------------------------------------------------------- posterior collapse


class CollapseWarning(Callback):
    """One warning, with the remedies, when a posterior model's validation KL (``val_kl``; ``train_kl`` without
    a validation split) stays below :data:`aekit.models.collapse.KL_THRESHOLD_NATS` nats per sample.

    A VAE often passes through a low-KL phase early and recovers (the β = 1 MLP VAE on the digits: below 0.1
    nats from its 2nd to its 10th epoch, about 100 steps, then 1.8 nats), so a dip alone is not reported: the
    warning comes once the KL has stayed below the threshold for ``patience_steps`` optimiser steps after the KL
    warm-up (``--beta-warmup-epochs``) has ended, or when training ends with it below the threshold.  Added by
    :func:`~aekit.train.trainer.default_callbacks` for models with the ``posterior`` capability.
    """

    key = "collapse_warning"

    def __init__(self, threshold: float | None = None, patience_steps: int = 2000):
        from ..models.collapse import KL_THRESHOLD_NATS

        self.threshold = KL_THRESHOLD_NATS if threshold is None else threshold
        self.patience_steps = patience_steps
        self.warned = False
        self.low_since: int | None = None  # the step after which the KL was first found low (this stretch)
        self.last: tuple[int, float, str] | None = None  # (epoch, KL, which split) of the last epoch seen

    def state_dict(self) -> dict[str, Any]:
        return {"warned": self.warned, "low_since": self.low_since}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warned = bool(state.get("warned", False))
        low = state.get("low_since")
        self.low_since = None if low is None else int(low)

    def _warn(self, what: str, config: Any = None) -> None:
        from ..models.collapse import hint

        self.warned = True
        log.warning("posterior collapse: %s (threshold %g nats per sample): %s", what, self.threshold, hint(config))

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        kl = row.get("val_kl", row.get("train_kl"))
        if self.warned or kl is None:
            return
        epoch, kl, split = int(row["epoch"]), float(kl), "validation" if "val_kl" in row else "training"
        self.last = (epoch, kl, split)
        warm_steps = trainer.cfg.beta_warmup_epochs * trainer.steps_per_epoch
        if kl >= self.threshold or trainer.step < warm_steps:  # during the warm-up the KL is not yet fully weighed
            self.low_since = None
            return
        if self.low_since is None:
            self.low_since = trainer.step
        if trainer.step - self.low_since >= self.patience_steps:
            self._warn(f"the {split} KL has stayed below the threshold for {trainer.step - self.low_since} steps "
                       f"({kl:.3g} nats per sample at epoch {epoch})", trainer.model.config)

    def on_fit_end(self, trainer: Trainer) -> None:
        if not self.warned and self.last is not None and self.last[1] < self.threshold:
            epoch, kl, split = self.last
            self._warn(f"training ended with a {split} KL of {kl:.3g} nats per sample (epoch {epoch})",
                       trainer.model.config)
