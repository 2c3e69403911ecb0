"""Data-parallel training (DDP) for the trainer, detected from torchrun's environment.

``torchrun --nproc-per-node N -m aekit train ...`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (and the
rendezvous address); :func:`setup` then joins the process group — gloo on CPU, NCCL on CUDA, one GPU per
local rank — and returns a :class:`Context`.  A plain ``aekit train`` gets the single-process context and
none of this code does anything.

The rules, so that N processes train the same model a single process would:

- ``--batch-size`` is the *global* batch.  Every rank draws the same permutation from the shared seed; each
  global batch is split into equal strided shards (rank r takes samples r, r + N, …), and DDP averages the
  gradients, which is then exactly the gradient of the global batch mean.  The few samples of a last batch
  that do not split evenly (at most N − 1 per epoch) are skipped, and so is a last batch that would give each
  rank a single sample (BatchNorm cannot train on one sample) unless it is the epoch's only batch.
- Rank 0 alone writes the run directory (config, metrics, checkpoints, weights, evaluation, report); every
  rank reads the checkpoint on ``--resume``.  Checkpoints are written at epoch ends, and every rank reseeds
  its sampling noise from (seed, epoch, rank) at each epoch start, so a resumed run continues exactly.
- BatchNorm: on CUDA (NCCL) the model's BatchNorm layers become SyncBatchNorm, so their statistics are those of
  the global batch and N processes train what one would (up to floating-point summation order).  On CPU
  (gloo) SyncBatchNorm is not supported: each process normalises with the statistics of its own shard, so a
  model with BatchNorm trains *almost*, not exactly, what one process would; models without BatchNorm (the
  VAE, linear and tied AEs) train the same model.
- A model with several parameter groups (FactorVAE: the VAE, then its discriminator, each with its own optimiser
  and its own forward / backward per step) is wrapped with ``find_unused_parameters=True``: each of its loss
  methods runs through DDP's forward (``call(fn, ...)``), and the parameters one loss does not reach are marked ready, so
  every step's gradients are still averaged over the processes.
- Epoch metrics are sums all-reduced once per epoch; the finiteness check every ``log_every`` steps is one
  tiny all-reduce, so a NaN on one rank stops every rank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.distributed as dist
import torch.nn as nn

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..models.base import Autoencoder

log = logging.getLogger(__name__)

_STARTED_HERE = False  # the process group was created by setup() (and is destroyed by finish())


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers: start with torchrun") from None
    return rank, world, local


def is_main() -> bool:
    """True on the process that writes files: rank 0, or the only process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_world()[0] == 0


