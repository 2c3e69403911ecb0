"""A scikit-learn transformer around any registered aekit model: ``fit`` / ``transform`` (codes) /
``inverse_transform`` (decoded rows) / ``score_samples`` (higher = more normal), usable in a ``Pipeline``.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from sklearn.linear_model import LogisticRegression
>>> from aekit.sklearn import AutoencoderTransformer
>>> clf = make_pipeline(StandardScaler(), AutoencoderTransformer("ae", latent_dim=8, epochs=20),
...                     LogisticRegression())                                                # doctest: +SKIP

Rows are modelled as tables (squared error / Gaussian likelihood; scale the features first, e.g. with
``StandardScaler``).  Training uses float32 (aekit's trainer); after fitting, the network is kept in float64 so
``transform`` is exactly row-wise (results do not depend on how rows are batched) and returns float64.
Networks with batch normalisation (the MLP ``ae`` default) need at least 2 rows, and ``batch_size`` is raised
by the smallest amount that keeps the last training batch from holding a single row.
Constructor arguments are plain hyperparameters, stored unchanged (scikit-learn's convention).  Pickling the
estimator stores the network as safetensors bytes plus its JSON config, never a pickled ``torch`` module.
"""

from __future__ import annotations

import json
from typing import Any, Literal, cast

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .config import field_types, from_dict, to_dict
from .data import Dataset, Split
from .errors import AekitError
from .models import build_model, get_spec

__all__ = ["AutoencoderTransformer"]


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Encode rows into an aekit model's latent space.

    Parameters
    ----------
    model : registry name (``ae``, ``linear-ae``, ``sparse-ae``, ``vae``, ``pca``, ...)
    latent_dim : number of output features (code size)
    hidden : MLP widths of the encoder (the decoder mirrors them); ignored by models without them
    epochs, lr, batch_size : training (Adam); ignored by closed-form models (``pca``)
    beta : KL weight of a VAE (ignored by other models)
    anomaly_score : ``score_samples``' anomaly score, ``recon`` or ``elbo`` (VAE); ``score_samples`` returns minus it
    device : torch device for training and inference
    random_state : int for reproducible fits (None: a fresh seed from NumPy's global RNG)
    verbose : show aekit's training progress bar
    """

    def __init__(self, model: str = "ae", latent_dim: int = 2, hidden: tuple[int, ...] = (64,), epochs: int = 20,
                 lr: float = 1e-3, batch_size: int = 64, beta: float = 1.0, anomaly_score: str = "recon",
                 device: str = "cpu", random_state: int | None = None, verbose: bool = False):
        self.model = model
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.beta = beta
        self.anomaly_score = anomaly_score
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ---- fitting

    def _model_options(self, n_features: int) -> dict[str, Any]:
        fields = field_types(get_spec(self.model).config_cls)
        hidden = (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else tuple(self.hidden)
        wanted = {"latent_dim": self.latent_dim, "hidden": tuple(int(h) for h in hidden), "beta": self.beta}
        return {k: v for k, v in wanted.items() if k in fields}

    def fit(self, X: Any, y: Any = None) -> AutoencoderTransformer:
        """Train the model on the rows of ``X`` (``y`` is ignored)."""
        from .train import TrainConfig, fit

        X = validate_data(self, X, dtype=[np.float64, np.float32])
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        xt = torch.tensor(X, dtype=torch.float32)
        data = Dataset("sklearn", "table", Split(xt, None), Split(xt[:0], None), Split(xt[:0], None),
                       mean=torch.zeros(X.shape[1]), std=torch.ones(X.shape[1]))
        try:
            spec = get_spec(self.model)
            cfg = spec.make_config(self._model_options(X.shape[1]), name=self.model).resolve(data)
            with torch.random.fork_rng(devices=[]):  # the caller's global torch RNG is left as it was
                torch.manual_seed(seed)
                net = build_model(self.model, cfg)
                batch_size = _batch_size(net, len(X), int(self.batch_size))
                device = cast(Literal["auto", "cpu", "cuda", "mps"], self.device)  # the estimator passes it on as given
                tcfg = TrainConfig(epochs=int(self.epochs), batch_size=batch_size, lr=float(self.lr), seed=seed,
                                   device=device, progress=bool(self.verbose), log_every=1000)
                fit(net, data, tcfg)
        except AekitError as e:  # scikit-learn reports bad hyperparameters as ValueError
            raise ValueError(str(e)) from None
        self.model_ = net.to(torch.float64).eval()
        self.model_name_ = self.model
        self.n_components_ = int(self.model_.latent_dim)
        return self

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    # ---- using it

    def _rows(self, X: Any) -> torch.Tensor:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return torch.tensor(X, dtype=torch.float64, device=self.model_.device)

    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:
        """Codes (``embed``: a VAE's posterior means), shape (n_samples, latent_dim), float64."""
        return self.model_.embed(self._rows(X)).cpu().numpy()

    @torch.no_grad()
    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decoded rows of codes ``X`` (n_samples, latent_dim) → (n_samples, n_features_in_), float64."""
        check_is_fitted(self, "model_")
        Z = check_array(X, dtype=np.float64)
        if Z.shape[1] != self.n_components_:
            raise ValueError(f"X has {Z.shape[1]} features, but inverse_transform expects codes of "
                             f"{self.n_components_} (latent_dim)")
        z = torch.tensor(Z, dtype=torch.float64, device=self.model_.device)
        return self.model_.decode(z).reshape(len(Z), -1).cpu().numpy()

    def score_samples(self, X: Any) -> np.ndarray:
        """Minus the anomaly score of each row (``anomaly_score``: reconstruction SSE or −ELBO): higher = more normal."""
        from .evaluate.anomaly import anomaly_scores

        try:
            return -anomaly_scores(self.model_, self._rows(X), self.anomaly_score)
        except AekitError as e:
            raise ValueError(str(e)) from None

    # ---- scikit-learn plumbing

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    def __getstate__(self) -> dict[str, Any]:
        """Pickle-safe state: the network as safetensors bytes plus its JSON config."""
        state = dict(self.__dict__)
        net = state.pop("model_", None)
        if net is not None:
            from safetensors.torch import save

            state["_aekit_weights"] = save({k: v.contiguous().cpu() for k, v in net.state_dict().items()})
            state["_aekit_config"] = json.dumps(to_dict(net.config))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights, config = state.pop("_aekit_weights", None), state.pop("_aekit_config", None)
        self.__dict__.update(state)
        if weights is not None:
            from safetensors.torch import load

            spec = get_spec(self.model_name_)
            net = build_model(self.model_name_, from_dict(spec.config_cls, json.loads(config)))
            net.load_state_dict(load(weights))
            self.model_ = net.to(torch.float64).eval()


def _batch_size(net: torch.nn.Module, n: int, batch_size: int) -> int:
    """``batch_size``, raised where needed so that no batch of a batch-normalised network has one sample."""
    if not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)) for m in net.modules()):
        return batch_size
    if n < 2:
        raise AekitError(f"the {type(net).__name__} has batch normalisation, which needs at least 2 samples; got "
                         f"n_samples = {n}: fit on more rows")
    batch_size = max(2, batch_size)
    while n % batch_size == 1:  # the last batch would hold one sample
        batch_size += 1
    return batch_size


def expected_failed_checks(estimator: AutoencoderTransformer) -> dict[str, str]:
    """scikit-learn estimator checks that cannot apply, with the reason (``parametrize_with_checks``'s
    ``expected_failed_checks``).  None at present: with ``random_state`` set, every applicable check passes
    (the network runs in float64 after fitting, so results do not depend on how rows are batched)."""
    return {}
