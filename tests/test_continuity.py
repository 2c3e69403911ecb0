"""Perturbation continuity (aekit.evaluate.continuity) on hand-made decoders whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aekit.evaluate.classifier import ClassifierConfig, DomainClassifier
from aekit.evaluate.continuity import (
    aggregate_code_sd,
    perturbation_continuity,
    perturbation_steps,
    random_directions,
    reference_distances,
)

SHAPE = (1, 8, 8)


def _classifier(seed: int = 0) -> DomainClassifier:
    torch.manual_seed(seed)  # an untrained but fixed network: its features and labels are deterministic
    return DomainClassifier(ClassifierConfig(input_shape=SHAPE, n_classes=10)).eval()


def _linear(w: torch.Tensor, bias: torch.Tensor | None = None):
    def decode(z: torch.Tensor) -> torch.Tensor:
        out = z.double() @ w.T + (0 if bias is None else bias)
        return out.reshape(len(z), *SHAPE)

    return decode


def test_random_directions_are_unit_and_the_step_is_sd_times_sqrt_d_u():
    u = random_directions(500, 5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(u.norm(dim=1), torch.ones(500, dtype=torch.float64))
    sd = torch.tensor([1.0, 2.0, 0.5, 3.0, 0.1], dtype=torch.float64)
    step = perturbation_steps(sd, u)
    torch.testing.assert_close(step, math.sqrt(5) * sd * u)
    # the root-mean-square step along dimension j is sd_j (per unit δ): "δ is a fraction of the per-dimension sd"
    assert np.allclose((step**2).mean(0).sqrt().numpy(), sd.numpy(), rtol=0.15)


def test_a_linear_decoder_changes_by_exactly_delta_times_w_step():
    d = 4
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, d, generator=g, dtype=torch.float64)
    sd = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    sites = torch.randn(300, d, generator=g)
    out = perturbation_continuity(_linear(w), sites, sd, {"pixel": 2.0}, deltas=(0.1, 0.5), seed=3,
                                  return_samples=True)
    steps = perturbation_steps(sd, random_directions(300, d, torch.Generator().manual_seed(3)))
    for delta in (0.1, 0.5):
        want = (delta * steps @ w.T).norm(dim=1).numpy() / 2.0  # ‖W (δ · step)‖ over the reference distance
        got = out["samples"][f"{delta:g}"]["pixel"]
        np.testing.assert_allclose(got, want, rtol=1e-5)
        row = out["per_delta"][f"{delta:g}"]
        assert row["pixel_median"] == pytest.approx(float(np.median(want)), rel=1e-5)
        assert row["pixel_p95"] == pytest.approx(float(np.quantile(want, 0.95)), rel=1e-5)
        assert row["pixel_median_se"] > 0 and "label_flip" not in row  # no classifier: pixels only


def test_an_isometric_decoder_gives_delta_sqrt_d_sd_for_every_direction():
    d, s = 6, 0.7
    q, _ = torch.linalg.qr(torch.randn(64, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    out = perturbation_continuity(_linear(q), torch.randn(200, d), torch.full((d,), s), {"pixel": 1.0},
                                  deltas=(0.1, 0.25, 0.5))
    for delta in (0.1, 0.25, 0.5):
        row = out["per_delta"][f"{delta:g}"]
        want = delta * math.sqrt(d) * s
        assert row["pixel_median"] == pytest.approx(want, rel=1e-5)
        assert row["pixel_p95"] == pytest.approx(want, rel=1e-5)
        assert row["step_norm"] == pytest.approx(want, rel=1e-6)  # sd given as float32


def test_a_constant_decoder_changes_nothing_and_flips_no_label():
    image = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0))
    ref = torch.rand(50, *SHAPE, generator=torch.Generator().manual_seed(1))
    out = perturbation_continuity(lambda z: image.expand(len(z), *SHAPE), torch.randn(120, 3), torch.ones(3),
                                  ref, _classifier(), batch_size=50)
    assert out["pixel_scale"] > 0 and out["feature_scale"] > 0
    for row in out["per_delta"].values():
        for m in ("pixel_median", "pixel_p95", "feature_median", "feature_p95", "label_flip"):
            assert row[m] == 0.0


def test_a_switching_decoder_flips_exactly_where_the_step_crosses_the_switch():
    """One latent unit; the decoder shows image A below 0 and image B above it: a perturbation changes the
    image (by ‖A − B‖) and the label exactly when it crosses 0."""
    clf = _classifier()
    imgs = torch.rand(40, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        labels = clf(imgs).argmax(1)
    b = int(torch.nonzero(labels != labels[0])[0])  # two images the classifier labels differently
    a_img, b_img = imgs[0], imgs[b]

    def decode(z: torch.Tensor) -> torch.Tensor:
        return torch.where(z[:, :1, None, None] < 0, a_img, b_img)

    sites = torch.linspace(-1, 1, 401)[:, None]
    sd = torch.tensor([0.8])
    out = perturbation_continuity(decode, sites, sd, {"pixel": 1.0, "feature": 1.0}, clf, seed=5,
                                  return_samples=True)
    u = random_directions(401, 1, torch.Generator().manual_seed(5))
    for delta in (0.1, 0.25, 0.5):
        moved = sites.double() + delta * perturbation_steps(sd, u)
        crossed = ((sites.double() < 0) != (moved < 0))[:, 0].numpy()
        s = out["samples"][f"{delta:g}"]
        np.testing.assert_array_equal(s["flip"], crossed)
        np.testing.assert_allclose(s["pixel"], crossed * float((a_img - b_img).norm()), rtol=1e-5, atol=1e-6)
        assert out["per_delta"][f"{delta:g}"]["label_flip"] == pytest.approx(crossed.mean())
    # a larger step crosses more often
    flips = [out["per_delta"][k]["label_flip"] for k in ("0.1", "0.25", "0.5")]
    assert flips[0] < flips[1] < flips[2]


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others():
    w = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sites, sd = torch.randn(100, 3), torch.ones(3)
    ref = torch.rand(30, *SHAPE, generator=torch.Generator().manual_seed(1))

    def run(seed: int, batch_size: int = 500) -> dict:
        return perturbation_continuity(_linear(w, 0.5), sites, sd, ref, _classifier(), seed=seed,
                                       batch_size=batch_size)

    first = run(0)
    assert run(0) == first
    assert run(0, batch_size=7)["per_delta"]["0.25"]["pixel_median"] == pytest.approx(
        first["per_delta"]["0.25"]["pixel_median"], rel=1e-9)  # batching does not change the draws
    assert run(1)["per_delta"]["0.25"]["pixel_median"] != first["per_delta"]["0.25"]["pixel_median"]


def test_rescaling_each_latent_unit_leaves_the_measure_unchanged():
    """Scale unit j of the latent space by c_j (codes and their sd) and the decoder's input by 1/c_j: the same
    images are decoded, so every number is the same — also for a per-dimension (not only global) scale."""
    g = torch.Generator().manual_seed(4)
    w = torch.randn(64, 4, generator=g, dtype=torch.float64)

    def nonlinear(z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_linear(w)(z))

    sites = torch.randn(150, 4, generator=g).double()
    sd = torch.tensor([0.3, 1.0, 2.0, 0.7], dtype=torch.float64)
    ref = torch.rand(30, *SHAPE, generator=g)
    clf = _classifier()
    base = perturbation_continuity(nonlinear, sites, sd, ref, clf, seed=2)
    for c in (torch.full((4,), 7.0, dtype=torch.float64), torch.tensor([0.01, 5.0, 1.0, 300.0],
                                                                       dtype=torch.float64)):
        scaled = perturbation_continuity(lambda z, c=c: nonlinear(z.double() / c), sites * c, sd * c, ref, clf,
                                         seed=2)
        for key, row in base["per_delta"].items():
            for m in ("pixel_median", "pixel_p95", "feature_median", "feature_p95", "label_flip"):
                assert scaled["per_delta"][key][m] == pytest.approx(row[m], rel=1e-4, abs=1e-7), (c, key, m)


def test_reference_distance_of_two_images_is_their_distance():
    a, b = torch.zeros(SHAPE), torch.ones(SHAPE) * 0.5
    ref = reference_distances(torch.stack([a, b]), _classifier(), n_pairs=20)
    assert ref["pixel"] == pytest.approx(float((a - b).norm()))
    assert ref["feature"] > 0
    with pytest.raises(ValueError, match="at least 2"):
        reference_distances(a[None])


class _Gaussian:
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean, std


class _StubVAE(torch.nn.Module):
    """encode(x) = N(mean = x[:, :2] · 3, std = 0.5): the aggregate sd is sqrt(9 · Var(x) + 0.25)."""

    posterior = True
    latent_dim = 2
    device = torch.device("cpu")

    def encode(self, x: torch.Tensor) -> _Gaussian:
        m = 3 * x.flatten(1)[:, :2]
        return _Gaussian(m, torch.full_like(m, 0.5))


class _StubAE(_StubVAE):
    posterior = False

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * x.flatten(1)[:, :2]


def test_aggregate_code_sd_adds_the_posterior_variance_for_a_vae_only():
    x = torch.rand(500, 4, generator=torch.Generator().manual_seed(0))
    var = (3 * x[:, :2]).double().var(0)
    torch.testing.assert_close(aggregate_code_sd(_StubVAE(), x, batch_size=64), (var + 0.25).sqrt())
    torch.testing.assert_close(aggregate_code_sd(_StubAE(), x, batch_size=64), var.sqrt())


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="sd has shape"):
        perturbation_continuity(lambda z: z, torch.zeros(3, 2), torch.ones(3), {"pixel": 1.0})
    with pytest.raises(ValueError, match="at least one site"):
        perturbation_continuity(lambda z: z, torch.zeros(0, 2), torch.ones(2), {"pixel": 1.0})
