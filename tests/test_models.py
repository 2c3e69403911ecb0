"""Every registered model: forward / backward on tiny configs, save → load equality, model-specific facts."""

import pytest
import torch

import aekit
from aekit.data import Batch, DataShape, to_float
from aekit.models import AE, MODELS, PCA, VAE, AEConfig, PCAConfig, VAEConfig, build_model

TINY = {"hidden": (16,), "latent_dim": 3, "channels": (4, 8)}


def tiny_model(name, shape=(1, 8, 8), unit=True, **extra):
    spec = MODELS[name]
    fields = spec.config_cls.__dataclass_fields__
    if extra.get("arch") == "conv" and spec.defaults.get("tied"):  # a tied-weights preset is MLP-only
        extra = {**extra, "tied": False}
    values = {k: v for k, v in {**TINY, **extra}.items() if k in fields}
    classes = 3 if spec.model_cls.conditional else None  # a conditional model is built for a label set
    cfg = spec.make_config(values).resolve(DataShape(shape, unit, num_classes=classes, num_train=100))
    return build_model(name, cfg)


def labels_for(model, n):
    """Class ids for a conditional model's batch (None for any other model): the verbs' ``labels=``."""
    return torch.arange(n) % 3 if model.conditional else None


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_forward_backward_every_model(name, arch):
    if arch == "conv" and "arch" not in MODELS[name].config_cls.__dataclass_fields__:
        pytest.skip(f"{name} has no conv variant")
    model = tiny_model(name, (3, 12, 10), arch=arch)
    x = torch.rand(5, 3, 12, 10)
    if model.closed_form:
        model.fit(torch.rand(30, 3, 12, 10))
    if model.supervised:  # segmentation: targets are masks, outputs are per-pixel class probabilities
        losses = model.loss(Batch(x, labels=torch.randint(0, model.num_classes, (5, 12, 10))))
        assert model(x).shape == (5, model.num_classes, 12, 10)
        assert model.embed(x).shape == (5, model.latent_dim)
    else:
        y = labels_for(model, 5)
        kw = model.label_kwargs(y)
        losses = model.loss(Batch(x, labels=y))
        assert "recon" in losses.terms
        assert model(x, **kw).shape == x.shape
        assert model.embed(x, **kw).shape == (5, model.latent_dim if model.discrete else 3)  # a VQ-VAE: D·h·w
        assert model.decode(model.embed(x, **kw), **kw).shape == x.shape
    assert losses.total.shape == () and torch.isfinite(losses.total)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if trainable:
        losses.total.backward()
        for p in trainable:
            assert p.grad is not None and torch.isfinite(p.grad).all()
        assert any(p.grad.abs().sum() > 0 for p in trainable)


@pytest.mark.parametrize("name", list(MODELS))
def test_table_data(name):
    if MODELS[name].model_cls.supervised:
        pytest.skip(f"{name} segments images: no table variant")
    if MODELS[name].model_cls.discrete:
        pytest.skip(f"{name} quantises a conv grid of image features: no table variant")
    model = tiny_model(name, (7,), unit=False)
    x = torch.randn(6, 7)
    if model.closed_form:
        model.fit(torch.randn(20, 7))
    y = labels_for(model, 6)
    assert model(x, **model.label_kwargs(y)).shape == (6, 7)
    assert torch.isfinite(model.loss(Batch(x, labels=y)).total)


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_identical_outputs(name, digits, tmp_path):
    # the registry's tiny options (a VQ-VAE's one-epoch prior, a FactorVAE's small discriminator) keep it seconds
    fields = MODELS[name].config_cls.__dataclass_fields__
    opts = {k: v for k, v in {**TINY, **MODELS[name].tiny}.items() if k in fields}
    if MODELS[name].model_cls.supervised:  # needs masks: tiny generated cells (1 channel, like the digits)
        opts.update(base_channels=4, depth=2, cells_count=12, image_size=16)
    data = "cells" if MODELS[name].model_cls.supervised else "digits"
    run = aekit.train(name, data, tmp_path / name, epochs=1, report=False, progress=False, **opts)
    loaded = aekit.load(tmp_path / name)
    x = to_float(digits.test.x[:16])
    kw = run.model.label_kwargs(torch.as_tensor(digits.test.y[:16]))  # a conditional model: the rows' classes
    run.model.eval()
    with torch.no_grad():
        assert torch.equal(run.model(x, **kw), loaded(x, **kw))
        assert torch.equal(run.model.embed(x, **kw), loaded.embed(x, **kw))
    assert type(loaded) is type(run.model) and loaded.config == run.model.config


