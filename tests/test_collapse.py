"""Posterior collapse caught (evaluation field, training warning) and avoided (free bits); the ELBO over draws."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import types

import pytest
import torch

import aekit
from aekit.data import Batch, DataConfig, DataShape, load_data
from aekit.errors import ConfigError
from aekit.models import VAE, DiagonalGaussian, VAEConfig
from aekit.models.batching import loss_draws
from aekit.models.collapse import HINT, KL_THRESHOLD_NATS, RULE, hint
from aekit.train.callbacks import CollapseWarning
from aekit.train.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEMA = {"collapsed": bool, "active_units": int, "latent_dim": int, "kl_nats": float, "kl_threshold_nats": float,
          "rule": str, "hint": str}


@pytest.fixture(scope="module")
def small_digits():
    return load_data(DataConfig("digits", subsample=300))


def tiny_vae(**kw) -> VAE:
    cfg = VAEConfig(hidden=(16,), latent_dim=3, **kw).resolve(DataShape((1, 8, 8), True))
    return VAE(cfg)


def head(model: VAE) -> torch.nn.Linear:
    return model.encoder[-1]  # the linear layer giving [μ, log σ²]


# ----------------------------------------------------------------------------------------------- free bits


def test_free_bits_kl_against_hand_computed_values():
    # unit KLs ½(μ² + σ² − 1 − log σ²): sample 1 (μ = 0, 1; σ² = 1) → 0, 0.5; sample 2 (μ = 0, 0; σ² = e) →
    # ½(e − 2) each; batch means per unit: ¼(e − 2), ¼(e − 2) + ¼
    q = DiagonalGaussian(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    a = (math.e - 2) / 4  # 0.1796
    cases = [("unit", 0.3, 0.3 + max(0.3, a + 0.25)), ("unit", 0.1, a + a + 0.25), ("unit", 1.0, 2.0),
             ("sample", 0.5, (max(0.5, 0.5) + max(0.5, math.e - 2)) / 2), ("sample", 1.0, 1.0)]
    for mode, lam, want in cases:
        model = VAE(VAEConfig(input_shape=(4,), hidden=(3,), latent_dim=2, likelihood="gaussian", free_bits=lam,
                              free_bits_mode=mode))
        assert model.free_bits_kl(q).item() == pytest.approx(want, abs=1e-6), (mode, lam)
    assert q.kl().mean().item() == pytest.approx(2 * a + 0.25, abs=1e-6)  # the true KL, for comparison


def test_free_bits_loss_keeps_the_true_kl_and_elbo():
    x = torch.rand(16, 1, 8, 8)
    plain = tiny_vae(beta=2.0)
    free = tiny_vae(beta=2.0, free_bits=0.5)
    free.load_state_dict(plain.state_dict())
    torch.manual_seed(3)
    a = plain.loss(Batch(x))
    torch.manual_seed(3)
    b = free.loss(Batch(x))
    for k in ("recon", "kl", "elbo"):  # reported terms: the true ones
        assert b.terms[k].item() == pytest.approx(a.terms[k].item(), rel=1e-6)
    q = free.encode(x)
    q = DiagonalGaussian(q.mean.detach(), q.logvar.detach())
    per_unit = torch.stack([0.5 * (q.mean[:, j] ** 2 + q.logvar[:, j].exp() - 1 - q.logvar[:, j]).mean()
                            for j in range(3)])
    want = sum(max(0.5, float(v)) for v in per_unit)
    assert b.terms["kl_free_bits"].item() == pytest.approx(want, rel=1e-5)
    assert b.total.item() == pytest.approx(b.terms["recon"].item() + 2.0 * want, rel=1e-5)
    assert set(b.terms) <= set(VAE.units)  # every term has its unit


def test_the_default_free_nats_leave_a_run_above_them_unchanged():
    """2 free nats per sample (the vae registry default): a batch whose every KL is above 2 nats trains on the
    plain β-VAE loss, same value and same gradients."""
    x = torch.rand(16, 1, 8, 8)
    plain = tiny_vae(beta=4.0)
    with torch.no_grad():  # posterior means of ~3 per unit: KL ≈ 3 · ½ · 9 per sample, far above 2
        head(plain).bias[:3] = 3.0
    free = tiny_vae(beta=4.0, free_bits=2.0, free_bits_mode="sample")
    free.load_state_dict(plain.state_dict())
    assert plain.encode(x).kl().min() > 2.0
    out = []
    for m in (plain, free):
        torch.manual_seed(5)
        loss = m.loss(Batch(x)).total
        loss.backward()
        out.append((loss.item(), head(m).weight.grad.clone()))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-6) and torch.allclose(out[0][1], out[1][1])


def test_free_bits_validation():
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="--free-bits"):
            VAEConfig(free_bits=bad)
    # the vae registry's default (2 free nats per sample) does not stop `--model vae --objective iwae`
    cfg = aekit.MODELS["vae"].make_config({"objective": "iwae"}, name="vae")
    assert cfg.free_bits == 2.0 and cfg.free_bits_mode == "sample"
    resolved = cfg.resolve(DataShape((1, 8, 8), True))
    assert resolved.free_bits == 0.0  # recorded as unused: config.json says what the run trained with
    torch.manual_seed(0)
    model = VAE(dataclasses.replace(resolved, free_bits=2.0))  # even set, the iwae loss ignores it
    plain = VAE(dataclasses.replace(model.config, free_bits=0.0))
    plain.load_state_dict(model.state_dict())
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(1)
    a = model.loss(Batch(x))
    torch.manual_seed(1)
    assert a.total.item() == pytest.approx(plain.loss(Batch(x)).total.item(), rel=1e-6)  # iwae: free bits unused


def test_free_bits_cli_error_is_one_line(capsys, tmp_path):
    from aekit.cli import main

    out = tmp_path / "run"
    code = main(["-q", "train", "--model", "vae", "--data", "digits", "--free-bits", "-1", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("aekit: error:") and "--free-bits" in err
    assert not out.exists()  # validated before anything is created


# ----------------------------------------------------------------------------------------------- evaluation


def check_schema(field: dict) -> None:
    assert set(field) == set(SCHEMA)
    for k, t in SCHEMA.items():
        assert type(field[k]) is t, (k, field[k])


def test_collapse_field_of_a_collapsed_model(small_digits, caplog):
    model = tiny_vae()
    with torch.no_grad():  # q(z|x) = N(0, I) = p(z) for every x: KL = 0, no unit varies
        head(model).weight.zero_()
        head(model).bias.zero_()
    with caplog.at_level(logging.WARNING):
        r = aekit.evaluate(model, small_digits)
    field = r["posterior_collapse"]
    check_schema(field)
    assert field["collapsed"] is True and field["active_units"] == 0 and field["latent_dim"] == 3
    assert field["kl_nats"] == pytest.approx(0.0, abs=1e-9) and r["kl"] == pytest.approx(0.0, abs=1e-9)
    assert field["kl_threshold_nats"] == KL_THRESHOLD_NATS and field["rule"] == RULE and field["hint"] == HINT
    assert "--free-bits" in HINT and "--beta" in HINT
    # a run that already had free bits is told to raise them or lower β, not to add them
    had = hint(dataclasses.replace(model.config, free_bits=2.0, free_bits_mode="sample", beta=4.0))
    assert "although this run had --free-bits 2 (per sample)" in had and "--beta (now 4)" in had
    assert [m for m in caplog.messages if "posterior collapse" in m]


def test_collapse_field_of_a_working_model(small_digits, caplog):
    model = tiny_vae()
    with torch.no_grad():  # posterior means spread over the data (std 1 here), variances e^-4
        torch.nn.init.normal_(head(model).weight, std=1.0)
        head(model).bias.zero_()
        head(model).bias[3:] = -4.0
    with caplog.at_level(logging.WARNING):
        r = aekit.evaluate(model, small_digits)
    field = r["posterior_collapse"]
    check_schema(field)
    assert field["collapsed"] is False and field["active_units"] >= 1
    assert field["kl_nats"] > KL_THRESHOLD_NATS
    assert field["kl_nats"] == pytest.approx(r["kl"], rel=1e-4)  # the closed-form KL, the same on every draw
    assert not [m for m in caplog.messages if "posterior collapse" in m]


def test_non_posterior_models_have_no_collapse_field_nor_draws(small_digits):
    cfg = aekit.MODELS["ae"].make_config({"hidden": "8", "latent_dim": 2}, name="ae").resolve(small_digits)
    r = aekit.evaluate(aekit.build_model("ae", cfg), small_digits)
    assert "posterior_collapse" not in r and "elbo_stderr" not in r and "elbo_draws" not in r


# ----------------------------------------------------------------------------------------------- ELBO over draws


def test_elbo_over_draws_has_a_calibrated_stderr_and_is_deterministic(small_digits):
    model = tiny_vae()
    with torch.no_grad():
        torch.nn.init.normal_(head(model).weight, std=1.0)
    a, b = aekit.evaluate(model, small_digits), aekit.evaluate(model, small_digits)
    assert a == b  # seeded draws
    assert a["elbo_draws"] >= 2 and a["elbo_stderr"] > 0
    assert a["elbo"] == pytest.approx(-(a["recon"] + a["kl"]), rel=1e-6)
    # the standard error of the S-draw mean: the seed-to-seed sd of one-draw estimates, over √S
    split = small_digits.split("test")
    one = torch.stack([loss_draws(model, split, 1, seed=s)["elbo"][0] for s in range(24)])
    predicted = a["elbo_stderr"] * math.sqrt(a["elbo_draws"])
    assert 0.4 < float(one.std()) / predicted < 2.5
    assert one.mean().item() == pytest.approx(a["elbo"], abs=4 * float(one.std()))


# ----------------------------------------------------------------------------------------------- training warning


def fake_trainer(epochs: int = 10, steps_per_epoch: int = 100, warmup: float = 0.0) -> types.SimpleNamespace:
    return types.SimpleNamespace(cfg=TrainConfig(epochs=epochs, beta_warmup_epochs=warmup), steps_per_epoch=steps_per_epoch,
                                 step=0, model=types.SimpleNamespace(config=VAEConfig()))


def feed(cb: CollapseWarning, trainer, kls: list[float], end: bool = True) -> None:
    for e, kl in enumerate(kls, 1):
        trainer.step = e * trainer.steps_per_epoch
        cb.on_epoch_end(trainer, {"epoch": float(e), "val_kl": kl})
    if end:
        cb.on_fit_end(trainer)


def collapse_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "posterior collapse" in r.getMessage()]


def test_collapse_warning_once_after_patience(caplog):
    cb = CollapseWarning(patience_steps=300)
    with caplog.at_level(logging.WARNING, logger="aekit.train"):
        feed(cb, fake_trainer(), [0.5, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01])
    msgs = collapse_warnings(caplog)
    assert len(msgs) == 1 and "epoch 5" in msgs[0] and "--free-bits" in msgs[0]  # low from step 200, 300 steps later


def test_collapse_warning_not_for_a_dip_that_recovers(caplog):
    cb = CollapseWarning(patience_steps=300)
    with caplog.at_level(logging.WARNING, logger="aekit.train"):
        feed(cb, fake_trainer(), [0.3, 0.02, 0.01, 0.05, 0.4, 1.2, 1.8])  # the β = 1 digits VAE's path
    assert collapse_warnings(caplog) == []


def test_collapse_warning_waits_for_the_kl_warmup(caplog):
    cb = CollapseWarning(patience_steps=300)
    with caplog.at_level(logging.WARNING, logger="aekit.train"):
        trainer = fake_trainer(warmup=5)
        feed(cb, trainer, [0.01] * 7, end=False)  # warm-up to step 500: low from there, 200 steps
    assert collapse_warnings(caplog) == []
    with caplog.at_level(logging.WARNING, logger="aekit.train"):
        cb.on_fit_end(trainer)  # the run ends collapsed: one warning
        cb.on_fit_end(trainer)
    assert len(collapse_warnings(caplog)) == 1 and "training ended" in collapse_warnings(caplog)[0]


def test_collapse_warning_state_survives_a_resume():
    cb = CollapseWarning(patience_steps=300)
    feed(cb, fake_trainer(), [0.01, 0.01], end=False)
    again = CollapseWarning(patience_steps=300)
    again.load_state_dict(json.loads(json.dumps(cb.state_dict())))
    assert again.low_since == cb.low_since == 100 and not again.warned


def test_default_callbacks_ask_the_capability():
    from aekit.train.trainer import default_callbacks

    vae = tiny_vae()
    cfg = aekit.MODELS["ae"].make_config({"hidden": "8", "latent_dim": 2}, name="ae").resolve(DataShape((1, 8, 8), True))
    ae = aekit.build_model("ae", cfg)
    assert any(isinstance(c, CollapseWarning) for c in default_callbacks(TrainConfig(), None, model=vae))
    assert not any(isinstance(c, CollapseWarning) for c in default_callbacks(TrainConfig(), None, model=ae))


def test_a_deliberately_collapsed_run_warns_and_says_so_in_evaluation_json(tmp_path, caplog):
    out = tmp_path / "beta50"
    with caplog.at_level(logging.WARNING):
        run = aekit.train("vae", DataConfig("digits", subsample=400), out, beta=50.0, free_bits=0.0, hidden="16",
                          latent_dim=3,
                          epochs=4, batch_size=32, progress=False, report=False)
    field = json.loads((out / "evaluation.json").read_text())["posterior_collapse"]
    check_schema(field)
    assert field["collapsed"] is True and field == run.evaluation["posterior_collapse"]
    train_warnings = [r for r in caplog.records if r.name == "aekit.train" and "posterior collapse" in r.getMessage()]
    assert len(train_warnings) == 1 and "training ended" in train_warnings[0].getMessage()


def test_elbo_draws_follow_the_sample_draw_target():
    from aekit.evaluate import elbo_draws

    assert elbo_draws(359, 64) == 10  # the digits' test split: the ELBO_DRAWS cap
    assert elbo_draws(5_000, 784) == 6  # ceil(30,000 / 5,000)
    assert elbo_draws(10_000, 784) == 3  # Fashion-MNIST's test split
    assert elbo_draws(1_000_000, 10) == 3  # never below MIN_DRAWS while the budget allows it
    assert elbo_draws(20_000, 64 * 64) == 3  # the memory / time budget: 2**28 // (20,000 · 4,096)
    assert elbo_draws(100_000, 64 * 64) == 2  # the budget allows 0, a standard error needs 2
