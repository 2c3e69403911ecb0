"""The seed family: sparse penalties, greedy stacked pretraining, denoising corruption and their experiments."""

import csv
import importlib
import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file

import aekit
from aekit.data import Batch, DataShape, to_float
from aekit.data.corrupt import corrupt, corruption_transform, parse_corruption
from aekit.errors import ConfigError
from aekit.evaluate import evaluate, reconstruction_errors
from aekit.evaluate.deterministic import activation_stats, corrupted_errors
from aekit.experiments import ExperimentContext, run_experiment
from aekit.models import AE, MODELS, AEConfig, StackedAE, StackedAEConfig, build_model
from aekit.train import TrainConfig, fit, run_stages

QUIET = {"progress": False, "report": False}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


# ----------------------------------------------------------------------------------------------- sparsity


def _one_layer(**kw):
    cfg = AEConfig(input_shape=(2,), hidden=(), latent_dim=2, recon_loss="mse", **kw)
    model = AE(cfg)
    return model


def test_l1_penalty_matches_hand_computed_value():
    model = _one_layer(sparsity="l1", sparsity_weight=0.1, code_activation="linear")
    with torch.no_grad():
        model.encoder[0].weight.copy_(torch.eye(2))
        model.encoder[0].bias.zero_()
    x = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    terms = model.loss(Batch(x)).terms
    # λ·Σᵢ|aᵢ| per sample, averaged: 0.1 · (3 + 3.5) / 2
    assert terms["sparsity"].item() == pytest.approx(0.325, rel=1e-6)
    assert terms["mean_abs_activation"].item() == pytest.approx(6.5 / 4, rel=1e-6)
    assert terms["fraction_inactive"].item() == 0.0


def test_kl_penalty_matches_hand_computed_value():
    model = _one_layer(sparsity="kl", sparsity_weight=3.0, rho=0.05, code_activation="sigmoid")
    with torch.no_grad():  # constant codes: ρ̂ = (0.1, 0.5) for every sample
        model.encoder[0].weight.zero_()
        model.encoder[0].bias.copy_(torch.tensor([math.log(0.1 / 0.9), 0.0]))
    x = torch.rand(5, 2)

    def kl(rho, r):
        return rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r))

    expected = 3.0 * (kl(0.05, 0.1) + kl(0.05, 0.5))
    assert model.loss(Batch(x)).terms["sparsity"].item() == pytest.approx(expected, rel=1e-5)


def test_sparse_ae_kl_picks_a_sigmoid_code_by_itself():
    cfg = MODELS["sparse-ae"].make_config({"sparsity": "kl"}).resolve(DataShape((1, 8, 8), True))
    assert cfg.code_activation == "sigmoid" and cfg.hidden == ()
    assert MODELS["sparse-ae"].make_config({}).resolve(DataShape((1, 8, 8), True)).code_activation == "relu"
    with pytest.raises(ConfigError, match="code-activation sigmoid"):
        AEConfig(sparsity="kl", code_activation="relu")


def test_activation_stats_by_hand():
    codes = torch.tensor([[0.0, 0.5], [0.005, 2.0], [0.0, -0.2]])
    s = activation_stats(codes)
    assert s["mean_abs_activation"] == pytest.approx(2.705 / 6)
    assert s["fraction_inactive"] == pytest.approx(0.5)
    assert s["dead_units"] == 1


def test_evaluate_reports_code_activity(tmp_path):
    run = aekit.train("sparse-ae", "digits", tmp_path / "s", epochs=1, latent_dim=16, sparsity_weight=0.1, **QUIET)
    ev = run.evaluation
    assert {"mean_abs_activation", "fraction_inactive", "dead_units", "sse_per_image"} <= set(ev)
    assert 0 <= ev["fraction_inactive"] <= 1 and 0 <= ev["dead_units"] <= 16
    header = (tmp_path / "s" / "metrics.csv").read_text().splitlines()[0]
    assert "val_fraction_inactive" in header and "train_mean_abs_activation" in header


# ----------------------------------------------------------------------------------------------- stacked


def _stacked(**kw):
    cfg = StackedAEConfig(hidden=(16, 8), latent_dim=3, **kw).resolve(DataShape((1, 8, 8), True))
    torch.manual_seed(0)
    return StackedAE(cfg)


