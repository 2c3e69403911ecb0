"""FactorVAE (Kim & Mnih 2018): permute-dims, the TC and discriminator terms by hand, the two optimisers of one
training step (each updates only its own group), kill-and-resume with both optimisers, one-line errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import aekit
from aekit.data import Batch, DataShape, load_data
from aekit.errors import ConfigError
from aekit.models import MODELS, FactorVAE, FactorVAEConfig
from aekit.models.factorvae import discriminator_loss, permute_dims, tc_estimate
from aekit.train.callbacks import LambdaCallback
from aekit.train.checkpoint import read_tensors
from aekit.train.distributed import Context
from aekit.train.optim import make_optimizers
from aekit.train.trainer import StepRunner


def tiny(**kw) -> FactorVAE:
    cfg = FactorVAEConfig(hidden=(8,), latent_dim=3, disc_hidden=(5, 5), **kw).resolve(DataShape((6,)))
    torch.manual_seed(0)
    return FactorVAE(cfg)


def test_permute_dims_keeps_every_column_and_breaks_the_joint():
    z = torch.arange(200.0).unsqueeze(1).repeat(1, 4)  # four identical columns: perfectly dependent
    p = permute_dims(z, torch.Generator().manual_seed(0))
    for j in range(4):  # each column is a permutation of its values
        assert torch.equal(p[:, j].sort().values, z[:, j])
    # the columns were permuted independently: the joint is broken (rows no longer equal across columns)
    assert (p[:, 0] == p[:, 1]).float().mean() < 0.05
    corr = torch.corrcoef(p.T)
    assert corr[0, 1].abs() < 0.3 and corr[2, 3].abs() < 0.3


def test_tc_term_is_the_logit_difference_of_the_discriminator():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0]])
    assert torch.allclose(tc_estimate(logits), torch.tensor([3.0, 0.0, -4.0]))
    # in the loss: a discriminator with constant logits (a, b) gives tc = a − b, total = recon + kl + γ·(a − b)
    model = tiny(gamma=7.0)
    last = model.discriminator[-1]
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.25, -0.5]))
    with torch.no_grad():
        losses = model.loss(Batch(torch.rand(5, 6)))
    t = losses.terms
    assert math.isclose(float(t["tc"]), 1.75, rel_tol=1e-6)
    assert math.isclose(float(losses.total), float(t["recon"] + t["kl"] + 7.0 * 1.75), rel_tol=1e-5)
    assert math.isclose(float(t["elbo"]), -float(t["recon"] + t["kl"]), rel_tol=1e-6)
    # constant logits: the cross-entropy is ½(−log softmax(a, b)₀ − log softmax(a, b)₁) for both classes
    lse = math.log(math.exp(1.25) + math.exp(-0.5))
    assert math.isclose(float(t["discriminator"]), 0.5 * ((lse - 1.25) + (lse + 0.5)), rel_tol=1e-5)


def test_discriminator_loss_is_the_hand_cross_entropy():
    real = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    perm = torch.tensor([[0.5, 0.1], [-2.0, 3.0], [0.0, 0.0]])

    def nll(row, cls):
        return math.log(sum(math.exp(v) for v in row)) - row[cls]

    hand = 0.5 * (sum(nll(r, 0) for r in real.tolist()) / 2 + sum(nll(r, 1) for r in perm.tolist()) / 3)
    assert math.isclose(float(discriminator_loss(real, perm)), hand, rel_tol=1e-6)


class Recording(StepRunner):
    """The trainer's step runner, snapshotting every parameter after each optimiser step."""

    def __init__(self, model, opts):
        super().__init__(model, Context().wrap(model), model.loss, opts, torch.autocast("cpu", enabled=False), 0.0)
        self.snapshots: list[tuple[str, dict[str, torch.Tensor]]] = []
        self.net = model

    def step(self, group, loss):
        super().step(group, loss)
        self.snapshots.append((group, {k: v.detach().clone() for k, v in self.net.named_parameters()}))


@pytest.mark.slow
def test_one_step_updates_each_group_with_its_own_optimiser_only():
    model = tiny()
    opts = make_optimizers(model, 1e-3)
    assert list(opts) == ["vae", "discriminator"]
    d = opts["discriminator"].param_groups[0]
    assert d["lr"] == 1e-4 and tuple(d["betas"]) == (0.5, 0.9)
    v = opts["vae"].param_groups[0]
    assert v["lr"] == 1e-3 and tuple(v["betas"]) == (0.9, 0.999)
    ids = {id(p) for p in model.discriminator.parameters()}
    assert all(id(p) in ids for g in opts["discriminator"].param_groups for p in g["params"])
    assert not any(id(p) in ids for g in opts["vae"].param_groups for p in g["params"])
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    runner = Recording(model, opts)
    losses = model.train_step(Batch(torch.rand(8, 6)), runner)
    assert set(losses.terms) == {"recon", "kl", "elbo", "tc", "discriminator"}
    assert [g for g, _ in runner.snapshots] == ["vae", "discriminator"]
    after_vae, after_disc = runner.snapshots[0][1], runner.snapshots[1][1]

    def changed(a, b, disc):
        return [k for k in a if k.startswith("discriminator.") == disc and not torch.equal(a[k], b[k])]

    assert changed(before, after_vae, disc=False) and not changed(before, after_vae, disc=True)
    assert changed(after_vae, after_disc, disc=True) and not changed(after_vae, after_disc, disc=False)
    # the schedule scales the discriminator's own rate by the same factor
    opts.set_lr(5e-4)
    assert opts["vae"].param_groups[0]["lr"] == 5e-4 and math.isclose(opts["discriminator"].param_groups[0]["lr"], 5e-5)
    assert len(runner.stepped) == 2 and torch.isfinite(runner.checked())