def test_tied_weights_are_one_parameter():
    tied = tiny_model("ae", (1, 8, 8), tied=True, hidden=(16, 8), norm="none", activation="relu")
    untied = tiny_model("ae", (1, 8, 8), tied=False, hidden=(16, 8), norm="none", activation="relu")
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    weights = 64 * 16 + 16 * 8 + 8 * 3
    assert n_untied - n_tied == weights  # the decoder has no weight matrices of its own
    z = torch.randn(2, 3)
    before = tied.decode(z).clone()
    with torch.no_grad():
        tied.encoder[0].weight.add_(0.5)
    assert not torch.allclose(before, tied.decode(z))
    # decoding by hand with the encoder's weights transposed reproduces the decoder exactly
    l0, l1, l2 = [m for m in tied.encoder if isinstance(m, torch.nn.Linear)]
    b = tied.decoder.biases
    h = torch.relu(z @ l2.weight + b[0])
    h = torch.relu(h @ l1.weight + b[1])
    assert torch.allclose(tied.decode_logits(z).flatten(1), h @ l0.weight + b[2], atol=1e-6)


def test_linear_ae_has_no_nonlinearity():
    model = tiny_model("linear-ae", (1, 8, 8))
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    # linear (affine) map: f(a) + f(b) − f(0) = f(a + b)
    f0 = model(torch.zeros(1, 1, 8, 8))
    assert torch.allclose(model(a) + model(b) - f0, model(a + b), atol=1e-5)


def test_pca_matches_scikit_learn(digits):
    from sklearn.decomposition import PCA as SkPCA

    x = to_float(digits.train.x).flatten(1)
    model = PCA(PCAConfig(input_shape=(1, 8, 8), latent_dim=10))
    model.fit(x)
    sk = SkPCA(10, svd_solver="full").fit(x.numpy())
    xt = to_float(digits.test.x).flatten(1)
    ours = model(xt).flatten(1).numpy()
    theirs = sk.inverse_transform(sk.transform(xt.numpy()))
    assert abs(ours - theirs).max() < 1e-4
    assert torch.allclose(model.explained_variance, torch.tensor(sk.explained_variance_, dtype=torch.float32), rtol=1e-3)


def test_pca_full_rank_is_identity():
    x = torch.rand(100, 6)
    model = PCA(PCAConfig(input_shape=(6,), latent_dim=6))
    model.fit(x)
    assert torch.allclose(model(x), x, atol=1e-5)


def test_vae_loss_is_recon_plus_beta_kl():
    torch.manual_seed(0)
    model = VAE(VAEConfig(input_shape=(1, 8, 8), hidden=(16,), latent_dim=3, beta=4.0, likelihood="bernoulli"))
    x = torch.rand(8, 1, 8, 8)
    torch.manual_seed(3)
    losses = model.loss(Batch(x))  # one draw z ~ q(z|x) from the global generator
    q = model.encode(x)
    torch.manual_seed(3)
    z = q.sample()
    recon = torch.nn.functional.binary_cross_entropy_with_logits(model.decode_logits(z), x, reduction="sum") / 8
    assert losses.terms["recon"].item() == pytest.approx(recon.item(), rel=1e-5)
    assert losses.total.item() == pytest.approx(recon.item() + 4.0 * q.kl().mean().item(), rel=1e-5)
    assert losses.terms["elbo"].item() == pytest.approx(-(recon.item() + q.kl().mean().item()), rel=1e-5)
    # warm-up scales only the KL weight
    torch.manual_seed(3)
    assert model.loss(Batch(x, anneal=0.0)).total.item() == pytest.approx(recon.item(), rel=1e-5)


def test_vae_sampling_shapes_and_likelihoods():
    for lik in ("bernoulli", "gaussian", "laplace"):
        model = VAE(VAEConfig(input_shape=(1, 8, 8), hidden=(16,), latent_dim=2, likelihood=lik,
                              learn_scale=lik != "bernoulli"))
        assert model.sample(5, torch.Generator().manual_seed(0)).shape == (5, 1, 8, 8)
        assert torch.isfinite(model.loss(Batch(torch.rand(4, 1, 8, 8))).total)
    learned = VAE(VAEConfig(input_shape=(4,), hidden=(8,), likelihood="gaussian", learn_scale=True))
    fixed = VAE(VAEConfig(input_shape=(4,), hidden=(8,), likelihood="gaussian"))
    assert learned.log_scale.requires_grad and not fixed.log_scale.requires_grad


