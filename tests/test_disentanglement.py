"""Disentanglement metrics on synthetic codes with known answers: codes = factors score ≈ 1, a random rotation
of them clearly lower, pure noise ≈ chance."""

from __future__ import annotations

import numpy as np
import pytest

from aekit.evaluate.disentanglement import (
    FactorSampler,
    beta_vae_score,
    dci,
    discrete_mutual_info,
    disentanglement_metrics,
    factor_vae_score,
    mig,
    prune_units,
)

SIZES = (3, 6, 8, 8, 8)


@pytest.fixture(scope="module")
def factors():
    """The full factor product (every combination once), like dSprites with fewer values."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES), 1)


@pytest.fixture(scope="module")
def codes(factors):
    rng = np.random.default_rng(0)
    ident = (factors - factors.mean(0)) / factors.std(0) + 0.02 * rng.standard_normal(factors.shape)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    return {"identity": ident, "rotated": ident @ q, "noise": rng.standard_normal(factors.shape)}


@pytest.fixture(scope="module")
def scores(codes, factors):
    return {name: disentanglement_metrics(c, factors, quick=True, seed=0) for name, c in codes.items()}


KEYS = ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness")


def test_codes_equal_to_factors_score_near_one(scores):
    s = scores["identity"]
    for k in KEYS:
        assert s[k] > 0.95, (k, s[k])
    assert s["dci_informativeness"] > 0.95
    assert len(s["beta_vae_per_factor"]) == len(SIZES) and min(s["beta_vae_per_factor"]) > 0.9
    nmi = np.asarray(s["mutual_info_normalised"])  # I(z_j; v_k) / H(v_k): unit k carries all of factor k
    assert s["mig_factors"] == list(range(len(SIZES))) and np.diag(nmi).min() > 0.9


def test_rotation_scores_clearly_lower(scores):
    ident, rot = scores["identity"], scores["rotated"]
    for k in KEYS:
        assert rot[k] < ident[k] - 0.1, (k, rot[k], ident[k])
    assert rot["mig"] < 0.5 and rot["dci_disentanglement"] < 0.5
    assert rot["dci_informativeness"] > 0.7  # the information is still there, only mixed


def test_noise_scores_near_chance(scores):
    s = scores["noise"]
    k = len(SIZES)
    assert s["beta_vae"] < 1.0 / k + 0.15
    assert np.mean(s["beta_vae_per_factor"]) < 1.0 / k + 0.15  # its mean is the score, up to unequal counts
    assert s["factor_vae"] < 1.0 / k + 0.15
    assert s["mig"] < 0.05
    assert s["dci_disentanglement"] < 0.15 and s["dci_completeness"] < 0.15


def test_sampler_fixes_the_factor_and_encodes_through_the_callable(factors):
    calls = []

    def encode(rows):
        calls.append(len(rows))
        return factors[rows].astype(float)

    sampler = FactorSampler(factors, encode)
    rng = np.random.default_rng(0)
    anchors = sampler.random_rows(rng, (50, 7))
    for k in range(len(SIZES)):
        partner = sampler.same_value_rows(rng, k, anchors)
        assert partner.shape == anchors.shape
        assert (factors[partner, k] == factors[anchors, k]).all()
        assert not (partner == anchors).all()
    assert sampler.encode(anchors).shape == (50, 7, len(SIZES)) and sum(calls) == 350
    # the scores work with an encode callable as well as with a table of codes
    assert beta_vae_score(sampler, n_train=100, n_eval=60, batch_size=8)["beta_vae"] > 0.95
    assert factor_vae_score(sampler, n_train=100, n_eval=60, batch_size=8, n_variance=500)["factor_vae"] > 0.95


def test_constant_factor_is_ignored_and_collapsed_codes_score_zero(factors):
    f = np.concatenate([factors, np.zeros((len(factors), 1), dtype=np.int64)], 1)  # a factor with one value
    z = np.zeros((len(f), 3))
    assert factor_vae_score(FactorSampler.from_codes(z, f), n_train=50, n_eval=20, batch_size=8)["factor_vae"] == 0
    m = mig(np.concatenate([factors, factors[:, :1]], 1).astype(float), f)
    assert len(m["mig_per_factor"]) == len(SIZES)


def test_mutual_information_basics():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(20000, 1))
    b = rng.integers(0, 4, size=(20000, 1))
    h = -(np.bincount(a[:, 0]) / len(a) * np.log(np.bincount(a[:, 0]) / len(a))).sum()
    assert discrete_mutual_info(a, a)[0, 0] == pytest.approx(h)
    assert discrete_mutual_info(a, b)[0, 0] < 0.01


def test_dci_importance_matrix_shape(codes, factors):
    rows = np.random.default_rng(1).permutation(len(factors))[:2000]
    out = dci(codes["identity"][rows], factors[rows], n_estimators=5)
    imp = np.array(out["importance"])
    assert imp.shape == (5, 5) and (imp >= 0).all()
    assert (imp.argmax(0) == np.arange(5)).all()  # factor k is predicted from unit k


def test_normalised_mutual_info_is_bias_corrected_on_small_pools(factors):
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(factors))[:300]  # 300 rows, 20 bins × up to 8 values: the plug-in MI of noise ≈ 0.12
    noise = mig(rng.standard_normal((300, len(SIZES))), factors[rows])
    assert np.max(noise["mutual_info_normalised"]) < 0.05
    ident = mig(factors[rows] + 0.01 * rng.standard_normal((300, len(SIZES))), factors[rows])
    assert np.diag(np.asarray(ident["mutual_info_normalised"])).min() > 0.9


def test_factor_vae_prunes_by_standard_deviation_as_disentanglement_lib():
    """A unit of sd 0.1 (variance 0.01) is kept by disentanglement_lib's rule (sd ≥ 0.05) and dropped by the
    variance rule (variance ≥ 0.05); a unit of sd 0.03 is dropped by both."""
    rng = np.random.default_rng(0)
    f = rng.integers(0, 4, size=(4000, 2))
    z = (f - 1.5) / np.array([1.118, 1.118])  # sd 1 per unit, unit k = factor k
    codes = np.concatenate([z[:, :1], 0.1 * z[:, 1:], 0.03 * rng.standard_normal((len(f), 1))], 1)
    sampler = FactorSampler.from_codes(codes, f)
    opts = dict(n_train=300, n_eval=200, batch_size=32, n_variance=2000)
    std = factor_vae_score(sampler, prune="std", **opts)
    var = factor_vae_score(sampler, prune="variance", **opts)
    assert std["factor_vae_active_units"] == 2 and var["factor_vae_active_units"] == 1
    assert std["factor_vae"] > 0.95  # both factors have their own unit
    assert var["factor_vae"] < 0.7  # one unit left: it cannot tell the two factors apart
    assert std["factor_vae_prune"] == "standard deviation ≥ 0.05" and var["factor_vae_prune"] == "variance ≥ 0.05"
    var = np.array([0.01, 0.002, 0.0025, 0.06])
    assert prune_units(var).tolist() == [True, False, True, True]  # √0.0025 = 0.05 is kept (≥), as in the reference
    assert prune_units(var, rule="variance").tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="prune rule"):
        prune_units(var, rule="sd")


@pytest.fixture(scope="module")
def small_codes():
    """3 binary factors (one boosted tree per stage: fast), 400 samples: units 0–2 equal to the factors (small
    noise), units 3–4 pure noise."""
    rng = np.random.default_rng(0)
    f = rng.integers(0, 2, size=(400, 3))
    ident = np.concatenate([2.0 * f - 1.0 + 0.1 * rng.standard_normal(f.shape), rng.standard_normal((400, 2))], 1)
    # factors 0 and 1 share unit 0 (4 levels), unit 1 is factor 2: D = ⅔ (1 − log 2 / log 3) + ⅓ ≈ 0.58, C ≈ 1
    merged = np.concatenate([(f[:, :1] + 2 * f[:, 1:2]) + 0.1 * rng.standard_normal((400, 1)), ident[:, 2:]], 1)
    return f, ident, merged


def test_dci_gradient_boosted_importances_as_disentanglement_lib(small_codes):
    from sklearn.ensemble import GradientBoostingClassifier

    f, ident, merged = small_codes
    out = dci(ident, f, importance="gbt", seed=3)
    imp = np.asarray(out["importance"])
    assert out["dci_importance_model"] == "gbt" and imp.shape == (5, 3)
    assert (imp.argmax(0) == np.arange(3)).all() and np.diag(imp).min() > 0.9
    assert imp[3:].max() < 0.05  # the noise units
    assert out["dci_disentanglement"] > 0.9 and out["dci_completeness"] > 0.8 and out["dci_informativeness"] > 0.95
    # the importances are those of sklearn's default GradientBoostingClassifier on the same training rows
    perm = np.random.default_rng(3).permutation(len(f))[:320]
    ref = GradientBoostingClassifier(random_state=3).fit(ident[perm], f[perm, 1]).feature_importances_
    assert np.allclose(imp[:, 1], ref)
    two = dci(merged, f, importance="gbt", seed=3)
    assert two["dci_disentanglement"] == pytest.approx(2 / 3 * (1 - np.log(2) / np.log(3)) + 1 / 3, abs=0.05)
    assert two["dci_completeness"] > 0.9 and two["dci_informativeness"] > 0.95
    with pytest.raises(ValueError, match="DCI importance"):
        dci(ident, f, importance="boost")


def test_dci_forest_gives_irrelevant_units_small_but_nonzero_importance(small_codes):
    f, ident, _merged = small_codes
    rng = np.random.default_rng(1)
    noisy = ident + np.concatenate([0.6 * rng.standard_normal((len(f), 3)), np.zeros((len(f), 2))], 1)
    imp = np.asarray(dci(noisy, f, n_estimators=20)["importance"])
    off = imp[~np.eye(5, 3, dtype=bool)]
    assert (imp.argmax(0) == np.arange(3)).all()
    assert 0.005 < off.mean() < 0.1  # not ~0: the forest's deep trees split on the noise too
