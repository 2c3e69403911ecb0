"""DDP: two gloo processes under torchrun train what one process trains with the same global batch, rank 0
alone writes the run, and a distributed run resumes."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import aekit
from aekit.train.distributed import Context, env_world

OPTS = {"hidden": "32", "latent_dim": 4, "batch_size": 64, "lr": 3e-3, "norm": "none", "schedule": "constant"}
# norm none: BatchNorm statistics are per rank. schedule constant: the run is extended by --resume, and a
# cosine schedule depends on the total number of epochs (2 then 3 vs 3 from the start)


def _flags(opts):
    out = []
    for k, v in opts.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


def torchrun(tmp_path, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "aekit", "-q", "train", *map(str, args)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_and_resume(tmp_path):
    # one process, 3 epochs (in this process)
    single = aekit.train("ae", "digits", tmp_path / "single", epochs=3, progress=False, report=False, **OPTS)
    # two processes: 2 epochs, then --resume to 3 (every rank reads rank 0's checkpoint)
    common = ["--model", "ae", "--data", "digits", "--no-progress", "--no-report", "--device", "cpu", *_flags(OPTS)]
    torchrun(tmp_path, *common, "--epochs", "2", "--out", tmp_path / "ddp")
    assert not list((tmp_path / "ddp").glob("*.tmp")) and (tmp_path / "ddp" / "model.safetensors").exists()
    torchrun(tmp_path, "--resume", tmp_path / "ddp", "--epochs", "3", "--no-report")
    rows = aekit.load_run(tmp_path / "ddp").metrics
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]
    for a, b in zip(single.metrics, rows):
        assert a["step"] == b["step"]  # the same number of optimiser steps: the global batch is the same
        for key in ("train_loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], rel=2e-2), (key, a["epoch"])  # 0.5-0.7% gap seen: see notes/issue-6.md
    w1, w2 = load_file(str(tmp_path / "single" / "model.safetensors")), load_file(str(tmp_path / "ddp" / "model.safetensors"))
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=5e-3, rtol=1e-2), k


def test_sharding_rules():
    ctx = Context(rank=1, world=2)
    order = torch.arange(10)
    assert ctx.shard(order[:4]).tolist() == [1, 3]
    assert ctx.shard(order[:5]).tolist() == [1, 3]  # the odd sample of a last batch is skipped on all ranks
    assert ctx.shard(order[:1]) is None
    assert ctx.steps_per_epoch(9, 4) == 2 and ctx.steps_per_epoch(12, 4) == 3 and Context().steps_per_epoch(10, 4) == 3
    # a trailing batch that would leave one sample per rank is skipped (BatchNorm cannot train on it) ...
    assert ctx.steps_per_epoch(10, 4) == 2 and Context().steps_per_epoch(9, 4) == 2
    assert [len(b) for b in Context().index_batches(9, 4, torch.Generator().manual_seed(0))] == [4, 4]
    assert [len(b) for b in ctx.index_batches(10, 4, torch.Generator().manual_seed(0))] == [2, 2]
    # ... unless it is the epoch's only batch
    assert Context().steps_per_epoch(1, 4) == 1 and ctx.steps_per_epoch(3, 4) == 1
    assert [len(b) for b in ctx.index_batches(3, 4, torch.Generator().manual_seed(0))] == [1]
    with pytest.raises(aekit.errors.ConfigError, match="multiple of 2"):
        ctx.steps_per_epoch(10, 3)
    batches = [Context(rank=r, world=2).index_batches(12, 4, torch.Generator().manual_seed(0)) for r in (0, 1)]
    seen = sorted(i for b in batches for idx in b for i in idx.tolist())
    assert seen == list(range(12))


def test_env_detection(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert env_world() == (0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_world() == (3, 4, 1)


def test_synced_batchnorm_gives_the_callers_layers_back_with_their_trained_statistics():
    # DDP on CUDA trains SyncBatchNorm layers; the caller's model must come back with its own BatchNorm layers
    import torch.nn as nn

    from aekit.train.distributed import synced_batchnorm

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)))
    bn1, bn2, weight = model[1], model[2][1], model[1].weight
    with synced_batchnorm(model):
        assert isinstance(model[1], nn.SyncBatchNorm) and isinstance(model[2][1], nn.SyncBatchNorm)
        assert model[1].weight is weight  # the optimiser's parameters are the layer's
        model[1].running_mean.add_(1.5)  # what training does to the statistics
        model[2][1].num_batches_tracked += 3
    assert model[1] is bn1 and model[2][1] is bn2 and type(model[1]) is nn.BatchNorm1d
    assert torch.equal(bn1.running_mean, torch.full((4,), 1.5)) and int(bn2.num_batches_tracked) == 3


@pytest.mark.slow
def test_a_conv_model_trains_under_ddp_in_its_default_channels_last_layout(tmp_path):
    """--memory-format auto gives channels_last for a conv model on a CPU; two gloo processes then train what
    one process trains (DDP's gradient buckets follow the parameters' layout)."""
    opts = {"arch": "conv", "channels": "4,8", "latent_dim": 4, "batch_size": 32, "lr": 1e-3, "seed": 0}
    single = aekit.train("ae", "digits", tmp_path / "single", epochs=2, progress=False, report=False, device="cpu",
                         **opts)
    assert single.train_config.memory_format == "channels_last"
    torchrun(tmp_path, "--model", "ae", "--data", "digits", "--no-progress", "--no-report", "--device", "cpu",
             *_flags(opts), "--epochs", "2", "--out", tmp_path / "ddp")
    ddp = aekit.load_run(tmp_path / "ddp")
    assert ddp.train_config.memory_format == "channels_last"
    for a, b in zip(single.metrics, ddp.metrics, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=2e-2), a["epoch"]
