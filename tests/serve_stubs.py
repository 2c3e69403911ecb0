"""Stand-ins shared by the serve tests (test_serve.py, test_browser.py)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


class StandInSegmenter(torch.nn.Module):
    """A stand-in for a segmentation run (e.g. a U-Net): pixels brighter than a learnable level are class 1."""

    input_shape = (1, 16, 16)

    def __init__(self):
        super().__init__()
        self.level = torch.nn.Parameter(torch.tensor(0.5))

    def predict_mask(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean(1) > self.level).long()


def png_bytes(size=(20, 20), mode="L", seed=0) -> bytes:
    """A random PNG image of ``size`` (width, height) in ``mode`` (L or RGB)."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format="PNG")
    return buf.getvalue()
