"""Small models shared by test modules (imported as ``from model_stubs import tiny_cvae``; tests/ is on sys.path)."""

from __future__ import annotations

import torch

import aekit
from aekit.data import DataShape


def tiny_cvae(k: int = 3, names: tuple[str, ...] = ()) -> aekit.Autoencoder:
    """A seeded cVAE on 1×4×4 inputs with ``k`` classes (named ``names``, default "0" … "k−1"), in eval mode."""
    from aekit.models import MODELS

    extra = {"class_names": names, "num_classes": k} if names else {}
    cfg = MODELS["cvae"].make_config({"hidden": (8,), "latent_dim": 2, **extra}, name="cvae").resolve(
        DataShape((1, 4, 4), num_classes=k))
    torch.manual_seed(0)
    return aekit.build_model("cvae", cfg).eval()
