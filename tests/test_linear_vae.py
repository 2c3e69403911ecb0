"""The linear Gaussian VAE = pPCA / factor analysis (issue 17): closed forms, the per-dim scale, the bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aekit.data import DataShape
from aekit.errors import ConfigError
from aekit.evaluate.likelihood import iwae_nll
from aekit.experiments.linear_vae import (
    analytic_elbo,
    gaussian_loglik,
    linear_vae_config,
    ppca_fit,
    ppca_loglik,
    vae_exact_loglik,
)
from aekit.models.vae import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread


def _ppca_data(n: int, d: int, q: int, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, q)) * np.linspace(2.0, 1.0, q)
    return rng.normal(size=(n, q)) @ w.T + sigma * rng.normal(size=(n, d)) + rng.normal(size=d)


def test_ppca_formula_equals_sklearn_score():
    from sklearn.decomposition import PCA

    x = _ppca_data(300, 7, 2, 0.5, 0)
    train, test = x[:200], x[200:]
    mean, w, s2 = ppca_fit(train, 2, ddof=1)  # scikit-learn's covariance has 1/(N − 1)
    sk = PCA(n_components=2, svd_solver="full").fit(train)
    assert s2 == pytest.approx(sk.noise_variance_, rel=1e-10)
    assert ppca_loglik(test, mean, w, s2).mean() == pytest.approx(sk.score(test), abs=1e-9)
    # the 1/N fit is the maximum of the training likelihood: above the 1/(N − 1) one there, by a little
    ml = ppca_loglik(train, *ppca_fit(train, 2, ddof=0)).mean()
    assert sk.score(train) < ml < sk.score(train) + 0.05


def test_gaussian_loglik_by_hand():
    cov = np.array([[2.0, 0.3], [0.3, 0.5]])
    x, m = np.array([[1.0, -1.0]]), np.array([0.5, 0.0])
    r = x[0] - m
    hand = -0.5 * (r @ np.linalg.inv(cov) @ r + math.log(np.linalg.det(cov)) + 2 * math.log(2 * math.pi))
    assert gaussian_loglik(x, m, cov)[0] == pytest.approx(hand, abs=1e-12)


def test_gaussian_nll_shared_and_per_dim_by_hand():
    x = torch.tensor([[0.5, -1.0, 2.0]])
    mean = torch.tensor([[0.0, 0.0, 1.0]])
    shared = VAE(linear_vae_config(2, 3, "shared"))
    per = VAE(linear_vae_config(2, 3, "per-dim"))
    assert shared.log_scale.shape == () and per.log_scale.shape == (3,)
    sig = [0.5, 2.0, 1.5]
    with torch.no_grad():
        shared.log_scale.fill_(math.log(0.5))
        per.log_scale.copy_(torch.tensor([math.log(s) for s in sig]))
    r = [0.5, -1.0, 1.0]
    hand_shared = sum(0.5 * v * v / 0.25 + math.log(0.5) + 0.5 * math.log(2 * math.pi) for v in r)
    hand_per = sum(0.5 * v * v / s**2 + math.log(s) + 0.5 * math.log(2 * math.pi) for v, s in zip(r, sig))
    assert shared.nll(mean, x).item() == pytest.approx(hand_shared, rel=1e-6)
    assert per.nll(mean, x).item() == pytest.approx(hand_per, rel=1e-6)
    assert per.log_scale.requires_grad  # learned; the default VAE's scale is fixed and shared
    default = VAE(VAEConfig(input_shape=(3,), hidden=(4,), likelihood="gaussian"))
    assert default.log_scale.shape == () and not default.log_scale.requires_grad


def test_analytic_elbo_and_iwae_below_the_exact_loglik():
    """For any (untrained) linear VAE: analytic ELBO ≤ exact log p(x) per sample, the Monte-Carlo ELBO agrees
    with it, and the IWAE estimate with many samples comes close to the exact value from below."""
    torch.manual_seed(0)
    model = VAE(linear_vae_config(2, 4, "per-dim")).eval()
    with torch.no_grad():
        model.log_scale.copy_(torch.tensor([-0.5, 0.0, 0.3, -0.2]))
    x = torch.randn(64, 4)
    elbo, exact = analytic_elbo(model, x), vae_exact_loglik(model, x.double().numpy())
    assert (elbo <= exact + 1e-9).all() and (exact - elbo).mean() > 0.01
    with torch.no_grad():  # the one-draw ELBO of the model's own loss, averaged over many draws
        q = model.encode(x)
        mc = np.mean([-(model.nll(model.decode_logits(q.sample()), x) + q.kl()).mean().item() for _ in range(400)])
    assert mc == pytest.approx(elbo.mean(), abs=0.05)
    iwae = -iwae_nll(model, x, 2000, seed=0).numpy()
    assert elbo.mean() < iwae.mean() < exact.mean() + 0.01
    assert exact.mean() - iwae.mean() < 0.2 * (exact.mean() - elbo.mean())


def test_one_line_errors():
    with pytest.raises(ConfigError, match="per-dim needs --likelihood gaussian"):
        VAEConfig(likelihood="bernoulli", learn_scale=True, scale_shape="per-dim")
    with pytest.raises(ConfigError, match="add --learn-scale"):
        VAEConfig(likelihood="gaussian", scale_shape="per-dim")
    images = DataShape((1, 8, 8), in_unit_interval=True)  # auto → bernoulli for images
    with pytest.raises(ConfigError, match="Bernoulli"):
        VAEConfig(learn_scale=True, scale_shape="per-dim").resolve(images)
    with pytest.raises(ConfigError) as e:
        VAEConfig(likelihood="gaussian", scale_shape="per-dim")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("scale", ["shared", "per-dim"])
def test_linear_gaussian_returns_the_generative_model(scale):
    m = VAE(linear_vae_config(2, 3, scale))
    lin = m.decoder if isinstance(m.decoder, torch.nn.Linear) else m.decoder[0]
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
        lin.bias.copy_(torch.tensor([0.5, -0.5, 1.0]))
        m.log_scale.copy_(torch.log(torch.tensor([0.5, 2.0, 3.0] if scale == "per-dim" else 2.0)))
    w, b, var = m.linear_gaussian()
    assert w.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]] and b.tolist() == [0.5, -0.5, 1.0]
    expected = [0.25, 4.0, 9.0] if scale == "per-dim" else [4.0, 4.0, 4.0]
    assert var.dtype == torch.float64 and var.tolist() == pytest.approx(expected)
    mean = m.decode(torch.tensor([[1.0, -1.0]]))[0].double()  # the decoder's mean is Wz + b
    assert mean.tolist() == pytest.approx((w @ torch.tensor([1.0, -1.0], dtype=torch.float64) + b).tolist())


def test_linear_gaussian_refuses_other_vaes():
    for cfg in (VAEConfig(input_shape=(3,), hidden=(4,), latent_dim=2, likelihood="gaussian"),
                VAEConfig(input_shape=(3,), hidden=(), latent_dim=2, likelihood="bernoulli")):
        with pytest.raises(ConfigError, match="linear Gaussian VAE") as e:
            VAE(cfg).linear_gaussian()
        assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["shared", "per-dim"])
def test_trained_linear_vae_reaches_the_exact_loglik(scale):
    """On data drawn from a pPCA model (d = 5, q = 2) the trained linear VAE's ELBO comes within 0.05 nats of
    the maximum-likelihood log-likelihood (pPCA's closed form: also FA's optimum when the noise is isotropic)."""
    from aekit.data import Batch

    x = _ppca_data(2000, 5, 2, 0.3, 1)
    xt = torch.from_numpy(x).float()
    torch.manual_seed(0)
    model = VAE(linear_vae_config(2, 5, scale))
    steps = 2000  # Adam, minibatches of 100, cosine decay to 0 (the experiment's recipe; the model's own loss)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    for i in range(steps):
        idx = order[(i % 20) * 100:(i % 20 + 1) * 100]
        opt.zero_grad()
        model.loss(Batch(xt[idx])).total.backward()
        opt.step()
        sched.step()
    exact = ppca_loglik(x, *ppca_fit(x, 2)).mean()
    elbo = analytic_elbo(model, xt).mean()
    assert elbo <= vae_exact_loglik(model, x).mean() + 1e-9
    # per-dim has more parameters: its train optimum is ≥ pPCA's, by O(d / N)
    assert elbo == pytest.approx(exact, abs=0.05)


def test_fa_em_reaches_sklearns_maximum():
    """EM on the covariance and scikit-learn's FactorAnalysis (run to a tight tolerance) find the same ML fit."""
    from sklearn.decomposition import FactorAnalysis

    from aekit.experiments.linear_vae import fa_em, fa_loglik_cov

    rng = np.random.default_rng(2)
    x = _ppca_data(400, 6, 2, 1.0, 3) * rng.uniform(0.5, 2.0, size=6)  # unequal noise: FA ≠ pPCA
    mean, w, psi, _ = fa_em(x, 2, tol=1e-12)
    sk = FactorAnalysis(2, tol=1e-10, max_iter=100000, svd_method="lapack").fit(x)
    ll = gaussian_loglik(x, mean, w @ w.T + np.diag(psi)).mean()
    assert ll == pytest.approx(sk.score(x), abs=1e-6)
    assert np.allclose(np.sort(psi), np.sort(sk.noise_variance_), rtol=1e-3)
    xc = x - mean
    assert fa_loglik_cov(xc.T @ xc / len(x), w, psi) == pytest.approx(ll, abs=1e-9)
    assert ll > ppca_loglik(x, *ppca_fit(x, 2)).mean() + 0.01  # per-dim noise fits better than shared here


@pytest.mark.slow
def test_experiment_model_builds_leave_the_callers_rng():
    from aekit.data import DataConfig, load_data
    from aekit.experiments.anomaly import OneClassConfig, _train

    data = load_data(DataConfig("digits", subsample=100))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    _train("ae", {"hidden": (8,), "latent_dim": 2}, data, OneClassConfig(epochs=1, batch_size=50), 0, False)
    assert torch.equal(torch.get_rng_state(), state)  # seeded for the weights inside a forked RNG only