def test_learned_scale_needs_a_likelihood_with_a_scale():
    # a Bernoulli likelihood has no scale: the parameter would never get a gradient
    with pytest.raises(aekit.errors.ConfigError, match="--learn-scale needs --likelihood gaussian or laplace"):
        VAEConfig(likelihood="bernoulli", learn_scale=True)
    auto = VAEConfig(learn_scale=True)  # auto resolves to bernoulli for images: refused at resolve time
    with pytest.raises(aekit.errors.ConfigError, match="--learn-scale"):
        auto.resolve(DataShape((1, 8, 8), True))
    assert auto.resolve(DataShape((4,), False)).likelihood == "gaussian"


def test_ae_sparsity_terms():
    x = torch.rand(4, 1, 8, 8)
    l1 = AE(AEConfig(input_shape=(1, 8, 8), hidden=(16,), latent_dim=5, sparsity="l1", sparsity_weight=0.1,
                     code_activation="relu", recon_loss="mse"))
    z = l1.encode(x)
    assert l1.loss(Batch(x)).terms["sparsity"].item() == pytest.approx(0.1 * z.abs().sum(1).mean().item(), rel=1e-5)
    with pytest.raises(aekit.errors.ConfigError, match="code-activation sigmoid"):
        AEConfig(sparsity="kl")


def test_conv_handles_odd_sizes():
    for shape in [(1, 28, 28), (3, 9, 13), (1, 8, 8)]:
        m = AE(AEConfig(input_shape=shape, arch="conv", channels=(4, 8), latent_dim=2))
        assert m(torch.rand(2, *shape)).shape == (2, *shape)


@pytest.mark.parametrize("cls, cfg_cls", [(AE, AEConfig), (VAE, VAEConfig)])
def test_conv_hidden_adds_mirrored_fully_connected_layers(cls, cfg_cls):
    base = dict(input_shape=(1, 16, 16), arch="conv", channels=(4, 8), latent_dim=3)
    plain, fc = cls(cfg_cls(**base)), cls(cfg_cls(**base, conv_hidden=(12,)))
    # no conv_hidden: the parameters of runs saved before the field existed, so they still load
    assert not any(k.startswith("encoder") and ".fc." in k for k in plain.state_dict())
    assert not any("hidden" in k for k in plain.state_dict())
    extra = {k: tuple(v.shape) for k, v in fc.state_dict().items() if k not in plain.state_dict()}
    d = 2 * 3 if cls is VAE else 3
    flat = 8 * 4 * 4
    assert sorted(extra.values()) == sorted([(12, flat), (12,), (12, 3), (12,)])  # encoder and decoder FC 12
    assert any(v.shape == (d, 12) for k, v in fc.state_dict().items() if "head" in k)
    x = torch.rand(2, 1, 16, 16)
    assert fc(x).shape == x.shape
    with pytest.raises(aekit.errors.ConfigError, match="conv-hidden"):
        cfg_cls(**base, conv_hidden=(0,))


def test_aekit_evaluate_is_both_the_function_and_the_package():
    import importlib
    import pathlib

    import aekit

    evaluate_pkg = importlib.import_module("aekit.evaluate")
    files = {p.stem for p in pathlib.Path(evaluate_pkg.__file__).parent.glob("*.py")} - {"__init__"}
    assert set(evaluate_pkg.SUBMODULES) == files  # every submodule is reachable as an attribute
    lik = importlib.import_module("aekit.evaluate.likelihood")  # `import aekit.evaluate.likelihood as L`
    assert aekit.evaluate.likelihood is lik
    assert callable(aekit.evaluate.disentanglement.mig)
    cfg = aekit.MODELS["ae"].make_config({"hidden": "8", "latent_dim": 2}, name="ae").resolve(DataShape((1, 8, 8), True))
    report = aekit.evaluate(aekit.build_model("ae", cfg), aekit.load_data(aekit.DataConfig("digits", subsample=200)))
    assert report["sse_per_image"] > 0
    with pytest.raises(AttributeError):
        aekit.evaluate.no_such_module  # noqa: B018


@pytest.mark.parametrize("name, options, sigma", [("vae", {}, 1.0), ("wae", {"prior_var": 4.0}, 2.0)])
def test_sampling_temperature_scales_the_prior_draw(name, options, sigma):
    """A Gaussian prior's draw at temperature τ is decode(τ·σ·ε), with the ε the generator gives at τ = 1."""
    model = tiny_model(name, hidden=(16,), latent_dim=3, **options).eval()
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = model.decode(0.3 * sigma * eps)
    got = model.sample(4, torch.Generator().manual_seed(5), temperature=0.3)
    torch.testing.assert_close(got, want)
