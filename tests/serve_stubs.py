"""Stand-ins shared by the serve tests (test_serve.py, test_browser.py)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import torch
from PIL import Image

from aekit.data import Batch
from aekit.models.base import Autoencoder, Losses, ModelConfig


@dataclasses.dataclass(frozen=True)
class StandInConfig(ModelConfig):
    input_shape: tuple[int, ...] = (1, 16, 16)


class StandInSegmenter(Autoencoder):
    """A stand-in for a segmentation run (e.g. a U-Net), written against the model contract only: pixels
    brighter than a learnable level are class 1."""

    supervised = True
    latent_vectors = False
    units = {"mse": "squared error per pixel"}

    def __init__(self, config: StandInConfig | None = None):
        super().__init__(config or StandInConfig())
        self.level = torch.nn.Parameter(torch.tensor(0.5))

    @property
    def latent_dim(self) -> int:
        return 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1, keepdim=True)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z - self.level)

    def loss(self, batch: Batch) -> Losses:
        err = ((self.decode(self.encode(batch.x))[:, 0] - batch.labels.float()) ** 2).mean()
        return Losses(err, {"mse": err})

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean(1) > self.level).long()


def png_bytes(size=(20, 20), mode="L", seed=0) -> bytes:
    """A random PNG image of ``size`` (width, height) in ``mode`` (L or RGB)."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format="PNG")
    return buf.getvalue()
