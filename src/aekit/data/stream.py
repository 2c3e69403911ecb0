"""Data larger than memory: ``npy:`` and ``images:`` datasets bigger than ``--memory-budget`` are streamed.

Normal data keeps the in-memory fast path (one resident tensor, batches sliced from it).  When the source
would not fit the budget, its loader returns a :class:`Dataset` whose splits read rows on demand instead:

- ``train`` is a :class:`StreamSplit`.  Each epoch it visits the split in *chunks* of consecutive rows (about a
  quarter of the budget each, so the chunk in use plus the one prefetched in a background thread stay well
  inside it): the chunk order and the order within each chunk are shuffled with the trainer's data generator,
  so an epoch is deterministic under ``--seed`` and resumes exactly.  Batches are sliced from the resident
  chunk like in the fast path; the few rows a chunk leaves over are carried into the next chunk, so every
  batch but the last is full.
- ``val`` is read into memory when it fits a quarter of the budget (it is capped by ``--max-val``), else lazy.
- ``test`` (and a lazy ``val``) hold a :class:`LazyRows` as ``x``: a read-only tensor look-alike whose
  indexing (``x[idx]``, ``x[a:b]``) reads just those rows, so evaluation and the report work unchanged.

The split membership is the same as if the data had been loaded whole (same seeds, same index arithmetic).
``.npy`` rows are read with ``os.preadv`` straight into the chunk buffer: the OS page cache is not part of
the process's resident memory, so peak RSS is bounded by the budget plus the model's own footprint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .base import DataConfig, Dataset, Split, split_indices

log = logging.getLogger(__name__)

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """``"2GB"`` → 2·10⁹ bytes; also ``512MB``, ``1.5G``, ``800MiB``, ``1e9``."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(f"--memory-budget {text!r} is not a size: use e.g. 2GB, 512MB or 800MiB")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size < 2**16:
        raise ConfigError(f"--memory-budget {text!r} is below 64 KiB: give e.g. 512MB or 2GB")
    return size


def physical_memory() -> int | None:
    """This machine's physical memory in bytes (``os.sysconf``), or None where it cannot be read."""
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        return None
    return pages * page if pages > 0 and page > 0 else None


def format_bytes(n: float) -> str:
    """``1.5e9`` → ``"1.5 GB"`` (decimal units, as --memory-budget reads them)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def check_memory(nbytes: float, what: str, fix: str, *, error: type[Exception] = ConfigError) -> None:
    """Refuse a request that needs more than this machine's physical memory: ``what`` needs ``nbytes``; the
    one-line message names both sizes and ``fix``.  Called before the allocation, so a request that cannot run
    fails at once instead of swapping or being killed."""
    limit = physical_memory()
    if limit is not None and nbytes > limit:
        raise error(f"{what} would need about {format_bytes(nbytes)}, more than this machine's {format_bytes(limit)} of "
                    f"memory: {fix}")


def budget_of(cfg: DataConfig) -> int | None:
    budget = getattr(cfg, "memory_budget", None)
    return None if budget is None else parse_size(budget)


# --------------------------------------------------------------------------------------------- row sources


class RowSource(Protocol):
    """Rows of a dataset on disk: ``read(rows)`` returns them (sorted, unique indices) as one array."""

    n: int
    kind: Literal["image", "table"]

    @property
    def row_shape(self) -> tuple[int, ...]: ...  # read-only: a source may declare a more precise tuple type

    def read(self, rows: np.ndarray) -> np.ndarray: ...


def _runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """(position in ``rows``, first row, count) of each run of consecutive row numbers."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(rows)]])
    return [(int(s), int(rows[s]), int(e - s)) for s, e in zip(starts, ends)]


