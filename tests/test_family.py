"""The models of the family beyond the basics (issue 17), each against hand-computed values of its paper's loss."""

from __future__ import annotations

import dataclasses
import math

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_iwae_trains_through_the_registry(tmp_path):
    run = aekit.train("vae", "digits", tmp_path / "i", epochs=2, hidden="32", latent_dim=4, objective="iwae",
                      iwae_k=3, progress=False, report=False)
    assert "iwae_bound" in run.evaluation and run.evaluation["iwae_bound"] >= run.evaluation["elbo"] - 0.5


# ----------------------------------------------------------------------------------------------- contractive AE


def _jacobians(f, x):
    """The Jacobian of f at each row of x, by autograd: (B, k, d)."""
    return torch.stack([torch.autograd.functional.jacobian(lambda v: f(v.unsqueeze(0))[0], row) for row in x])


def test_contractive_exact_penalty_matches_the_hand_computed_jacobian():
    from aekit.models import AE, AEConfig

    torch.manual_seed(0)
    cfg = AEConfig(hidden=(), latent_dim=3, code_activation="sigmoid", contractive=0.7).resolve(
        DataShape((1, 2, 2), True))
    model = AE(cfg)
    assert cfg.contractive_exact
    x = torch.rand(4, 1, 2, 2)
    losses = model.loss(Batch(x))
    w, b = model.encoder[0].weight.detach(), model.encoder[0].bias.detach()
    by_hand = []
    for row in x.flatten(1):  # Σⱼ (hⱼ(1 − hⱼ))² Σᵢ Wⱼᵢ², written out
        total = 0.0
        for j in range(3):
            h = 1 / (1 + torch.exp(-(w[j] @ row + b[j])))
            total += float(h * (1 - h)) ** 2 * sum(float(w[j, i]) ** 2 for i in range(4))
        by_hand.append(total)
    autograd = _jacobians(model.encode, x.flatten(1)).pow(2).sum((1, 2))
    assert torch.allclose(autograd, torch.tensor(by_hand), rtol=1e-5)
    mean = sum(by_hand) / 4
    assert losses.terms["jacobian_sq_frobenius"].item() == pytest.approx(mean, rel=1e-5)
    assert losses.terms["contractive"].item() == pytest.approx(0.7 * mean, rel=1e-5)
    recon = torch.nn.functional.binary_cross_entropy_with_logits(
        model.decode_logits(model.encode(x)), x, reduction="none").flatten(1).sum(1).mean()
    assert losses.total.item() == pytest.approx(recon.item() + 0.7 * mean, rel=1e-5)
    # the penalty's gradient reaches the encoder weights (the decoder is tied: W is shared, so use the bias)
    model.zero_grad()
    losses.terms["contractive"].backward()
    assert model.encoder[0].bias.grad is not None and model.encoder[0].bias.grad.abs().sum() > 0


def test_contractive_stochastic_estimate_is_unbiased_on_a_deep_encoder():
    from aekit.models import AE, AEConfig

    torch.manual_seed(1)
    cfg = AEConfig(hidden=(6, 5), latent_dim=3, activation="tanh", norm="none", contractive=1.0,
                   contractive_probes=4000).resolve(DataShape((4,), False))
    model = AE(cfg)
    assert not cfg.contractive_exact
    x = torch.randn(3, 4)
    exact = _jacobians(model.encode, x).pow(2).sum((1, 2))  # (3,)
    xg = x.clone().requires_grad_(True)
    est = aekit.losses.jacobian_sq_frobenius_hutchinson(model.encode(xg), xg, probes=4000, create_graph=False)
    assert torch.allclose(est, exact, rtol=0.05), (est, exact)
    # through the loss: the same number with autograd off (validation, evaluation) as on, same seed
    torch.manual_seed(2)
    on = model.loss(Batch(x))
    torch.manual_seed(2)
    with torch.no_grad():
        off = model.loss(Batch(x))
    assert on.terms["contractive"].item() == pytest.approx(off.terms["contractive"].item(), rel=1e-5)
    assert on.terms["contractive"].item() == pytest.approx(exact.mean().item(), rel=0.05)
    assert not off.total.requires_grad
    model.zero_grad()
    on.terms["contractive"].backward()  # differentiable: the penalty alone reaches the first layer
    assert model.encoder[0].weight.grad.abs().sum() > 0


def test_contractive_options_are_checked():
    from aekit.models import AEConfig

    with pytest.raises(aekit.errors.ConfigError, match="--contractive -1"):
        AEConfig(contractive=-1.0)
    with pytest.raises(aekit.errors.ConfigError, match="needs a one-layer encoder"):
        AEConfig(contractive=0.1, contractive_estimator="exact", hidden=(16,))
    with pytest.raises(aekit.errors.ConfigError, match="--contractive-probes 0"):
        AEConfig(contractive=0.1, contractive_probes=0)


# ----------------------------------------------------------------------------------------------- β-TCVAE


def _log_normal(v, mu, logvar):
    return -0.5 * (math.log(2 * math.pi) + logvar + (v - mu) ** 2 / math.exp(logvar))


def _minibatch_log_q_by_loops(z, mean, logvar, n, stratified):
    """log q(zᵢ) and Σⱼ log q(zᵢⱼ) of Chen et al. (2018), the batch's weights written out one by one."""
    m, d = z.shape
    z, mean, logvar = z.tolist(), mean.tolist(), logvar.tolist()

    def weight(i, k):
        if not stratified:
            return 1 / (n * m)
        if k == i:
            return 1 / n
        return (n - m + 1) / (n * (m - 1)) if k == (i + 1) % m else 1 / (m - 1)

    log_qz, log_prod = [], []
    for i in range(m):
        joint = sum(weight(i, k) * math.exp(sum(_log_normal(z[i][j], mean[k][j], logvar[k][j]) for j in range(d)))
                    for k in range(m))
        log_qz.append(math.log(joint))
        log_prod.append(sum(math.log(sum(weight(i, k) * math.exp(_log_normal(z[i][j], mean[k][j], logvar[k][j]))
                                         for k in range(m))) for j in range(d)))
    return log_qz, log_prod


