"""Core data types: a dataset is three resident tensors (train / val / test) plus metadata.

Images stay ``uint8`` of shape (N, C, H, W) and are scaled to [0, 1] only when a batch is sliced; tables are
``float32`` of shape (N, D), standardised with training-split statistics.  Batches are slices of a
permutation (:func:`iterate_batches`): no per-sample Python anywhere in the data path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch

from ..config import check, opt
from ..errors import DataError

MAX_CLASSES = 100_000  # class ids are 0 … max label, one name each: a label of 2e9 is corruption, not a class


def check_class_count(largest: int, where: str) -> None:
    """Labels are class ids 0 … ``largest``: refuse more than :data:`MAX_CLASSES` classes (one name is built
    for each) with a one-line DataError."""
    if largest >= MAX_CLASSES:
        raise DataError(f"labels in {where} go up to {largest}: aekit names one class per id from 0 to the largest, "
                        f"at most {MAX_CLASSES} classes; renumber the labels 0 … K-1 (or give class names)")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How to load a dataset.  Written into ``config.json`` so a run can reload exactly its data."""

    spec: str = opt("digits", "dataset spec: NAME or PREFIX:PATH (`aekit datasets` lists them)")
    data_dir: str | None = opt(None, "where MNIST-family files are looked up and downloaded to")
    image_size: int | None = opt(None, "resize images to S×S (needed when the files' sizes differ; cells: the "
                                       "side of the generated images, default 128)", scope="images:, seg:, cells")
    grayscale: bool = opt(False, "convert images to one channel", scope="images:, seg:")
    label_column: str | None = opt(None, "name (or 0-based index) of the column holding labels, excluded from the "
                                         "features", scope="csv:")
    val_fraction: float = opt(0.1, "share of the training split held out for validation (at most --max-val)")
    max_val: int = opt(5000, "largest validation split")
    test_fraction: float = opt(0.2, "share held out for testing, for sources with no test split of their own")
    split_seed: int = opt(0, "seed of the train/val/test split (independent of --seed)")
    download: bool = opt(True, "allow downloading MNIST-family files that are not found locally")
    subsample: int | None = opt(None, "keep a deterministic random subset of N samples of the training data")
    cells_count: int = opt(400, "number of generated images (seeded by --split-seed)", scope="cells")
    cells_difficulty: float = opt(0.5, "0 (clean) .. 1 (noisy, blurred, uneven light, many touching cells)",
                                  scope="cells")
    cells_borders: bool = opt(False, "a third mask class for the borders between touching cells", scope="cells")
    memory_budget: str | None = opt(None, "e.g. 2GB: npy: and images: data larger than this is streamed in chunks",
                                    scope="npy:, images:")

    def __post_init__(self) -> None:
        import math

        check(all(math.isfinite(v) for v in (self.val_fraction, self.test_fraction, self.cells_difficulty)),
              "--val-fraction, --test-fraction and --cells-difficulty must be finite numbers, e.g. 0.1")
        check(0 <= self.split_seed < 2**63, "--split-seed must be an integer in [0, 2**63), e.g. --split-seed 0")
        check(self.max_val >= 0, "--max-val must be ≥ 0, e.g. --max-val 5000")
        check(0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1): e.g. --val-fraction 0.1")
        check(0.0 < self.test_fraction < 1.0, "test_fraction must be in (0, 1): e.g. --test-fraction 0.2")
        check(self.image_size is None or self.image_size >= 4, "--image-size must be at least 4")
        check(self.subsample is None or self.subsample >= 3, "--subsample must be at least 3, e.g. --subsample 100000")
        check(self.cells_count >= 3, "--cells-count must be at least 3, e.g. --cells-count 400")
        if self.memory_budget is not None:
            from .stream import parse_size  # one-line ConfigError naming the accepted forms

            parse_size(self.memory_budget)
        check(0.0 <= self.cells_difficulty <= 1.0, "--cells-difficulty must be in [0, 1], e.g. 0.5")


@dataclasses.dataclass(frozen=True)
class Source:
    """A registered data source: ``load(argument, cfg)``; ``needs_arg`` for ``prefix:PATH`` specs."""

    load: Callable[[str | None, DataConfig], Dataset]
    needs_arg: bool
    help: str

    def __call__(self, arg: str | None, cfg: DataConfig) -> Dataset:
        return self.load(arg, cfg)


@dataclasses.dataclass(frozen=True)
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W) images or float32 (N, D) tables
    y: torch.Tensor | None  # int64 (N,) labels, uint8 (N, H, W) segmentation masks (class ids), or None
    factors: torch.Tensor | None = None  # int64 (N, K) generative factor indices (e.g. dSprites), or None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), None if self.y is None else self.y.to(device),
                     None if self.factors is None else self.factors.to(device))


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    kind: Literal["image", "table"]
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    # table standardisation (train statistics), to map codes back to original units
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    factor_names: tuple[str, ...] | None = None  # the columns of ``Split.factors`` (data with known factors)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.train.x.shape[1:])

    @property
    def segmentation(self) -> bool:
        """True when the targets are masks (N, H, W) of class ids rather than labels (N,)."""
        return self.train.y is not None and self.train.y.ndim == 3

    @property
    def in_unit_interval(self) -> bool:
        """True when inputs (after :func:`to_float`) lie in [0, 1]: images always do."""
        return self.kind == "image"

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}: use --split train, val or test")
        s = getattr(self, name)
        if len(s) == 0:
            raise DataError(f"the {name} split of {self.name!r} is empty: choose another --split")
        return s

    def to(self, device: torch.device | str) -> Dataset:
        return dataclasses.replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))


