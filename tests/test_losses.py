"""Loss terms against hand-computed values and torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Laplace, Normal, kl_divergence

from aekit import losses as L
from aekit.models import DiagonalGaussian


def test_gaussian_kl_hand_computed():
    mean = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # ½(1 + 1 − 1 − 0) + ½(0 + 4 − 1 − log 4)
    expected = 0.5 + 0.5 * (3.0 - math.log(4.0))
    assert L.gaussian_kl(mean, logvar).item() == pytest.approx(expected, abs=1e-6)


def test_gaussian_kl_matches_torch_distributions():
    mean, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = Normal(mean, (0.5 * logvar).exp())
    p = Normal(torch.zeros(3), torch.ones(3))
    assert torch.allclose(L.gaussian_kl(mean, logvar), kl_divergence(q, p).sum(1), atol=1e-5)
    assert torch.allclose(DiagonalGaussian(mean, logvar).kl(), kl_divergence(q, p).sum(1), atol=1e-5)


def test_kl_zero_at_prior():
    assert L.gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max().item() == 0.0


def test_bernoulli_nll_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    x = torch.tensor([[1.0, 0.0]])
    expected = -math.log(0.5) - math.log(0.25)
    assert L.bernoulli_nll(logits, x).item() == pytest.approx(expected, abs=1e-6)
    xb = torch.randint(0, 2, (4, 6)).float()
    lg = torch.randn(4, 6)
    assert torch.allclose(L.bernoulli_nll(lg, xb), -Bernoulli(logits=lg).log_prob(xb).sum(1), atol=1e-5)


def test_bernoulli_nll_sums_over_image_dims_and_is_per_sample():
    logits = torch.zeros(3, 1, 4, 5)
    x = torch.ones(3, 1, 4, 5)
    out = L.bernoulli_nll(logits, x)
    assert out.shape == (3,)
    assert torch.allclose(out, torch.full((3,), 20 * math.log(2.0)))


def test_gaussian_and_laplace_nll_match_torch():
    mean, x = torch.randn(4, 5), torch.randn(4, 5)
    ls = torch.tensor(-0.3)
    assert torch.allclose(L.gaussian_nll(mean, x, ls), -Normal(mean, ls.exp()).log_prob(x).sum(1), atol=1e-5)
    assert torch.allclose(L.laplace_nll(mean, x, ls), -Laplace(mean, ls.exp()).log_prob(x).sum(1), atol=1e-5)
    # unit-variance Gaussian: ½ SSE + ½ d log 2π
    assert L.gaussian_nll(torch.zeros(1, 2), torch.tensor([[1.0, 2.0]])).item() == pytest.approx(
        0.5 * 5 + math.log(2 * math.pi), abs=1e-6)


def test_sse_and_l1():
    a = torch.tensor([[1.0, -2.0, 0.5]])
    assert L.sse(a, torch.zeros_like(a)).item() == pytest.approx(5.25)
    assert L.l1_activation(a).item() == pytest.approx(3.5)


def test_kl_sparsity_hand_computed():
    a = torch.tensor([[0.1, 0.5], [0.3, 0.5]])  # rho_hat = [0.2, 0.5]
    rho = 0.05

    def kl(r, q):
        return r * math.log(r / q) + (1 - r) * math.log((1 - r) / (1 - q))

    assert L.kl_sparsity(a, rho).item() == pytest.approx(kl(rho, 0.2) + kl(rho, 0.5), rel=1e-5)
    assert L.kl_sparsity(torch.full((3, 4), rho), rho).item() == pytest.approx(0.0, abs=1e-6)


def test_diagonal_gaussian_sample_mode_logprob():
    mean, logvar = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, math.log(0.25)]])
    q = DiagonalGaussian(mean, logvar)
    assert torch.equal(q.mode(), mean)
    g = torch.Generator().manual_seed(0)
    zs = torch.stack([q.sample(g) for _ in range(4000)])
    assert torch.allclose(zs.mean(0), mean, atol=0.05)
    assert torch.allclose(zs.std(0), torch.tensor([[1.0, 0.5]]), atol=0.05)
    z = torch.randn(3, 1, 2)
    expected = Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    assert torch.allclose(q.log_prob(z), expected, atol=1e-5)