def test_greedy_stages_share_the_stacked_parameters():
    model = _stacked()
    stages = model.greedy_stages()
    layers = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert [(s.input_dim, s.latent_dim) for s in stages] == [(64, 16), (16, 8), (8, 3)]
    assert [s.name for s in stages] == ["pretrain-1", "pretrain-2", "pretrain-3"]
    for k, s in enumerate(stages):
        assert s.layer is layers[k]  # the stage's encoder *is* the stacked encoder's layer k
        assert s.bias is model.decoder.biases[2 - k]  # and its decoder bias the mirrored decoder bias
    x = torch.rand(4, 1, 8, 8)
    # the stacked model is the composition of the stage AEs: encoders in order, decoders in reverse order
    h = x
    for s in stages:
        h = s.encode(h)
    assert torch.allclose(model.encode(x), h, atol=1e-6)
    out = h
    for s in reversed(stages):
        out = s.decode(out)
    assert torch.allclose(model.decode(h).flatten(1), out, atol=1e-6)


def test_tied_weights_are_one_parameter():
    model = _stacked()
    n = sum(p.numel() for p in model.parameters())
    assert n == (64 * 16 + 16) + (16 * 8 + 8) + (8 * 3 + 3) + (8 + 16 + 64)  # encoder + decoder biases only
    z = torch.randn(2, 3)
    before = model.decode(z).clone()
    with torch.no_grad():
        model.encoder[0].weight.mul_(2.0)
    assert not torch.allclose(before, model.decode(z))


def test_pretraining_trains_every_layer_in_place_and_logs_stages(tmp_path, digits):
    model = _stacked(pretrain_epochs=2)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=64, progress=False)
    rows = run_stages(model, digits, cfg, tmp_path)
    assert [r["stage"] for r in rows] == ["pretrain-1"] * 2 + ["pretrain-2"] * 2 + ["pretrain-3"] * 2
    assert all(r["val_recon"] > 0 for r in rows)
    after = model.state_dict()
    for k in init:  # every encoder layer and every decoder bias moved
        assert not torch.equal(init[k], after[k]), k
    saved = load_file(str(tmp_path / "pretrained.safetensors"))
    assert all(torch.equal(saved[k], after[k]) for k in after)
    with (tmp_path / "metrics.csv").open() as f:
        assert [r["stage"] for r in csv.DictReader(f)] == [r["stage"] for r in rows]