def to_float(x: torch.Tensor) -> torch.Tensor:
    """A batch as float32 model input: uint8 images → [0, 1]; floats unchanged."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


def iterate_batches(
    n: int, batch_size: int, *, generator: torch.Generator | None = None, shuffle: bool = True, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """Index tensors for one epoch: slices of one permutation (or of arange when not shuffling)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def split_indices(n: int, fraction: float, seed: int, cap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (rest, held_out) index arrays; held_out has round(fraction·n) items (≤ cap)."""
    k = int(round(fraction * n))
    if cap is not None:
        k = min(k, cap)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def make_dataset(
    name: str,
    kind: Literal["image", "table"],
    cfg: DataConfig,
    x_train: np.ndarray,
    y_train: np.ndarray | None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    classes: tuple[str, ...] | None = None,
    feature_names: tuple[str, ...] | None = None,
) -> Dataset:
    """Split arrays deterministically into train / val / test and wrap them as tensors.

    When the source has its own test split it is kept as is; otherwise ``cfg.test_fraction`` of the data is
    held out as test.  Validation is ``cfg.val_fraction`` of the (remaining) training data, capped at
    ``cfg.max_val``.  Tables are standardised with the statistics of the final training split.
    ``cfg.subsample = N`` first keeps a deterministic random subset of N rows of ``x_train`` (seed
    ``split_seed``); a source's own test split is kept whole.
    """
    if len(x_train) < 3:
        raise DataError(f"{name!r} has only {len(x_train)} samples: aekit needs at least 3 (train/val/test)")
    if cfg.subsample is not None and len(x_train) > cfg.subsample:  # deterministic subset of the training data
        keep = np.sort(np.random.default_rng(cfg.split_seed + 2).choice(len(x_train), cfg.subsample, replace=False))
        x_train = x_train[keep]
        y_train = None if y_train is None else y_train[keep]
    if x_test is None:
        rest, test_idx = split_indices(len(x_train), cfg.test_fraction, cfg.split_seed + 1)
        x_test = x_train[test_idx]
        y_test = None if y_train is None else y_train[test_idx]
        x_train = x_train[rest]
        y_train = None if y_train is None else y_train[rest]
    tr_idx, val_idx = split_indices(len(x_train), cfg.val_fraction, cfg.split_seed, cfg.max_val)
    parts = {
        "train": (x_train[tr_idx], None if y_train is None else y_train[tr_idx]),
        "val": (x_train[val_idx], None if y_train is None else y_train[val_idx]),
        "test": (x_test, y_test),
    }
    mean = std = None
    if kind == "table":
        parts_raw = {k: x for k, (x, _) in parts.items()}
        xt = parts["train"][0].astype(np.float64)
        mean_np = xt.mean(axis=0)
        std_np = xt.std(axis=0)
        std_np[std_np < 1e-12] = 1.0
        mean = torch.from_numpy(mean_np.astype(np.float32))
        std = torch.from_numpy(std_np.astype(np.float32))
        parts = {k: (((x - mean_np) / std_np).astype(np.float32), y) for k, (x, y) in parts.items()}
        bad = [k for k, (x, _) in parts.items() if not np.isfinite(x).all()]
        if not (np.isfinite(mean_np).all() and np.isfinite(std_np).all()) or bad:
            split = bad[0] if bad else "train"
            raw = parts_raw[split].astype(np.float64)
            worst = raw[~np.isfinite(raw)] if not np.isfinite(raw).all() else np.abs(raw).max(keepdims=True)
            raise DataError(f"{name!r}: its {split} split holds a value that cannot be standardised in float32 "
                            f"({float(worst.ravel()[0]):.3g}): remove non-finite values and rescale the columns "
                            "(e.g. to thousands) first")
    splits = {}
    for k, (x, y) in parts.items():
        xt = torch.from_numpy(np.ascontiguousarray(x))
        if kind == "image":
            if xt.dtype != torch.uint8:
                raise DataError(f"internal: image data for {name!r} must be uint8")  # pragma: no cover
            if xt.ndim == 3:  # (N, H, W) → (N, 1, H, W)
                xt = xt.unsqueeze(1)
        # labels (N,) as int64; segmentation masks (N, H, W) of class ids stay uint8 (one resident tensor)
        yt = None if y is None else torch.from_numpy(np.asarray(y).astype(np.int64 if np.ndim(y) == 1 else np.uint8))
        splits[k] = Split(xt, yt)
    return Dataset(name, kind, splits["train"], splits["val"], splits["test"], classes, feature_names, mean, std)
