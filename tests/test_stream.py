"""Data larger than --memory-budget: streamed in shuffled chunks, same splits as loading it whole."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import aekit
from aekit.data import DataConfig, load_data
from aekit.data.stream import LazyRows, StreamSplit, is_streamed, parse_size
from aekit.errors import ConfigError


@pytest.fixture(scope="module")
def npy_images(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3000, 8, 8), dtype=np.uint8)  # 192 kB
    path = tmp_path_factory.mktemp("stream") / "x.npy"
    np.save(path, x)
    return path, x


def test_parse_size():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("512MiB") == 512 * 2**20 and parse_size("1.5g") == 1.5e9
    assert parse_size("100000") == 100_000
    for bad in ("lots", "2 parsecs", "1KB"):
        with pytest.raises(ConfigError, match="memory-budget"):
            parse_size(bad)
    with pytest.raises(ConfigError, match="memory-budget"):
        DataConfig("digits", memory_budget="lots")


def test_small_data_stays_in_memory(npy_images):
    path, _ = npy_images
    d = load_data(DataConfig(f"npy:{path}", memory_budget="10MB"))
    assert not is_streamed(d) and isinstance(d.train.x, torch.Tensor)


def test_streamed_splits_match_loading_whole(npy_images):
    path, _ = npy_images
    whole = load_data(DataConfig(f"npy:{path}"))
    d = load_data(DataConfig(f"npy:{path}", memory_budget="100kB"))
    assert is_streamed(d) and isinstance(d.train, StreamSplit) and d.train.chunks > 3
    assert d.shape == whole.shape == (1, 8, 8) and d.kind == "image"
    assert len(d.train) == len(whole.train) and torch.equal(d.val.x, whole.val.x)
    assert isinstance(d.test.x, LazyRows)
    assert torch.equal(d.test.x[torch.arange(len(d.test))], whole.test.x)
    assert torch.equal(d.test.x[5:9], whole.test.x[5:9]) and torch.equal(d.test.x[7], whole.test.x[7])
    idx = torch.tensor([9, 2, 2, 40])
    assert torch.equal(d.train.x[idx], whole.train.x[idx])


def _epoch(split, seed, bs=64, shard=lambda i, droppable=False: i):
    g = torch.Generator().manual_seed(seed)
    return [bx[idx] for bx, _, idx in split.epoch_batches(bs, g, shard, torch.device("cpu"))]


def test_epochs_are_shuffled_chunks_deterministic_under_the_seed(npy_images):
    path, _ = npy_images
    d = load_data(DataConfig(f"npy:{path}", memory_budget="100kB"))
    whole = load_data(DataConfig(f"npy:{path}"))
    a, b, c = _epoch(d.train, 0), _epoch(d.train, 0), _epoch(d.train, 1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(torch.cat(a), torch.cat(c))
    assert [len(t) for t in a[:-1]] == [64] * (len(a) - 1) and len(a) == -(-len(d.train) // 64)
    # every training row exactly once per epoch
    key = lambda t: sorted(map(bytes, t.reshape(len(t), -1).numpy()))  # noqa: E731
    assert key(torch.cat(a)) == key(whole.train.x)
    # two ranks with strided shards see disjoint halves
    from aekit.train.distributed import Context

    n = len(d.train)
    shards = [_epoch(d.train, 0, shard=Context(rank=r, world=2).shard) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == Context(world=2).steps_per_epoch(n, 64)  # what the trainer expects
    halves = [torch.cat(s) for s in shards]
    kept = 64 * (n // 64) + (n % 64 - n % 2 if n % 64 - n % 2 >= 4 else 0)
    assert len(halves[0]) == len(halves[1]) == kept // 2
    assert set(key(torch.cat(halves))) <= set(key(whole.train.x)) and len(set(key(torch.cat(halves)))) == kept


def test_training_on_a_stream_resumes_exactly(npy_images, tmp_path):
    path, _ = npy_images
    opts = dict(hidden="16", latent_dim=2, batch_size=128, memory_budget="100kB", progress=False, report=False)
    full = aekit.train("vae", f"npy:{path}", tmp_path / "full", epochs=2, **opts)
    assert full.metrics[-1]["train_loss"] < full.metrics[0]["train_loss"]
    assert full.evaluation["n"] == 600 and np.isfinite(full.evaluation["elbo"])
    aekit.train("vae", f"npy:{path}", tmp_path / "part", epochs=1, **opts)
    aekit.train(resume=tmp_path / "part", epochs=2, report=False, progress=False)
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(tmp_path / "part" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_streamed_table_is_standardised_like_the_whole(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(4000, 6)) * [1, 2, 3, 4, 5, 6] + 7).astype(np.float32)  # 96 kB
    np.save(tmp_path / "t.npy", x)
    whole = load_data(DataConfig(f"npy:{tmp_path / 't.npy'}"))
    d = load_data(DataConfig(f"npy:{tmp_path / 't.npy'}", memory_budget="64KiB"))
    assert is_streamed(d) and d.kind == "table"
    assert torch.allclose(d.mean, whole.mean, atol=1e-4) and torch.allclose(d.std, whole.std, rtol=1e-4)
    assert torch.allclose(d.val.x, whole.val.x, atol=1e-4)
    assert torch.allclose(torch.cat(_epoch(d.train, 0, bs=500)).mean(0), torch.zeros(6), atol=1e-4)


def test_streamed_image_folder(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(24):
        (tmp_path / "imgs" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png")
    whole = load_data(DataConfig(f"images:{tmp_path / 'imgs'}"))
    d = load_data(DataConfig(f"images:{tmp_path / 'imgs'}", memory_budget="100kB"))  # 24 x 12 kB images
    assert is_streamed(d) and d.classes == whole.classes and d.shape == (3, 64, 64)
    assert torch.equal(d.train.y, whole.train.y) and torch.equal(d.test.x[torch.arange(len(d.test))], whole.test.x)
    rows = torch.cat(_epoch(d.train, 3, bs=4))
    assert sorted(map(bytes, rows.reshape(len(rows), -1).numpy())) == sorted(
        map(bytes, whole.train.x.reshape(len(whole.train), -1).numpy()))