@pytest.mark.parametrize("stratified", [False, True])
def test_minibatch_estimates_of_log_q_match_brute_force(stratified):
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(5, 3, generator=g, dtype=torch.float64), 0.5 * torch.randn(5, 3, generator=g,
                                                                                          dtype=torch.float64)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(5, 3, generator=g, dtype=torch.float64)
    log_qz, log_prod = aekit.losses.minibatch_log_q(z, mean, logvar, 40, stratified)
    want_qz, want_prod = _minibatch_log_q_by_loops(z, mean, logvar, 40, stratified)
    assert log_qz.tolist() == pytest.approx(want_qz, rel=1e-9)
    assert log_prod.tolist() == pytest.approx(want_prod, rel=1e-9)
    # posteriors all equal to the prior: MSS gives log p(z) (its weights sum to 1), MWS log p(z) − log N
    zeros = torch.zeros(5, 3, dtype=torch.float64)
    log_qz, _ = aekit.losses.minibatch_log_q(z, zeros, zeros, 40, stratified)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(log_qz, log_pz - (0.0 if stratified else math.log(40)))


def test_tcvae_loss_is_recon_plus_weighted_decomposition():
    from aekit.models import VAE, VAEConfig

    torch.manual_seed(0)
    cfg = VAEConfig(hidden=(8,), latent_dim=2, objective="tcvae", beta=5.0, tc_alpha=0.5, tc_gamma=2.0,
                    tc_dataset_size=100).resolve(DataShape((1, 3, 3), True))
    model = VAE(cfg)
    x = torch.rand(6, 1, 3, 3)
    torch.manual_seed(3)
    losses = model.loss(Batch(x))
    torch.manual_seed(3)
    q = model.encode(x)
    z = q.sample()
    t = losses.terms
    log_qz, log_prod = _minibatch_log_q_by_loops(z.detach(), q.mean.detach(), q.logvar.detach(), 100, False)
    log_qzx = torch.distributions.Normal(q.mean, q.std).log_prob(z).sum(1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    mi = (log_qzx - torch.tensor(log_qz)).mean().item()
    tc = (torch.tensor(log_qz) - torch.tensor(log_prod)).mean().item()
    dim_kl = (torch.tensor(log_prod) - log_pz).mean().item()
    assert (t["mi"].item(), t["tc"].item(), t["dim_kl"].item()) == pytest.approx((mi, tc, dim_kl), rel=1e-4, abs=1e-4)
    # MI + TC + dimKL is the one-draw KL estimate log q(z|x) − log p(z)
    assert t["mi"].item() + t["tc"].item() + t["dim_kl"].item() == pytest.approx((log_qzx - log_pz).mean().item(),
                                                                                rel=1e-4, abs=1e-4)
    want = t["recon"].item() + 0.5 * mi + 5.0 * tc + 2.0 * dim_kl
    assert losses.total.item() == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_tcvae_options_are_checked():
    from aekit.models import VAEConfig

    with pytest.raises(aekit.errors.ConfigError, match="add --objective tcvae"):
        VAEConfig(tc_alpha=0.0)
    with pytest.raises(aekit.errors.ConfigError, match="must be ≥ 0"):
        VAEConfig(objective="tcvae", tc_gamma=-1.0)
    with pytest.raises(aekit.errors.ConfigError, match="--tc-dataset-size N"):
        VAEConfig(objective="tcvae").resolve(DataShape((1, 3, 3), True))


@pytest.mark.slow
def test_tcvae_trains_through_the_registry_with_n_from_the_data(tmp_path):
    run = aekit.train("tcvae", "digits", tmp_path / "t", epochs=2, hidden="32", latent_dim=4, progress=False,
                      report=False, tc_estimator="mss")
    data = aekit.data.load_data(aekit.DataConfig("digits"))
    assert run.model.config.tc_dataset_size == len(data.train)
    assert aekit.load(tmp_path / "t").config.tc_dataset_size == len(data.train)
    assert {"mi", "tc", "dim_kl", "elbo"} <= set(run.evaluation)


@pytest.mark.slow
def test_contractive_experiment_quick(tmp_path):
    from aekit.experiments import ExperimentContext, run_experiment

    result = run_experiment("contractive", ExperimentContext(data="digits", out=tmp_path, quick=True, progress=False))
    lams = [r["lambda"] for r in result.rows]
    assert lams == sorted(lams) and lams[0] == 0
    # the experiment's Jacobian (one VJP per unit) is the exact one: the closed form of the run's own loss term
    run = aekit.load_run(tmp_path / "runs" / f"lambda-{lams[-1]:g}")
    x = aekit.data.to_float(aekit.data.load_data(aekit.DataConfig("digits")).test.x[:50])
    from aekit.experiments.contractive import jacobian_sq_frobenius

    run.model.eval()
    with torch.no_grad():
        term = run.model.loss(Batch(x)).terms["jacobian_sq_frobenius"].item()
    assert jacobian_sq_frobenius(run.model, x).mean().item() == pytest.approx(term, rel=1e-4)
    assert (tmp_path / "summary.md").exists() and (tmp_path / "contractive.png").exists()
    for r in result.rows:
        assert r["test_jacobian_sq_frobenius"] > 0 and math.isfinite(r["test_sse_per_image"])
