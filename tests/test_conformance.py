"""The model conformance suite: every registered model (and a toy model defined only here) goes through build,
forward/backward, the units of its loss terms, train → save → load equality, evaluate, ONNX export (or a
clean "not supported"), the explorer, kill-and-resume equality and determinism.

Adding a registry line is enough to put a model through all of it: the cases are ``list(MODELS)``; the data
follows from the model's declared capabilities (segmentation masks for ``supervised`` models, digits
otherwise) and the size from the registry entry's ``tiny`` options.  ``conditional`` models get the data's class
labels through ``model.label_kwargs`` (nothing for the others), so their verbs are called as the contract says.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import aekit
from aekit.config import opt
from aekit.data import Batch, load_data
from aekit.errors import AekitError
from aekit.models import MODELS, ModelSpec
from aekit.models.base import CAPABILITIES, Autoencoder, Losses, ModelConfig
from aekit.train import LambdaCallback, read_metrics
from aekit.train.checkpoint import read_tensors

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------- a model defined only here


@dataclasses.dataclass(frozen=True)
class ToyConfig(ModelConfig):
    latent_dim: int = opt(2, "size of the code")


class ToyLinearAE(Autoencoder):
    """The smallest model that fulfils the contract: a linear encoder and decoder, squared error."""

    units = {"recon": "sum of squared errors per sample"}

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        self.enc = torch.nn.Linear(self.input_dim, config.latent_dim)
        self.dec = torch.nn.Linear(config.latent_dim, self.input_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).view(-1, *self.input_shape)

    def loss(self, batch: Batch) -> Losses:
        recon = (self.forward(batch.x) - batch.clean).pow(2).flatten(1).sum(1).mean()
        return Losses(recon, {"recon": recon})


TOY = "toy-linear-ae"
CASES = [*MODELS, TOY]


@pytest.fixture
def registered(request):
    """The case's registry name; the toy model is registered (one line) for the test's duration."""
    name = request.param
    if name == TOY:
        MODELS.register(TOY, ModelSpec(ToyConfig, ToyLinearAE, "a toy linear autoencoder (tests only)"))
        yield name
        MODELS._entries.pop(TOY)
    else:
        yield name


def parametrize_models(fn):
    return pytest.mark.parametrize("registered", CASES, indirect=True)(fn)


# ------------------------------------------------------------------------------- data and runs


@pytest.fixture(scope="module")
def digits():
    return load_data(aekit.DataConfig("digits", subsample=300))


@pytest.fixture(scope="module")
def cells():
    return load_data(aekit.DataConfig("cells", cells_count=16, image_size=16))


def data_for(name, digits, cells):
    spec = MODELS[name]
    return (cells, aekit.DataConfig("cells", cells_count=16, image_size=16)) if spec.model_cls.supervised else (
        digits, aekit.DataConfig("digits", subsample=300))


def options(name, **extra):
    return {**MODELS[name].tiny, "epochs": 2, "batch_size": 64, "progress": False, **extra}


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def build(name, data):
    spec = MODELS[name]
    cfg = spec.make_config(MODELS[name].tiny, name=name).resolve(data)
    model = aekit.build_model(name, cfg)
    if model.closed_form:
        model.fit(aekit.data.to_float(data.train.x))
    return model


def first_batch(model, data, n=6):
    x = aekit.data.to_float(data.train.x[:n])
    labels = data.train.y[:n] if model.needs_labels else None
    return Batch(x, labels=labels)


def finite_everywhere(value) -> bool:
    """Every number in a JSON value (nested dicts and lists too) is finite."""
    if isinstance(value, dict):
        return all(finite_everywhere(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_everywhere(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


# ------------------------------------------------------------------------------- the suite


@parametrize_models
def test_declares_the_contract(registered):
    cls = MODELS[registered].model_cls
    assert issubclass(cls, Autoencoder)
    assert not getattr(cls, "__abstractmethods__", None), f"{cls.__name__} leaves verbs abstract"
    for name in CAPABILITIES:  # declared as plain booleans on the class, not computed or left to a probe
        assert type(getattr(cls, name)) is bool, f"{cls.__name__}.{name} is {getattr(cls, name)!r}"
    assert cls.units, "a model lists its loss terms and their units"
    for f in dataclasses.fields(MODELS[registered].config_cls):  # every option is documented for the CLI
        assert f.metadata.get("help"), f"{MODELS[registered].config_cls.__name__}.{f.name} has no help text"


@parametrize_models
def test_forward_backward_and_units(registered, digits, cells):
    data, _ = data_for(registered, digits, cells)
    model = build(registered, data)
    batch = first_batch(model, data)
    losses = model.loss(batch)
    assert losses.total.shape == () and torch.isfinite(losses.total)
    assert set(losses.terms) <= set(model.units), f"undocumented terms {set(losses.terms) - set(model.units)}"
    assert all(torch.isfinite(v) and v.shape == () for v in losses.terms.values())
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not model.closed_form:
        assert trainable
        losses.total.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    model.eval()
    kw = model.label_kwargs(batch.labels)  # a conditional model's labels; {} for every other model
    with torch.no_grad():
        out = model(batch.x, **kw)
        code = model.embed(batch.x, **kw)
    assert code.shape == (len(batch.x), model.latent_dim)
    if model.supervised:
        assert model.predict(batch.x).shape == batch.labels.shape
    else:
        assert out.shape == batch.x.shape
    if model.latent_vectors:
        assert model.decode(code, **kw).shape == batch.x.shape
    if model.generative:
        three = model.label_kwargs(batch.labels[:3] if model.conditional else None)
        assert model.sample(3, torch.Generator().manual_seed(0), **three).shape == (3, *model.input_shape)


@parametrize_models
def test_sampling_temperature(registered, digits, cells):
    """Every generative model takes ``temperature``: τ = 1 is the default draw, τ = 0 the prior's mode (the same
    images whatever the generator), a negative or non-finite τ a one-line error."""
    data, _ = data_for(registered, digits, cells)
    model = build(registered, data).eval()
    if not model.generative:
        pytest.skip("not generative")
    kw = model.label_kwargs(torch.tensor([0, 1, 0]) if model.conditional else None)

    def draw(seed: int, **t: float) -> torch.Tensor:
        return model.sample(3, torch.Generator().manual_seed(seed), **kw, **t)

    torch.testing.assert_close(draw(0, temperature=1.0), draw(0))
    torch.testing.assert_close(draw(0, temperature=0.0), draw(1, temperature=0.0))
    assert not torch.equal(draw(0), draw(1)), "different seeds draw different samples at τ = 1"
    assert not torch.equal(draw(0, temperature=0.5), draw(0)), "the temperature changes the draws"
    assert torch.isfinite(draw(0, temperature=1e-38)).all()  # a tiny τ is near the mode, never NaN
    for bad in (-0.5, float("nan"), float("inf"), 10**400, "0.5", True, None):
        with pytest.raises(AekitError, match="temperature") as e:
            model.sample(3, **kw, temperature=bad)
        assert "\n" not in str(e.value)


@parametrize_models
def test_missing_capabilities_give_one_line_errors(registered, digits, cells):
    data, _ = data_for(registered, digits, cells)
    model = build(registered, data)
    from aekit.evaluate.anomaly import anomaly_scores
    from aekit.latent import interpolate

    x = first_batch(model, data).x
    for capability, call in (("generative", lambda: model.sample(2)),
                             ("supervised", lambda: model.predict(x)),
                             ("supervised", lambda: model.num_classes),
                             ("posterior", lambda: aekit.evaluate.likelihood.iwae_nll(model, data.test.x[:4], 2)),
                             ("posterior", lambda: anomaly_scores(model, data.test.x[:4], "elbo")),
                             ("latent_vectors", lambda: interpolate(model, x[0], x[1], 3)),
                             ("closed_form", lambda: model.fit(x))):
        if not getattr(model, capability):
            with pytest.raises(AekitError, match=capability):
                call()
    if model.conditional:  # a conditional verb without its labels: a one-line error that names them
        for call in (lambda: model.encode(x), lambda: model.sample(2)):
            with pytest.raises(AekitError, match="label") as e:
                call()
            assert "\n" not in str(e.value)


@pytest.mark.slow
@parametrize_models
def test_train_save_load_evaluate_resume_determinism(registered, digits, cells, tmp_path):
    _, data_cfg = data_for(registered, digits, cells)
    opts = options(registered, epochs=3, early_stopping=2)  # resume must also restore early stopping's state
    run = aekit.train(registered, data_cfg, tmp_path / "a", report=False, **opts)
    # save -> load equality, and the run is a valid directory
    loaded = aekit.load_run(tmp_path / "a")
    assert loaded.model_name == registered and loaded.model.registry_name == registered
    assert_same_state(state(run.model), state(loaded.model))
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model"] == registered
    # evaluate: finite, JSON-ready figures
    ev = json.loads((tmp_path / "a" / "evaluation.json").read_text())
    assert ev["n"] == len(data_for(registered, digits, cells)[0].test) and finite_everywhere(ev)
    # determinism twice: the same options give the same weights
    again = aekit.train(registered, data_cfg, tmp_path / "b", report=False, evaluate=False, **opts)
    assert_same_state(state(run.model), state(again.model))
    # kill-and-resume equality (closed-form models have no epochs to interrupt)
    if not run.model.closed_form:
        class Kill(Exception):
            pass

        def kill(epoch, index):
            if (epoch, index) == (1, 0):
                raise Kill

        with pytest.raises(Kill):
            aekit.train(registered, data_cfg, tmp_path / "c", report=False, evaluate=False,
                        callbacks=[LambdaCallback(kill)], **opts)
        assert not (tmp_path / "c" / "model.safetensors").exists()
        resumed = aekit.train(resume=tmp_path / "c", report=False, evaluate=False)
        assert_same_state(state(run.model), state(resumed.model))
        weights, _ = read_tensors(tmp_path / "c" / "model.safetensors")
        assert_same_state(state(run.model), weights)

        def rows(path):  # every metric of every epoch and stage but the wall time
            return [{k: v for k, v in r.items() if k != "time_s"} for r in read_metrics(path / "metrics.csv")]

        assert rows(tmp_path / "c") == rows(tmp_path / "a")


@pytest.mark.slow
@parametrize_models
def test_export_or_a_clean_refusal(registered, digits, cells, tmp_path):
    pytest.importorskip("onnx")
    from aekit.export import export_onnx

    data, _ = data_for(registered, digits, cells)
    model = build(registered, data).eval()
    try:
        manifest = export_onnx(model, tmp_path / "onnx", model_name=registered)
    except AekitError as e:  # a clean "not supported" naming what is missing: never a wrong graph
        assert "\n" not in str(e) and "differs from PyTorch" not in str(e), str(e)
        return
    assert json.loads((tmp_path / "onnx" / "onnx.json").read_text())["model"] == registered
    if model.conditional:  # the class ids are a second input of both graphs
        assert manifest["encoder_inputs"][-1] == manifest["decoder_inputs"][-1] == "labels"
    if "max_abs_diff" in manifest:  # onnxruntime checked the graphs against PyTorch
        from aekit.export import TOLERANCE

        assert max(manifest["max_abs_diff"].values()) <= TOLERANCE


@parametrize_models
def test_explorer_endpoints(registered, digits, cells):
    from serve_stubs import png_bytes

    from aekit.serve.explorer import Explorer

    data, _ = data_for(registered, digits, cells)
    model = build(registered, data)
    ex = Explorer(model, data, split="test", model_name=registered, max_points=50)
    info = ex.info()
    assert info["latent"] == model.latent_vectors
    assert info["can_sample"] == (model.generative and model.latent_vectors)
    assert info["can_segment"] == model.supervised
    assert info["conditional"] == model.conditional
    cls = {"label": 0} if model.conditional else {}  # a conditional model decodes with a class (the selector)
    if model.latent_vectors:
        codes = ex.encode(indices=[0, 1])["codes"]
        assert len(codes) == 2 and len(codes[0]) == model.latent_dim
        assert len(ex.decode(codes, **cls)["images"]) == 2
        assert len(ex.interpolate(0, 1, steps=3, **cls)["images"]) == 3
        assert ex.item(0)
    if model.generative:
        assert len(ex.sample(2)["images"]) == 2
        assert len(ex.sample(2, **cls)["images"]) == 2
    if model.conditional:
        from aekit.serve.explorer import RequestError

        assert info["label_names"] == list(model.label_names)
        with pytest.raises(RequestError, match="label"):  # decoding a code needs its class
            ex.decode(codes)
    if model.supervised:
        out = ex.segment(png_bytes((16, 16)), "image/png")
        assert out["width"] == 16 and out["height"] == 16
