"""Formats and integrations: ONNX export checked against onnxruntime, save_pretrained / from_pretrained
(exact round trips, run directories, offline), and --tensorboard logging."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import aekit
from aekit.cli import main
from aekit.data import DataShape
from aekit.errors import AekitError, RunError
from aekit.hub import from_pretrained, save_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "vae"
    return aekit.train("vae", "digits", out, hidden="32", latent_dim=3, epochs=1, batch_size=64, progress=False,
                       report=False, evaluate=False)


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ----------------------------------------------------------------------------------------------- ONNX


@pytest.mark.slow  # quick subset under 3 min on a slow 2-core CPU (session 20)
def test_onnx_export_vae_matches_pytorch(vae_run, tmp_path, digits):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    assert main(["-q", "export", str(vae_run.path), "--onnx", str(out)]) == 0
    manifest = json.loads((out / "onnx.json").read_text())
    assert manifest["encoder_outputs"] == ["mean", "logvar"] and manifest["latent_dim"] == 3
    assert max(manifest["max_abs_diff"].values()) <= 1e-4
    model = vae_run.model
    enc = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 7):  # the batch axis is dynamic
        x = digits.test.x[:n].float() / 255
        mean, logvar = enc.run(None, {"x": x.numpy()})
        q = model.encode(x)
        np.testing.assert_allclose(mean, model.embed(x).detach().numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(logvar, q.logvar.detach().numpy(), atol=1e-4, rtol=0)
        (xr,) = dec.run(None, {"z": mean})
        np.testing.assert_allclose(xr, model.decode(torch.from_numpy(mean)).detach().numpy(), atol=1e-4, rtol=0)


def test_onnx_export_conv_ae_legacy_exporter(tmp_path, digits):
    pytest.importorskip("onnxruntime")
    from aekit.export import check_onnx, export_onnx

    run = aekit.train("ae", "digits", None, arch="conv", channels="4,8", latent_dim=5, epochs=1, progress=False)
    manifest = export_onnx(run.model, tmp_path / "conv", exporter="torchscript")
    assert manifest["encoder_outputs"] == ["z"] and manifest["posterior"] is False and manifest["graph"] == "autoencoder"
    assert max(check_onnx(run.model, tmp_path / "conv", n=3).values()) <= 1e-4


def test_export_needs_a_format(vae_run, capsys):
    assert main(["export", str(vae_run.path)]) == 2
    assert "--onnx DIR" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- pretrained


@pytest.mark.parametrize("name, options", [
    ("ae", {"hidden": (16,), "latent_dim": 3, "tied": True}),
    ("vae", {"hidden": (16,), "latent_dim": 2}),
    ("pca", {"latent_dim": 4}),
])
def test_save_and_from_pretrained_round_trip_is_exact(tmp_path, digits, name, options):
    run = aekit.train(name, "digits", None, epochs=1, progress=False, **options)
    out = save_pretrained(run.model, tmp_path / name)
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    assert b"pickle" not in (out / "model.safetensors").read_bytes()[:200]
    loaded = from_pretrained(out)
    _same_weights(run.model, loaded)
    x = digits.test.x[:9].float() / 255
    assert torch.equal(run.model.embed(x), loaded.embed(x)) and torch.equal(run.model(x), loaded(x))
    assert type(loaded) is type(run.model) and loaded.config == run.model.config
    _same_weights(aekit.load(out), loaded)  # a saved directory is a run directory


def test_a_run_directory_is_a_pretrained_directory(vae_run, tmp_path):
    loaded = from_pretrained(vae_run.path)
    _same_weights(vae_run.model, loaded)
    saved = save_pretrained(vae_run, tmp_path / "again")  # a Run keeps its data and training configs
    cfg = json.loads((saved / "config.json").read_text())
    assert cfg["model"] == "vae" and cfg["data"]["spec"] == "digits" and cfg["train"]["epochs"] == 1
    assert from_pretrained(saved, return_run=True).data_config == vae_run.data_config


def test_from_pretrained_errors_offline(tmp_path):
    with pytest.raises(RunError, match="not a directory"):
        from_pretrained(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="not a directory"):
        from_pretrained(tmp_path / "file")
    pytest.importorskip("huggingface_hub")
    with pytest.raises(RunError, match="not in the Hugging Face cache"):
        from_pretrained("aekit-tests/no-such-model", local_files_only=True, cache_dir=tmp_path / "hf")


def test_from_pretrained_expands_home_and_keeps_local_paths_local(vae_run, tmp_path, monkeypatch):
    import aekit.hub as hub

    monkeypatch.setenv("HOME", str(vae_run.path.parent))
    _same_weights(vae_run.model, from_pretrained(f"~/{vae_run.path.name}"))

    def no_network(*a, **k):
        raise AssertionError("a local-looking path went to the Hub")

    monkeypatch.setattr(hub, "_download", no_network)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("runs/typo", "./typo", "~/typo", "a/b/c"):  # runs/ exists here: runs/typo is a path
        with pytest.raises(RunError, match="not a directory"):
            from_pretrained(name)


@pytest.mark.parametrize("name", ["sparse-ae", "denoising-ae", "linear-ae"])
def test_save_pretrained_keeps_the_registry_name_of_a_variant(tmp_path, name):
    run = aekit.train(name, "digits", None, epochs=1, progress=False, **aekit.MODELS[name].tiny)
    saved = save_pretrained(run.model, tmp_path / name)
    assert json.loads((saved / "config.json").read_text())["model"] == name
    assert from_pretrained(saved).registry_name == name


# ----------------------------------------------------------------------------------------------- tensorboard


def test_tensorboard_logs_scalars_and_images(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert main(["-q", "train", "--model", "vae", "--data", "digits", "--hidden", "16", "--latent-dim", "2",
                 "--epochs", "2", "--no-progress", "--no-report", "--tensorboard", "--out", str(out)]) == 0
    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = acc.Tags()
    assert {"loss/train", "loss/val", "kl/val", "recon/train", "lr"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("loss/val")] == [1, 2]
    assert tags["images"] == ["reconstructions"]
    assert json.loads((out / "config.json").read_text())["train"]["tensorboard"] is True


def test_a_resumed_run_goes_on_logging_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    aekit.train("vae", "digits", out, hidden=(16,), latent_dim=2, epochs=1, report=False, progress=False,
                tensorboard=True)
    aekit.train(resume=out, epochs=2, report=False, progress=False)  # the recorded --tensorboard holds
    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [e.step for e in acc.Scalars("loss/val")] == [1, 2]


def test_tensorboard_missing_is_one_clear_line(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert main(["train", "--model", "ae", "--hidden", "8", "--epochs", "1", "--no-progress", "--no-report",
                 "--tensorboard", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'aekit[tensorboard]'" in err and err.count("\n") == 1


def test_export_failures_are_one_line_cli_errors(vae_run, tmp_path, capsys, monkeypatch):
    """What the error classes are for: export's failures (a missing run, a bad exporter, an ONNX graph that
    disagrees with PyTorch) are AekitErrors, which `aekit export` prints as one line with exit status 2."""
    pytest.importorskip("onnxruntime")
    import aekit.export as export_mod

    with pytest.raises(AekitError, match="--exporter 'keras'"):
        export_mod.export_onnx(vae_run.model, tmp_path / "x", exporter="keras")
    monkeypatch.setattr(export_mod, "check_onnx", lambda model, out, **kw: {"encoder.mean": 0.0, "decoder.x": 0.5})
    with pytest.raises(AekitError, match="decoder.x differs from PyTorch by 0.5"):
        export_mod.export_onnx(vae_run.model, tmp_path / "y", exporter="torchscript")
    for args, words in [([tmp_path / "missing", "--onnx", tmp_path / "o"], "does not exist"),
                        ([vae_run.path, "--onnx", tmp_path / "z", "--exporter", "torchscript"], "differs from PyTorch")]:
        assert main(["export", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err


def test_onnx_export_of_a_unet_is_the_whole_model(tmp_path):
    pytest.importorskip("onnxruntime")
    from aekit.export import check_onnx, export_onnx
    from aekit.models import MODELS, build_model

    if "unet" not in MODELS:
        pytest.skip("the unet model is not registered in this checkout")
    cfg = MODELS["unet"].make_config({"depth": 1, "base_channels": 4, "num_classes": 3}).resolve(DataShape((1, 8, 8), True))
    net = build_model("unet", cfg).eval()
    manifest = export_onnx(net, tmp_path / "unet", model_name="unet", exporter="torchscript")
    assert manifest["graph"] == "forward" and (tmp_path / "unet" / "model.onnx").exists()
    assert max(check_onnx(net, tmp_path / "unet", n=2).values()) <= 1e-4