class NpyRows:
    """Rows of a C-ordered ``.npy`` file, read with ``os.preadv`` (no mapping, no page-cache RSS).

    uint8 / bool / integer / [0, 1] float images in (N, H, W), (N, C, H, W) or (N, H, W, C) come out as uint8
    (n, C, H, W); 2-D numeric tables as float32 (n, D).  Values are checked as they are read.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = header(f)
                self.offset = f.tell()
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read the header of {self.path} ({e}): save the array with numpy.save") from e
        if dtype.hasobject or dtype.kind not in "biuf":
            raise DataError(f"{self.path} has dtype {dtype}, not numbers: save a numeric array")
        if fortran and len(shape) > 1:
            raise DataError(f"{self.path} is stored in Fortran order and cannot be streamed: save it with "
                            "numpy.save(path, numpy.ascontiguousarray(x))")
        self.dtype = dtype
        self.file_shape = tuple(int(s) for s in shape)
        self.n = self.file_shape[0] if shape else 0
        self.row_bytes = int(np.prod(self.file_shape[1:], dtype=np.int64)) * dtype.itemsize
        self.channels_last = False
        if len(shape) == 2:
            self.kind: Literal["image", "table"] = "table"
            self.row_shape = self.file_shape[1:]
        elif len(shape) == 3:
            self.kind = "image"
            self.row_shape = (1, *self.file_shape[1:])
        elif len(shape) == 4:
            self.kind = "image"
            if shape[-1] in (1, 3) and shape[1] not in (1, 3):
                self.channels_last = True
                self.row_shape = (shape[3], shape[1], shape[2])
            elif shape[1] in (1, 3):
                self.row_shape = self.file_shape[1:]
            else:
                raise DataError(f"{self.path} has shape {shape}, with neither 1 nor 3 channels: save uint8 images "
                                "(N, H, W) / (N, C, H, W) / (N, H, W, C) or a 2-D table")
        else:
            raise DataError(f"{self.path} has shape {shape}: save uint8 images (N, H, W) / (N, C, H, W) / "
                            "(N, H, W, C) or a 2-D (N, D) table")
        self._fd: int | None = None

    @property
    def nbytes(self) -> int:
        return self.n * self.row_bytes

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.file_shape[1:]), dtype=self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        for pos, first, count in _runs(rows):
            want = count * self.row_bytes
            view = memoryview(flat[pos:pos + count]).cast("B")  # type: ignore[arg-type]  # numpy stubs: __buffer__ on 3.12+
            got = os.preadv(self._fd, [view], self.offset + first * self.row_bytes)
            while got < want:  # short reads are legal: continue where it stopped
                more = os.preadv(self._fd, [view[got:]], self.offset + first * self.row_bytes + got)
                if more <= 0:
                    raise DataError(f"{self.path} is truncated (rows {first}..{first + count - 1} are missing): "
                                    "re-save the array")
                got += more
        return out

    def read(self, rows: np.ndarray) -> np.ndarray:
        x = self._raw(rows)
        if self.kind == "table":
            x = x.astype(np.float32, copy=False)
            if not np.isfinite(x).all():
                raise DataError(f"{self.path} contains NaN/inf values: remove or impute them")
            return x
        if x.dtype.kind == "b":
            x = x.astype(np.uint8) * np.uint8(255)
        elif x.dtype != np.uint8:
            lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
            if x.dtype.kind == "f":
                if not (0.0 <= lo and hi <= 1.0):
                    raise DataError(f"{self.path} holds float images with values in [{lo:g}, {hi:g}], not [0, 1]: "
                                    "save uint8 images or floats in [0, 1]")
                x = np.rint(x.astype(np.float32) * 255.0).astype(np.uint8)
            else:
                if lo < 0 or hi > 255:
                    raise DataError(f"{self.path} holds {x.dtype} images with values in [{lo:g}, {hi:g}]: "
                                    "save uint8 images")
                x = x.astype(np.uint8)
        if self.channels_last:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x.reshape(len(rows), *self.row_shape)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __getstate__(self) -> dict[str, Any]:  # a copy opens its own descriptor
        return {**self.__dict__, "_fd": None}


class ImageRows:
    """Rows of an image folder (see :mod:`aekit.data.images`), decoded on demand by a few threads."""

    kind: Literal["image", "table"] = "image"

    def __init__(self, files: list[Path], channels: int, height: int, width: int, resize: int | None):
        self.files = files
        self.channels = channels
        self.resize = resize
        self.n = len(files)
        self.row_shape = (channels, height, width)
        self.nbytes = self.n * channels * height * width

    def read(self, rows: np.ndarray) -> np.ndarray:
        from .images import read_image

        out = np.empty((len(rows), *self.row_shape), dtype=np.uint8)

        def one(i: int) -> None:
            out[i] = read_image(self.files[int(rows[i])], self.channels, self.resize)

        workers = min(4, os.cpu_count() or 1)
        if len(rows) < 64 or workers == 1:
            for i in range(len(rows)):
                one(i)
        else:  # Pillow releases the GIL while decoding
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, range(len(rows))))
        return out


# ------------------------------------------------------------------------------------------------ lazy rows


class LazyRows:
    """A read-only stand-in for a split's ``x`` tensor whose rows are read on demand.

    Supports what the evaluation code uses: ``len``, ``shape``, ``dtype``, ``device``, ``ndim``, indexing with an
    int, a slice, or an index tensor / array (any order, repeats allowed), and ``.to(device)`` (a no-op: rows
    are read on the host and moved with the batch).  Tables are standardised with ``mean``/``std`` on read.
    """

    def __init__(self, source: RowSource, rows: np.ndarray, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None):
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)
        self.mean = mean
        self.std = std

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.source.row_shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.source.kind == "table" else torch.uint8

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def nbytes(self) -> int:
        return len(self.rows) * int(np.prod(self.source.row_shape)) * (4 if self.source.kind == "table" else 1)

    def __len__(self) -> int:
        return len(self.rows)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def to(self, *args: Any, **kwargs: Any) -> LazyRows:
        return self

    def read_positions(self, pos: np.ndarray) -> np.ndarray:
        """Rows at positions ``pos`` of this split, in that order (standardised tables)."""
        pos = np.asarray(pos, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < -len(self.rows) or pos.max() >= len(self.rows)):
            raise IndexError(f"index out of range for {len(self.rows)} rows")
        pos = pos % max(1, len(self.rows))
        wanted = self.rows[pos]
        uniq, inverse = np.unique(wanted, return_inverse=True)
        x = self.source.read(uniq)
        if len(uniq) != len(wanted) or not np.array_equal(uniq, wanted):
            x = x[inverse]
        if self.mean is not None:
            x = ((x - self.mean) / self.std).astype(np.float32)
        return x

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, slice):
            pos = np.arange(len(self.rows))[key]
        elif isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        elif torch.is_tensor(key):
            if key.dtype == torch.bool:
                key = key.nonzero().reshape(-1)
            pos = key.detach().cpu().numpy()
        elif isinstance(key, (np.ndarray, list, tuple)):
            pos = np.asarray(key)
            if pos.dtype == bool:
                pos = np.flatnonzero(pos)
        else:
            raise TypeError(f"LazyRows cannot be indexed with {type(key).__name__}: use an index tensor or a slice")
        shape = np.shape(pos)
        x = self.read_positions(pos.reshape(-1))
        return torch.from_numpy(x.reshape(*shape, *self.source.row_shape))

    def numpy(self) -> np.ndarray:  # the whole split: only for small ones
        return self.read_positions(np.arange(len(self.rows)))

    def __repr__(self) -> str:
        return f"LazyRows({len(self.rows)} rows of {tuple(self.source.row_shape)}, {self.dtype})"


# --------------------------------------------------------------------------------------------- the stream


Batches = Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class StreamSplit(Split):
    """A training split streamed in shuffled chunks of ``chunk_rows`` consecutive rows (see the module doc)."""

    chunk_rows: int = 1

    def to(self, device: torch.device | str) -> StreamSplit:  # rows stay on disk; chunks move when read
        return self

    @property
    def chunks(self) -> int:
        return math.ceil(len(self) / self.chunk_rows)

    def epoch_batches(self, batch_size: int, generator: torch.Generator, shard: Callable[..., Any],
                      device: torch.device, with_y: bool = False) -> Batches:
        """One epoch as ``(resident rows, their labels or None, this rank's batch indices into them)``.

        All random draws come from ``generator`` in the main thread in a fixed order; only the disk reads of
        the next chunk run in the background.
        """
        lazy: LazyRows = self.x  # type: ignore[assignment]
        n = len(self)
        order = torch.randperm(self.chunks, generator=generator).tolist()
        spans = [(c * self.chunk_rows, min(n, (c + 1) * self.chunk_rows)) for c in order]
        perms = [torch.randperm(b - a, generator=generator) for a, b in spans]  # drawn up front: deterministic
        y_all = self.y if with_y else None

        def load(k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            a, b = spans[k]
            x = torch.from_numpy(lazy.read_positions(np.arange(a, b)))
            y = None if y_all is None else y_all[a:b]
            return x, y

        pool = ThreadPoolExecutor(1, thread_name_prefix="aekit-stream")
        try:
            nxt: Future | None = pool.submit(load, 0) if spans else None
            carry_x = carry_y = None
            batches_before = 0
            for k in range(len(spans)):
                x, y = nxt.result()  # type: ignore[union-attr]
                nxt = pool.submit(load, k + 1) if k + 1 < len(spans) else None
                perm = perms[k]
                if carry_x is not None:  # rows left over by the previous chunk go first
                    perm = torch.cat([torch.arange(len(carry_x)), perm + len(carry_x)])
                    x = torch.cat([carry_x, x])
                    y = None if y is None else torch.cat([carry_y, y])  # type: ignore[list-item]  # carry_y: y's
                last = k + 1 == len(spans)
                stop = len(perm) if last else len(perm) - len(perm) % batch_size
                xd = x.to(device, non_blocking=True)
                yd = None if y is None else y.to(device, non_blocking=True)
                permd = perm.to(device, non_blocking=True)
                for start in range(0, stop, batch_size):
                    b = permd[start:start + batch_size]
                    idx = shard(b, droppable=len(b) < batch_size and batches_before > 0)
                    batches_before += 1
                    if idx is not None:
                        yield xd, yd, idx
                rest = perm[stop:]
                carry_x = x[rest] if len(rest) else None
                carry_y = None if (y is None or not len(rest)) else y[rest]
                del x, y, xd, yd
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _table_stats(source: RowSource, rows: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of a table's rows (one chunked pass in float64); constant columns get std 1."""
    total = np.zeros(source.row_shape, dtype=np.float64)
    sq = np.zeros(source.row_shape, dtype=np.float64)
    for a in range(0, len(rows), chunk):
        x = source.read(rows[a:a + chunk]).astype(np.float64)
        total += x.sum(0)
        sq += (x * x).sum(0)
    n = max(1, len(rows))
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 0.0))
    std[std < 1e-12] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def streamed_dataset(name: str, cfg: DataConfig, source: RowSource, y: np.ndarray | None = None,
                     classes: tuple[str, ...] | None = None, budget: int | None = None) -> Dataset:
    """A :class:`Dataset` over ``source`` that reads rows on demand (train streamed in shuffled chunks).

    Splits are those :func:`aekit.data.base.make_dataset` would make from the whole array.
    """
    budget = budget if budget is not None else (budget_of(cfg) or 2**30)
    n = source.n
    if n < 3:
        raise DataError(f"{name!r} has only {n} samples: aekit needs at least 3 (train/val/test)")
    base = np.arange(n)
    if cfg.subsample is not None and n > cfg.subsample:
        base = np.sort(np.random.default_rng(cfg.split_seed + 2).choice(n, cfg.subsample, replace=False))
    rest, test_pos = split_indices(len(base), cfg.test_fraction, cfg.split_seed + 1)
    tr_pos, val_pos = split_indices(len(rest), cfg.val_fraction, cfg.split_seed, cfg.max_val)
    rows = {"train": base[rest[tr_pos]], "val": base[rest[val_pos]], "test": base[test_pos]}
    itemsize = 4 if source.kind == "table" else 1
    row_bytes = int(np.prod(source.row_shape)) * itemsize
    chunk_rows = max(1, budget // 4 // max(1, row_bytes))
    mean = std = None
    if source.kind == "table":
        mean, std = _table_stats(source, rows["train"], chunk_rows)
    y_t = None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))

    def labels(r: np.ndarray) -> torch.Tensor | None:
        return None if y_t is None else y_t[torch.from_numpy(r)]

    lazy = {k: LazyRows(source, r, mean, std) for k, r in rows.items()}
    train = StreamSplit(lazy["train"], labels(rows["train"]), chunk_rows=chunk_rows)  # type: ignore[arg-type]
    val_x: Any = lazy["val"]
    if lazy["val"].nbytes <= budget // 4:
        val_x = torch.from_numpy(lazy["val"].numpy())
    val = Split(val_x, labels(rows["val"]))
    test = Split(lazy["test"], labels(rows["test"]))  # type: ignore[arg-type]
    log.info("%s: %d samples (%.2f GB) exceed --memory-budget %s: streaming the %d training samples in %d "
             "shuffled chunks of %d", name, n, n * row_bytes / 1e9, cfg.memory_budget, len(train), train.chunks,
             chunk_rows)
    return Dataset(name, source.kind, train, val, test, classes, None,
                   None if mean is None else torch.from_numpy(mean), None if std is None else torch.from_numpy(std))


def is_streamed(data: Dataset) -> bool:
    return isinstance(data.train, StreamSplit)