@pytest.mark.slow
def test_kill_and_resume_restores_both_optimisers(tmp_path):
    data_cfg = aekit.DataConfig("digits", subsample=150)
    load_data(data_cfg)
    opts = {**MODELS["factorvae"].tiny, "epochs": 2, "batch_size": 32, "progress": False, "checkpoint_every_s": 0}
    run = aekit.train("factorvae", data_cfg, tmp_path / "a", report=False, evaluate=False, **opts)

    class Kill(Exception):
        pass

    def kill(epoch, index):
        if (epoch, index) == (1, 1):
            raise Kill

    with pytest.raises(Kill):
        aekit.train("factorvae", data_cfg, tmp_path / "c", report=False, evaluate=False,
                    callbacks=[LambdaCallback(kill)], **opts)
    tensors, meta = read_tensors(tmp_path / "c" / "checkpoint.safetensors")
    assert any(k.startswith("optim.vae.") for k in tensors) and any(k.startswith("optim.discriminator.") for k in tensors)
    assert not any(k.split(".")[1].isdigit() for k in tensors if k.startswith("optim."))
    resumed = aekit.train(resume=tmp_path / "c", report=False, evaluate=False)
    a, b = run.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "train_discriminator" in run.metrics[-1] and math.isfinite(run.metrics[-1]["train_discriminator"])


@pytest.mark.parametrize("values, words", [
    ({"gamma": -1.0}, "--gamma"), ({"gamma": float("nan")}, "--gamma"), ({"disc_lr": 0.0}, "--disc-lr"),
    ({"disc_betas": (0.5,)}, "--disc-betas"), ({"disc_betas": (0.5, 1.0)}, "--disc-betas"),
    ({"disc_hidden": (0,)}, "--disc-hidden"), ({"learn_scale": True, "likelihood": "bernoulli"}, "--learn-scale"),
])
def test_bad_options_are_one_line_errors(values, words):
    with pytest.raises(ConfigError) as e:
        MODELS["factorvae"].make_config(values, name="factorvae")
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_two_gloo_processes_train_both_groups(tmp_path):
    """Under torchrun each loss method runs through DDP's forward (find_unused_parameters): both steps train."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "aekit", "-q",
           "train", "--model", "factorvae", "--data", "digits", "--subsample", "200", "--hidden", "16",
           "--latent-dim", "3", "--disc-hidden", "8,8", "--epochs", "1", "--batch-size", "32", "--device", "cpu",
           "--no-progress", "--no-report", "--out", str(tmp_path / "ddp")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    tensors, _ = read_tensors(tmp_path / "ddp" / "checkpoint.safetensors")
    assert any(k.startswith("optim.discriminator.") for k in tensors)
    rows = aekit.load_run(tmp_path / "ddp").metrics
    assert math.isfinite(rows[-1]["train_discriminator"]) and math.isfinite(rows[-1]["train_tc"])


def test_disentangle_verdicts_and_one_test_estimator():
    from aekit import losses as L
    from aekit.experiments.disentangle import test_terms, verdicts

    rows = [{"seed": 0, "model": "beta-vae", "mig": 0.10, "factor_vae": 0.50, "recon": 100.0},
            {"seed": 0, "model": "factorvae", "mig": 0.15, "factor_vae": 0.60, "recon": 105.0},
            {"seed": 0, "model": "beta-tcvae", "mig": 0.15, "factor_vae": 0.51, "recon": 100.0},
            {"seed": 1, "model": "beta-vae", "mig": 0.10, "factor_vae": 0.50, "recon": 100.0},
            {"seed": 1, "model": "factorvae", "mig": 0.20, "factor_vae": 0.70, "recon": 120.0},
            {"seed": 1, "model": "beta-tcvae", "mig": 0.20, "factor_vae": 0.70, "recon": 85.0}]  # better recon
    got = {(v["seed"], v["model"]): v["verdict"] for v in verdicts(rows, 0.10)}
    assert got == {(0, "factorvae"): "holds", (0, "beta-tcvae"): "no", (1, "factorvae"): "worse recon",
                   (1, "beta-tcvae"): "holds"}
    # the test TC: MSS over chunks of the split with N = its size; one chunk = one minibatch_log_q call
    model = tiny()
    x = torch.rand(12, 6)
    t = test_terms(model, x, chunk=12, seed=3)
    with torch.no_grad():
        q = model.encode(x)
        z = q.mean + q.std * torch.randn(q.mean.shape, generator=torch.Generator().manual_seed(3))
        log_qz, log_prod = L.minibatch_log_q(z.double(), q.mean.double(), q.logvar.double(), 12, stratified=True)
        recon = model.nll(model.decode_logits(z), x).mean()
    assert math.isclose(t["tc_mss"], float((log_qz - log_prod).mean()), rel_tol=1e-6)
    assert math.isclose(t["recon"], float(recon), rel_tol=1e-5)
    assert math.isclose(t["elbo"], -(t["recon"] + t["kl"]), rel_tol=1e-9)
    two = test_terms(model, x, chunk=6, seed=3)  # two chunks: the same closed-form KL (other draws, other TC)
    assert math.isclose(two["kl"], t["kl"], rel_tol=1e-6) and math.isfinite(two["tc_mss"])
