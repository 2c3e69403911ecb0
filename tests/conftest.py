"""Shared fixtures: tiny data and tiny configs so every test runs in well under a second or two."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aekit.data import DataConfig, load_data, make_dataset


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is many times faster than two contended ones (use with pytestmark)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def digits():
    return load_data(DataConfig("digits"))


@pytest.fixture(scope="session")
def tiny_images():
    """40 random 12×10 RGB images with 3 labels (odd sizes on purpose)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 3, 12, 10), dtype=np.uint8)
    y = rng.integers(0, 3, size=40)
    return make_dataset("tiny", "image", DataConfig("tiny"), x, y, classes=("a", "b", "c"))


@pytest.fixture(scope="session")
def tiny_table():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 7)).astype(np.float32) * 3 + 1
    return make_dataset("table", "table", DataConfig("table"), x, rng.integers(0, 2, 60))