def seed_device(device: torch.device, seed: int) -> None:
    """Seed the CPU generator and the generator of ``device`` only (``torch.manual_seed`` would reseed every
    GPU's generator, and the trainer gives back only those of the devices it trains on)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process stands: rank, world size and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------------------------------- batches
    def steps_per_epoch(self, n: int, batch_size: int) -> int:
        if batch_size % self.world:
            raise ConfigError(f"--batch-size {batch_size} is the global batch, split evenly over {self.world} "
                              f"processes: use a multiple of {self.world}, e.g. {batch_size - batch_size % self.world or self.world}")
        full, last = divmod(n, batch_size)
        return full + (1 if self._last_kept(full, last) else 0)

    def _last_kept(self, full: int, last: int) -> bool:
        """Whether a trailing partial batch of ``last`` samples (after ``full`` full ones) is trained on."""
        per_rank = (last - last % self.world) // self.world
        return per_rank >= 2 or (per_rank == 1 and full == 0)

    def shard(self, idx: torch.Tensor, droppable: bool = False) -> torch.Tensor | None:
        """This rank's equal strided share of a global batch of indices (None: skip this batch).

        ``droppable``: a trailing partial batch after others; skipped when it would leave one sample per rank.
        """
        usable = len(idx) - len(idx) % self.world
        if not usable or (droppable and usable == self.world):
            return None
        return idx if self.world == 1 else idx[self.rank:usable:self.world]

    def index_batches(self, n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """One epoch of this rank's index batches: one permutation drawn on the host from the shared
        generator (so resume and every rank agree), moved to the device once, sliced per step."""
        order = torch.randperm(n, generator=generator)
        if self.device.type != "cpu":
            order = order.to(self.device, non_blocking=True)
        for start in range(0, n, batch_size):
            idx = self.shard(order[start:start + batch_size], droppable=start > 0 and n - start < batch_size)
            if idx is not None:
                yield idx

    def batches(self, split: Any, x: Any, y: torch.Tensor | None, batch_size: int,
                generator: torch.Generator) -> Iterator[tuple[Any, torch.Tensor | None, torch.Tensor]]:
        """One epoch of ``(rows, targets or None, this rank's batch indices into them)``.

        In-memory splits: ``rows`` is the resident ``x`` itself.  Streamed splits (:mod:`aekit.data.stream`):
        the resident chunk.
        """
        stream = getattr(split, "epoch_batches", None)
        if stream is not None:
            yield from stream(batch_size, generator, self.shard, self.device, with_y=y is not None)
            return
        for idx in self.index_batches(len(x), batch_size, generator):
            yield x, y, idx

    # ------------------------------------------------------------------------------------------- model
    def sync_batchnorm(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        """DDP on CUDA: ``model``'s BatchNorm layers as SyncBatchNorm (statistics over the global batch, as one
        process computes them) while the context lasts, then the caller's layers again; otherwise nothing."""
        if self.distributed and self.device.type == "cuda":
            return synced_batchnorm(model)
        return contextlib.nullcontext()

    def wrap(self, model: nn.Module, several_steps: bool = False) -> Any:
        """What the trainer calls ``.loss(...)`` (and ``.call(method, ...)`` for a model's other loss methods)
        on: the model's own loss (``call(fn, ...)``: ``fn(...)``), or them through DDP's forward.  ``several_steps``: the model takes one optimiser
        step per parameter group, each from its own loss (DDP then finds the parameters a loss leaves unused)."""
        if not self.distributed:
            return _Local(model)
        if self.device.type != "cuda" and any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) for m in model.modules()):
            log.info("DDP on %s (gloo): BatchNorm statistics are computed per process over its shard of the batch "
                     "(SyncBatchNorm needs CUDA); gradients are still those of the global batch", self.device.type)
        return _DDPLoss(model, self.device, find_unused=several_steps)

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Sampling noise of every device (CPU and all GPUs), a pure function of (seed, epoch, rank): a resumed
        run draws what an uninterrupted one would, with no generator state to checkpoint."""
        seed_device(self.device, (seed * 1_000_003 + epoch * 7_919 + self.rank) % 2**63)

    # ------------------------------------------------------------------------------------- collectives
    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def reduce_sums(self, sums: dict[str, torch.Tensor], seen: int) -> tuple[dict[str, torch.Tensor], int]:
        """Epoch sums and sample count over all ranks (one all-reduce per epoch)."""
        if not self.distributed or not sums:
            return sums, seen
        keys = list(sums)
        vec = torch.stack([torch.as_tensor(sums[k], device=self.device).float() for k in keys]
                          + [torch.tensor(float(seen), device=self.device)])
        vec = self.all_sum(vec.double()).cpu()
        return {k: vec[i] for i, k in enumerate(keys)}, int(vec[-1].item())

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any (one tiny all-reduce; no-op in one process)."""
        if not self.distributed:
            return flag
        return bool(self.all_sum(torch.tensor([float(flag)], device=self.device)).item() > 0)

    def loss_value(self, total: torch.Tensor) -> float:
        """The loss as a float for the finiteness check; a non-finite loss on any rank is non-finite on all."""
        if self.distributed:
            total = self.all_sum(total.detach().float().reshape(1)) / self.world
        return float(total.detach().item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


class _LossForward(nn.Module):
    """DDP prepares its gradient hooks in ``forward``: route ``loss(...)`` through it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args: Any, fn: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        return (fn or cast("Autoencoder", self.model).loss)(*args, **kwargs)


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@contextlib.contextmanager
def synced_batchnorm(model: nn.Module) -> Iterator[None]:
    """``model``'s BatchNorm layers replaced in place by SyncBatchNorm ones (same parameters and buffers) for the
    context, and the original layers put back afterwards with the state they reached, so the caller's model
    keeps its own classes (a SyncBatchNorm layer cannot run outside a process group)."""
    originals = [(name, m) for name, m in model.named_modules() if isinstance(m, _BATCHNORMS)]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model or not originals, "the model itself is a BatchNorm layer"  # children convert in place
    try:
        yield
    finally:
        for name, original in originals:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            original.load_state_dict(getattr(parent, child).state_dict())  # the statistics trained meanwhile
            setattr(parent, child, original)


class _Local:
    """One process: the model's own methods."""

    def __init__(self, model: nn.Module):
        self.loss = cast("Autoencoder", model).loss

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


class _DDPLoss:
    def __init__(self, model: nn.Module, device: torch.device, find_unused: bool = False):
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(_LossForward(model), device_ids=ids, output_device=ids[0] if ids else None,
                                           find_unused_parameters=find_unused)

    def loss(self, *args: Any, **kwargs: Any) -> Any:
        return self.ddp(*args, **kwargs)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.ddp(*args, fn=fn)


def setup(device: torch.device) -> Context:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); the single-process context otherwise.

    On CUDA each process takes the GPU of its local rank.  Safe to call more than once.
    """
    global _STARTED_HERE
    rank, world, local = env_world()
    if world <= 1:
        return Context(0, 1, device)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} has no GPU ({torch.cuda.device_count()} visible): start at most "
                              "one process per GPU (--nproc-per-node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"distributed training runs on cpu (gloo) or cuda (nccl), not {device.type}: "
                          "use --device cpu or cuda")
    if not dist.is_initialized():
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ConfigError(f"WORLD_SIZE={world} but {missing[0]} is not set: start multi-process training "
                              "with torchrun (e.g. torchrun --nproc-per-node 2 -m aekit train ...)")
        backend = backend_for(device)
        extra: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(minutes=30),
                                **extra)
        _STARTED_HERE = True
        log.info("distributed: rank %d of %d (%s, %s)", rank, world, backend, device)
    return Context(dist.get_rank(), dist.get_world_size(), device)


def finish() -> None:
    """Leave the process group if :func:`setup` created it."""
    global _STARTED_HERE
    if _STARTED_HERE and dist.is_initialized():
        dist.destroy_process_group()
    _STARTED_HERE = False
