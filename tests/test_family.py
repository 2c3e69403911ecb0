"""The models of the family beyond the basics (issue 17), each against hand-computed values of its paper's loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import aekit
from aekit.data import Batch, DataShape
from aekit.models.wae import IMQ_SCALES, WAE, WAEConfig, imq_mmd


def _imq_mmd_by_loops(z, p, var=1.0):
    """The unbiased MMD² of Tolstikhin et al. (2018), Algorithm 2, written out term by term."""
    n, d = z.shape
    total = 0.0
    for s in IMQ_SCALES:
        c = s * 2 * d * var
        k = lambda a, b, c=c: c / (c + float(((a - b) ** 2).sum()))  # noqa: E731
        zz = sum(k(z[i], z[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        pp = sum(k(p[i], p[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        zp = sum(k(z[i], p[j]) for i in range(n) for j in range(n)) / (n * n)
        total += zz + pp - 2 * zp
    return total


def test_imq_mmd_matches_the_papers_estimator():
    g = torch.Generator().manual_seed(0)
    z, p = torch.randn(7, 3, generator=g) * 2 + 1, torch.randn(7, 3, generator=g)
    assert imq_mmd(z, p).item() == pytest.approx(_imq_mmd_by_loops(z, p), rel=1e-5)
    assert imq_mmd(z, p, var=2.0).item() == pytest.approx(_imq_mmd_by_loops(z, p, var=2.0), rel=1e-5)
    # the same distribution scores near zero, a shifted one clearly above it
    a, b = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    assert abs(imq_mmd(a, b).item()) < 0.02 < imq_mmd(a + 2.0, b).item()


def test_wae_loss_is_recon_plus_weighted_mmd():
    model = WAE(WAEConfig(hidden=(8,), latent_dim=2, mmd_weight=50.0).resolve(DataShape((1, 4, 4), True)))
    x = torch.rand(6, 1, 4, 4)
    torch.manual_seed(5)
    losses = model.loss(Batch(x))
    z = model.encode(x)
    torch.manual_seed(5)
    prior = torch.randn_like(z)
    recon = ((model.decode(z) - x) ** 2).flatten(1).sum(1).mean()  # mse: the sum of squared errors per sample
    assert losses.terms["recon"].item() == pytest.approx(recon.item(), rel=1e-5)
    assert losses.terms["mmd"].item() == pytest.approx(50.0 * imq_mmd(z, prior).item(), rel=1e-5)
    assert losses.total.item() == pytest.approx(losses.terms["recon"].item() + losses.terms["mmd"].item(), rel=1e-6)


def test_wae_trains_and_samples_through_the_registry(tmp_path):
    run = aekit.train("wae", "digits", tmp_path / "w", epochs=3, hidden="32", latent_dim=4, progress=False,
                      report=False)
    first, last = run.metrics[0], run.metrics[-1]
    assert last["val_recon"] < first["val_recon"]
    assert aekit.load(tmp_path / "w").sample(3).shape == (3, 1, 8, 8)
    with pytest.raises(aekit.errors.ConfigError, match="--mmd-weight must be ≥ 0"):
        WAEConfig(mmd_weight=-1.0)


def test_iwae_bound_matches_burda_et_al_and_k1_is_the_elbo():
    from aekit.models import VAE, VAEConfig

    torch.manual_seed(0)
    cfg = VAEConfig(hidden=(8,), latent_dim=2, objective="iwae", iwae_k=4).resolve(DataShape((1, 3, 3), True))
    model = VAE(cfg)
    x = torch.rand(5, 1, 3, 3)
    torch.manual_seed(7)
    losses = model.loss(Batch(x))
    # by hand: the same 4 draws per sample, log w = log p(x|z) + log N(z; 0, I) − log q(z|x), bound = log-mean-exp
    torch.manual_seed(7)
    q = model.encode(x)
    z = q.mean + q.std * torch.randn(4, 5, 2)
    logits = model.decode_logits(z.reshape(20, 2)).view(4, 5, 1, 3, 3)
    log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x.expand(4, -1, -1, -1, -1), reduction="none").flatten(2).sum(-1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_q = torch.distributions.Normal(q.mean, q.std).log_prob(z).sum(-1)
    bound = (torch.logsumexp(log_px + log_pz - log_q, 0) - torch.log(torch.tensor(4.0))).mean()
    assert losses.terms["iwae_bound"].item() == pytest.approx(bound.item(), rel=1e-5)
    assert losses.total.item() == pytest.approx(-bound.item(), rel=1e-5)
    # the bound is at least the ELBO estimated from the same draws (Jensen), and k = 1 is the ELBO itself
    elbo_same_draws = (log_px + log_pz - log_q).mean()
    assert bound.item() >= elbo_same_draws.item() - 1e-6
    one = VAE(dataclasses.replace(cfg, iwae_k=1))
    one.load_state_dict(model.state_dict())
    torch.manual_seed(3)
    l1 = one.loss(Batch(x))
    torch.manual_seed(3)
    q1 = one.encode(x)
    z1 = q1.mean + q1.std * torch.randn(1, 5, 2)
    nll1 = torch.nn.functional.binary_cross_entropy_with_logits(one.decode_logits(z1[0]), x, reduction="none")
    log_w1 = -nll1.flatten(1).sum(1) + torch.distributions.Normal(0.0, 1.0).log_prob(z1[0]).sum(-1) \
        - torch.distributions.Normal(q1.mean, q1.std).log_prob(z1[0]).sum(-1)
    assert l1.terms["iwae_bound"].item() == pytest.approx(log_w1.mean().item(), rel=1e-5)


def test_iwae_options_are_checked():
    from aekit.models import VAEConfig

    with pytest.raises(aekit.errors.ConfigError, match="--iwae-k 0"):
        VAEConfig(objective="iwae", iwae_k=0)
    with pytest.raises(aekit.errors.ConfigError, match="has no β"):
        VAEConfig(objective="iwae", beta=4.0)


def test_iwae_trains_through_the_registry(tmp_path):
    run = aekit.train("vae", "digits", tmp_path / "i", epochs=2, hidden="32", latent_dim=4, objective="iwae",
                      iwae_k=3, progress=False, report=False)
    assert "iwae_bound" in run.evaluation and run.evaluation["iwae_bound"] >= run.evaluation["elbo"] - 0.5