def test_stacked_run_stages_in_metrics_and_pretrained_only_model(tmp_path):
    opts = dict(hidden="16,8", latent_dim=3, pretrain_epochs=1, batch_size=64, **QUIET)
    run = aekit.train("stacked-ae", "digits", tmp_path / "r", finetune_epochs=2, **opts)
    stages = [r["stage"] for r in run.metrics]
    assert stages == ["pretrain-1", "pretrain-2", "pretrain-3", "finetune", "finetune"]
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["model_config"]["pretrain_epochs"] == 1
    assert aekit.load_run(tmp_path / "r").metrics[-1]["stage"] == "finetune"
    # --finetune-epochs 0: the run's model is exactly the pretrained one, evaluated like any run
    pre = aekit.train("stacked-ae", "digits", tmp_path / "p", finetune_epochs=0, **opts)
    a, b = load_file(str(tmp_path / "p" / "model.safetensors")), load_file(str(tmp_path / "p" / "pretrained.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert pre.evaluation["sse_per_image"] > 0
    with pytest.raises(ConfigError, match="give only one"):
        aekit.train("stacked-ae", "digits", tmp_path / "x", finetune_epochs=2, epochs=3, **opts)


class Kill(Exception):
    pass


@pytest.mark.parametrize("kill_at", [(0, 3), (1, 5)])  # before the first fine-tuning checkpoint / after it
def test_stacked_resume_matches_uninterrupted(tmp_path, kill_at):
    opts = dict(hidden="16,8", latent_dim=3, pretrain_epochs=2, finetune_epochs=3, batch_size=64, **QUIET)
    aekit.train("stacked-ae", "digits", tmp_path / "full", **opts)
    run_mod = importlib.import_module("aekit.train.run")
    real_fit = run_mod.fit

    def killing_fit(*a, **kw):
        def hook(epoch, step):
            if (epoch, step) == kill_at:
                raise Kill
        return real_fit(*a, on_step=hook, **kw)

    run_mod.fit = killing_fit
    try:
        with pytest.raises(Kill):
            aekit.train("stacked-ae", "digits", tmp_path / "killed", **opts)
    finally:
        run_mod.fit = real_fit
    assert (tmp_path / "killed" / "pretrained.safetensors").exists()
    aekit.train(resume=tmp_path / "killed", report=False, progress=False)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    stages = [r["stage"] for r in aekit.load_run(tmp_path / "killed").metrics]
    assert stages == [r["stage"] for r in aekit.load_run(tmp_path / "full").metrics]


# ----------------------------------------------------------------------------------------------- corruption


def test_parse_corruption():
    assert parse_corruption("none") is None and parse_corruption("") is None
    c = parse_corruption("mask:0.25")
    assert (c.kind, c.level, str(c)) == ("mask", 0.25, "mask:0.25")
    assert parse_corruption("Salt-Pepper:0.1").kind == "salt-pepper"
    for bad, msg in [("blur:0.1", "mask:P"), ("mask", "mask:P"), ("mask:x", "not a number"),
                     ("mask:1.5", "in \\(0, 1\\)"), ("gaussian:0", "> 0")]:
        with pytest.raises(ConfigError, match=msg):
            parse_corruption(bad)
    with pytest.raises(ConfigError, match="--corruption"):
        AEConfig(corruption="blur:0.1")


def test_corruption_rates_and_values():
    g = torch.Generator().manual_seed(0)
    x = torch.full((400, 250), 0.5)
    masked = corrupt(x, "mask", 0.25, generator=g)
    assert (masked == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert set(masked.unique().tolist()) == {0.0, 0.5}
    sp = corrupt(x, "salt-pepper", 0.1, generator=g)
    assert (sp == 0).float().mean().item() == pytest.approx(0.05, abs=0.005)
    assert (sp == 1).float().mean().item() == pytest.approx(0.05, abs=0.005)
    assert (sp == 0.5).float().mean().item() == pytest.approx(0.9, abs=0.01)
    noisy = corrupt(x, "gaussian", 0.1, generator=g)
    assert (noisy - x).std().item() == pytest.approx(0.1, rel=0.02) and abs((noisy - x).mean().item()) < 0.002
    assert x.eq(0.5).all()  # the input is never modified
    # tables: salt and pepper take each feature's own min / max
    t = torch.zeros(1000, 3)
    sp = corrupt(t, "salt-pepper", 0.5, generator=g, low=torch.tensor([-1.0, -2.0, -3.0]), high=torch.tensor([1.0, 2.0, 3.0]))
    assert set(sp[:, 2].unique().tolist()) == {-3.0, 0.0, 3.0}


def test_corruption_is_deterministic_given_the_seed():
    x = torch.rand(8, 1, 8, 8)
    a = corrupt(x, "mask", 0.5, generator=torch.Generator().manual_seed(1))
    b = corrupt(x, "mask", 0.5, generator=torch.Generator().manual_seed(1))
    c = corrupt(x, "mask", 0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the trainer's transform draws from a generator seeded from (seed, step): nothing to checkpoint
    t = corruption_transform("gaussian:0.2", aekit.load_data("digits"))
    first = t(Batch(x), torch.Generator().manual_seed(3))
    again = t(Batch(x), torch.Generator().manual_seed(3))
    assert torch.equal(first.x, again.x) and torch.equal(first.target, x) and not torch.equal(first.x, x)
    assert corruption_transform("none", aekit.load_data("digits")) is None


def test_denoising_trains_on_corrupted_inputs_and_evaluates_clean(tmp_path, digits):
    seen = []

    class Spy(AE):
        def loss(self, batch):
            seen.append((batch.x.detach().clone(), None if batch.target is None else batch.target.detach().clone()))
            return super().loss(batch)

    cfg = MODELS["denoising-ae"].make_config({"hidden": (16,), "latent_dim": 3}).resolve(DataShape(digits.shape, True))
    model = Spy(cfg)
    fit(model, digits, TrainConfig(epochs=1, batch_size=256, progress=False))  # the model's own transforms
    x, target = seen[0]
    on = target != 0
    assert (x[on] == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)  # mask:0.25 of the input
    assert torch.equal(x[x != 0], target[x != 0])  # the rest untouched; the loss targets the clean batch
    ev = evaluate(model, digits, "test")
    assert ev["sse_per_image"] == pytest.approx(reconstruction_errors(model, digits.test.x).mean().item())
    # (a denoising AE can do better on corrupted inputs than on clean ones: it was trained on the former)
    assert ev["corruption"] == "mask:0.25" and ev["sse_per_image_corrupted"] != ev["sse_per_image"]
    again = corrupted_errors(model, digits.test.x, "mask:0.25").mean().item()
    assert again == pytest.approx(ev["sse_per_image_corrupted"])  # fixed noise seed


def test_denoising_run_saves_its_corruption(tmp_path):
    run = aekit.train("ae", "digits", tmp_path / "d", epochs=1, hidden="16", latent_dim=3, corruption="salt-pepper:0.1",
                      **QUIET)
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    assert cfg["model_config"]["corruption"] == "salt-pepper:0.1"
    assert "sse_per_image_corrupted" in run.evaluation
    loaded = aekit.load(tmp_path / "d")
    assert loaded.config.corruption == "salt-pepper:0.1"
    x = to_float(aekit.load_data("digits").test.x[:4])
    with torch.no_grad():
        assert torch.equal(loaded(x), run.model(x))  # corruption never touches inference


# ----------------------------------------------------------------------------------------------- experiments


def stated(summary, claim):
    """Whether ``summary`` has a sentence stating ``claim`` (one that begins with it)."""
    claim = claim[:1].upper() + claim[1:]
    return re.search(r"(^|  |\n)" + re.escape(claim), summary) is not None


def consistent(summary, claim, holds):
    """A quick run's summary states ``claim`` exactly when its numbers meet the threshold, and otherwise says
    that the run is too short to tell."""
    assert stated(summary, claim) == holds, (claim, holds, summary)
    if not holds:
        assert "too short to tell whether " + claim in summary, summary


def _experiment(name, tmp_path, **options):
    ctx = ExperimentContext(data="digits", out=tmp_path / name, quick=True, progress=False,
                            options={k: str(v) for k, v in options.items()})
    result = run_experiment(name, ctx)
    files = {p.name for p in (tmp_path / name).iterdir()}
    assert {"results.csv", "results.md", "summary.md"} <= files
    assert set(result.figures) <= files and result.figures
    return result


def test_experiment_pca_vs_ae(tmp_path):
    r = _experiment("pca-vs-ae", tmp_path)
    pca, lin, deep = r.rows
    assert pca["code_size"] == 8 and pca["test_sse_per_image"] > 0
    assert lin["ratio_to_pca"] == pytest.approx(1.0, abs=0.05)  # the linear AE learns PCA's error
    assert 0 <= lin["max_principal_angle_deg"] <= 90 and math.isfinite(deep["test_sse_per_image"])
    assert "reconstructions.png" in r.figures and "principal angle" in r.summary
    consistent(r.summary, "the linear AE's decoder spans PCA's subspace", lin["max_principal_angle_deg"] < 5)
    consistent(r.summary, "the linear AE reaches PCA's error", abs(lin["ratio_to_pca"] - 1) <= 0.03)


def test_experiment_code_size(tmp_path):
    r = _experiment("code-size", tmp_path, sizes="2,8,64")
    assert [row["code_size"] for row in r.rows] == [2, 8, 64]
    pca = [row["pca_test_sse_per_image"] for row in r.rows]
    assert pca[0] > pca[1] > pca[2] and pca[2] < 1e-6  # PCA with every component is exact
    assert all(row["ae_test_sse_per_image"] > 0 for row in r.rows)
    assert stated(r.summary, "PCA is exact at code size = input size (64)")
    ae = [row["ae_test_sse_per_image"] for row in r.rows]
    consistent(r.summary, "the AE approaches the identity at code size 64", ae[-1] < 0.05 * ae[0])
    below = [row["code_size"] for row in r.rows if row["ae_test_sse_per_image"] < row["pca_test_sse_per_image"]]
    assert f"below PCA's at code sizes {', '.join(map(str, below)) or 'none'} of 2, 8, 64" in r.summary


def test_experiment_sparsity(tmp_path):
    r = _experiment("sparsity", tmp_path)
    l1 = [row for row in r.rows if row["penalty"] == "l1"]
    inactive = [row["fraction_inactive"] for row in l1]
    assert inactive == sorted(inactive) and inactive[-1] > inactive[0]
    assert l1[-1]["test_sse_per_image"] > l1[0]["test_sse_per_image"]
    assert any(f.startswith("filters_") for f in r.figures)
    # both rise in these numbers (asserted above): the summary must say so
    assert stated(r.summary, "the share of inactive activations rises with the L1 weight")
    assert stated(r.summary, "the test error rises with the L1 weight") == (
        [row["test_sse_per_image"] for row in l1] == sorted(row["test_sse_per_image"] for row in l1))


def test_experiment_stacked(tmp_path):
    r = _experiment("stacked", tmp_path)
    assert [row["model"] for row in r.rows] == ["greedy pretraining only", "greedy pretraining + fine-tuning",
                                                "from scratch"]
    assert all(math.isfinite(row["test_sse_per_image"]) and row["test_sse_per_image"] > 0 for row in r.rows)
    assert len(r.extra["stages"]) == 4  # three hidden layers and the code
    g, s = r.rows[1]["test_sse_per_image"], r.rows[2]["test_sse_per_image"]
    consistent(r.summary, "greedy pretraining + fine-tuning beats training from scratch", (s - g) / s > 0.05)


def test_experiment_denoising(tmp_path):
    r = _experiment("denoising", tmp_path, corruptions="mask:0.5,gaussian:0.3")
    assert [row["corruption"] for row in r.rows] == ["mask:0.5", "gaussian:0.3"]
    for row in r.rows:
        assert row["ae_sse_corrupted"] > 0 and row["dae_sse_corrupted"] > 0
        c = row["corruption"]
        consistent(r.summary, f"training on {c} lowers the error on {c} inputs", row["improvement_pct"] >= 5)


def test_experiment_options_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="unknown option 'lattent_dim'"):
        _experiment("pca-vs-ae", tmp_path, lattent_dim=3)


def test_every_seed_model_is_registered():
    assert {"sparse-ae", "denoising-ae", "stacked-ae"} <= set(MODELS)
    assert isinstance(build_model("stacked-ae", MODELS["stacked-ae"].make_config({}).resolve(DataShape((4,), False))), AE)


def test_small_data_gets_enough_steps_unless_epochs_are_explicit(tmp_path):
    from aekit.experiments import enough_steps
    from aekit.experiments.seed_family import PcaVsAeConfig, StackedConfig

    ctx = ExperimentContext(data="digits", out=tmp_path)
    cfg = enough_steps(PcaVsAeConfig(min_steps=1000), ctx, 1280)  # 10 steps per epoch at batch 128
    assert (cfg.epochs, cfg.linear_epochs, cfg.lr_warmup_epochs) == (100, 100, 1.0)  # warm-up is not scaled
    assert enough_steps(PcaVsAeConfig(min_steps=1000), ctx, 60000) == PcaVsAeConfig(min_steps=1000)  # big data
    explicit = ExperimentContext(data="digits", out=tmp_path, options={"epochs": 7})
    assert enough_steps(PcaVsAeConfig(epochs=7, min_steps=1000), explicit, 1280).epochs == 7
    assert enough_steps(PcaVsAeConfig(min_steps=1000), ExperimentContext("digits", tmp_path, epochs=3), 1280).epochs == 50
    st = enough_steps(StackedConfig(pretrain_epochs=5, finetune_epochs=20, min_steps=1000), ctx, 1280)
    assert (st.pretrain_epochs, st.finetune_epochs) == (25, 100)  # one factor: the ratio is kept


def test_evaluate_any_ae_on_corrupted_inputs(tmp_path, capsys):
    from aekit.cli import main

    run = aekit.train("ae", "digits", tmp_path / "plain", epochs=1, hidden="16", latent_dim=3, **QUIET)
    assert "sse_per_image_corrupted" not in run.evaluation  # a plain AE: clean inputs only by default
    assert main(["evaluate", str(tmp_path / "plain"), "--json", "--corruption", "gaussian:0.2"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["corruption"] == "gaussian:0.2"
    test_x = aekit.data.load_data(aekit.data.DataConfig("digits")).test.x
    expected = corrupted_errors(run.model, test_x, "gaussian:0.2")
    assert ev["sse_per_image_corrupted"] == pytest.approx(expected.mean().item())
    assert main(["evaluate", str(tmp_path / "plain"), "--corruption", "blur:3"]) == 2
    assert "is not a corruption" in capsys.readouterr().err
