"""Typed configs: unknown keys and wrong types are rejected with a message that says how to fix them."""

import dataclasses

import pytest

from aekit.config import from_dict, to_dict
from aekit.errors import ConfigError
from aekit.models import MODELS, AEConfig, VAEConfig
from aekit.train import TrainConfig, split_options


def test_from_dict_parses_cli_strings():
    cfg = from_dict(AEConfig, {"hidden": "1000,500,250", "latent_dim": "30", "tied": "true"})
    assert cfg.hidden == (1000, 500, 250) and cfg.latent_dim == 30 and cfg.tied is True


def test_unknown_key_suggests_fix():
    with pytest.raises(ConfigError, match="did you mean 'latent_dim'"):
        from_dict(AEConfig, {"latent_dims": 3})


def test_wrong_type_and_bad_choice():
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(AEConfig, {"latent_dim": "abc"})
    with pytest.raises(ConfigError, match="did you mean 'bernoulli'"):
        from_dict(VAEConfig, {"likelihood": "bernouli"})
    with pytest.raises(ConfigError, match="must be"):
        from_dict(TrainConfig, {"lr": -1})


def test_configs_are_frozen_and_round_trip():
    cfg = VAEConfig(beta=4.0, hidden=(8,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.beta = 1.0  # type: ignore[misc]
    assert from_dict(VAEConfig, to_dict(cfg)) == cfg


def test_beta_vae_is_a_config_field():
    assert MODELS["vae"].make_config({"beta": 4}).beta == 4.0


def test_split_options_routes_and_rejects():
    m, t, d = split_options("vae", {"beta": 2, "epochs": 3, "image_size": 16})
    assert m == {"beta": 2} and t == {"epochs": 3} and d == {"image_size": 16}
    with pytest.raises(ConfigError, match="unknown option --tied for --model vae"):
        split_options("vae", {"tied": True})
    with pytest.raises(ConfigError, match="unknown model"):
        split_options("vea", {})
