"""aekit.sklearn.AutoencoderTransformer: scikit-learn's own estimator checks, a Pipeline, and the
transform / inverse_transform / score_samples contract."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from aekit.sklearn import AutoencoderTransformer, expected_failed_checks

TINY = {"hidden": (8,), "epochs": 2, "batch_size": 32, "random_state": 0}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@parametrize_with_checks([AutoencoderTransformer(**TINY), AutoencoderTransformer("vae", **TINY)],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)  # each scikit-learn check raises (AssertionError, ValueError, ...) when the estimator fails it


def test_the_estimator_checks_can_fail():
    """The checks above pass by not raising; a transformer that skips input validation makes one raise."""
    from sklearn.utils.estimator_checks import check_estimators_nan_inf

    class NoValidation(AutoencoderTransformer):
        def transform(self, X):
            return np.zeros((len(X), self.latent_dim))

    check_estimators_nan_inf("AutoencoderTransformer", AutoencoderTransformer(**TINY))
    with pytest.raises(AssertionError, match="NaN and inf"):
        check_estimators_nan_inf("NoValidation", NoValidation(**TINY))


def test_pipeline_scaler_autoencoder_logistic_regression():
    x, y = load_digits(return_X_y=True)
    clf = make_pipeline(StandardScaler(), AutoencoderTransformer("ae", latent_dim=8, hidden=(64,), epochs=15,
                                                                 random_state=0),
                        LogisticRegression(max_iter=500))
    clf.fit(x[:1200], y[:1200])
    assert clf.score(x[1200:], y[1200:]) > 0.8
    assert list(clf[:-1].get_feature_names_out()) == [f"autoencodertransformer{i}" for i in range(8)]


def test_transform_inverse_score_and_pickle():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5))
    est = AutoencoderTransformer("vae", latent_dim=3, anomaly_score="elbo", **TINY).fit(x)
    z = est.transform(x)
    assert z.shape == (80, 3) and z.dtype == np.float64
    assert est.inverse_transform(z).shape == (80, 5)
    s = est.score_samples(x)
    assert s.shape == (80,) and np.isfinite(s).all()
    assert (est.score_samples(x * 20) < s).mean() > 0.9  # far-away rows look abnormal
    est2 = pickle.loads(pickle.dumps(est))
    assert np.array_equal(est2.transform(x), z)
    assert "model_" not in est.__getstate__() and isinstance(est.__getstate__()["_aekit_weights"], bytes)
    with pytest.raises(ValueError, match="latent-dim"):
        AutoencoderTransformer("pca", latent_dim=9).fit(x)
    with pytest.raises(ValueError, match="expects codes of 3"):
        est.inverse_transform(np.zeros((2, 4)))
