"""A small CNN classifier of a dataset's own images, used to score generated images ("domain FID").

FID (Heusel et al. 2017) compares Gaussians fitted to Inception features of real and generated images.
Inception knows nothing of 28×28 grey clothes or 8×8 digits, so aekit trains a small CNN on the dataset's
training images instead and uses its 128-d penultimate features: the **domain FID**.  Its numbers are
comparable only between models scored by the same classifier (same data, seed and epochs), never with
published FIDs.  The classifier's max-probability (confidence) and entropy on generated images are reported
too: an image that looks like no class gets a flat, high-entropy prediction.

Architecture: conv 3×3 (16) → ReLU → max-pool 2 → conv 3×3 (32) → ReLU → max-pool 2 (pools skipped when the
image is already small) → adaptive average pool to at most 4×4 → linear 128 → ReLU (**features**) → linear
n_classes.  Trained with Adam for a few epochs; saved as ``classifier.safetensors`` (weights; the config as
JSON metadata) and reused when a file with the same config exists.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import from_dict, to_dict
from ..data import Dataset, iterate_batches, to_float
from ..errors import ConfigError
from ..train.checkpoint import atomic_save_tensors, load_state, read_tensors

log = logging.getLogger(__name__)

__all__ = ["ClassifierConfig", "DomainClassifier", "classify_all", "frechet_distance", "gaussian_stats",
           "load_or_train", "train_classifier"]

FILE = "classifier.safetensors"


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    input_shape: tuple[int, ...] = ()
    n_classes: int = 10
    data: str = ""  # dataset name (part of the cache key)
    n_train: int = 0  # training-set size (part of the cache key)
    features: int = 128
    epochs: int = 3
    min_steps: int = 600  # small datasets get more epochs, so that every classifier sees this many batches
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


class DomainClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        c, h, w = config.input_shape
        layers: list[nn.Module] = []
        for cin, cout in ((c, 16), (16, 32)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            if min(h, w) >= 8:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        side = (min(h, 4), min(w, 4))
        layers.append(nn.AdaptiveAvgPool2d(side))
        self.body = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(32 * side[0] * side[1], config.features), nn.ReLU())
        self.head = nn.Linear(config.features, config.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, features) of float images in [0, 1]."""
        return self.fc(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _config(data: Dataset, epochs: int, min_steps: int, seed: int) -> ClassifierConfig:
    n_classes = int(data.train.y.max()) + 1 if data.train.y is not None else 0
    return ClassifierConfig(tuple(data.shape), n_classes, data.name, len(data.train), epochs=epochs,
                            min_steps=min_steps, seed=seed)


def train_classifier(data: Dataset, *, epochs: int = 3, min_steps: int = 600, seed: int = 0) -> DomainClassifier:
    """Train a :class:`DomainClassifier` on ``data.train`` (labelled images) for ``epochs`` epochs, or more
    when that makes fewer than ``min_steps`` batches (cosine-decayed Adam)."""
    if data.kind != "image" or data.train.y is None or len(data.shape) != 3:
        raise ConfigError(f"the domain classifier needs labelled images; {data.name!r} is "
                          f"{'unlabelled' if data.train.y is None else data.kind}: use an image dataset with classes")
    cfg = _config(data, epochs, min_steps, seed)
    torch.manual_seed(seed)
    model = DomainClassifier(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    x, y = data.train.x, data.train.y
    per_epoch = math.ceil(len(x) / cfg.batch_size)
    epochs = max(epochs, math.ceil(cfg.min_steps / per_epoch))
    steps = per_epoch * epochs
    step = 0
    model.train()
    for epoch in range(epochs):
        total = 0.0
        for idx in iterate_batches(len(x), cfg.batch_size, generator=g):
            for group in opt.param_groups:  # cosine decay to 0: a few epochs reach a good accuracy
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
            loss = F.cross_entropy(model(to_float(x[idx])), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            total += float(loss.detach()) * len(idx)
        log.info("classifier epoch %d/%d: train cross-entropy %.4f", epoch + 1, epochs, total / len(x))
    return model.eval()


def load_or_train(path: Path, data: Dataset, *, epochs: int = 3, min_steps: int = 600, seed: int = 0
                  ) -> DomainClassifier:
    """The classifier cached at ``path`` when its config matches ``data`` / ``epochs`` / ``seed``; otherwise
    a newly trained one, saved there."""
    path = Path(path)
    want = _config(data, epochs, min_steps, seed)
    if path.exists():
        tensors, meta = read_tensors(path)
        try:
            saved = from_dict(ClassifierConfig, json.loads(meta.get("classifier_config", "{}")))
        except (ConfigError, json.JSONDecodeError):
            saved = None
        if saved == want:
            model = DomainClassifier(saved)
            load_state(model, tensors, str(path))
            log.info("reusing the domain classifier %s", path)
            return model.eval()
        log.info("%s was trained with other settings: retraining it", path)
    model = train_classifier(data, epochs=epochs, min_steps=min_steps, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(model.state_dict(), path, {"classifier_config": json.dumps(to_dict(model.config))})
    return model


@torch.no_grad()
def classify_all(model: DomainClassifier, x: torch.Tensor, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, F) float64, class probabilities (N, C) float64) of images ``x`` (uint8 or floats in [0, 1])."""
    model.eval()
    feats, probs = [], []
    for idx in iterate_batches(len(x), batch_size, shuffle=False):
        xb = to_float(x[idx]).clamp(0.0, 1.0)
        f = model.features(xb)
        feats.append(f.double().numpy())
        probs.append(torch.softmax(model.head(f), 1).double().numpy())
    if not feats:
        return np.zeros((0, model.config.features)), np.zeros((0, model.config.n_classes))
    return np.concatenate(feats), np.concatenate(probs)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and covariance (F, F) of feature rows (N, F)."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues → 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein²) distance between N(mu1, cov1) and N(mu2, cov2):

    ‖mu1 − mu2‖² + Tr(cov1 + cov2 − 2 (cov1^½ cov2 cov1^½)^½).

    Tr((cov1 cov2)^½) is computed as Tr((cov1^½ cov2 cov1^½)^½) — the same value — with eigen-decompositions
    of symmetric matrices, so it is real and stable without scipy's ``sqrtm``.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    c1, c2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or c1.shape != c2.shape or c1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shapes do not match: mu {mu1.shape} / {mu2.shape}, cov {c1.shape} / {c2.shape}")
    s1 = _sqrt_psd(c1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(s1 @ c2 @ s1), 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2.0 * cross)
