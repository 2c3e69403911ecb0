"""Trainer and run directories: learning, determinism, exact resume, divergence, bad runs."""

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import aekit
from aekit.data import DataConfig, DataShape
from aekit.errors import ConfigError, RunError, TrainingDiverged
from aekit.train import Callback, LambdaCallback, TrainConfig, fit

# checkpoint after every epoch: the kill-and-resume tests below resume from a checkpoint, not from scratch
QUICK = {"hidden": "32", "latent_dim": 4, "batch_size": 64, "progress": False, "report": False,
         "checkpoint_every_s": 0}


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_training_reduces_loss_and_writes_run(tmp_path):
    run = aekit.train("vae", "digits", tmp_path / "r", epochs=5, **QUICK)
    m = run.metrics
    assert len(m) == 5 and m[-1]["train_loss"] < m[0]["train_loss"] and m[-1]["val_loss"] < m[0]["val_loss"]
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "model.safetensors", "metrics.csv", "checkpoint.safetensors", "evaluation.json"} <= files
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["aekit_version"] == aekit.__version__ and cfg["model"] == "vae"
    assert cfg["model_config"]["input_shape"] == [1, 8, 8] and cfg["model_config"]["likelihood"] == "bernoulli"
    ev = json.loads((tmp_path / "r" / "evaluation.json").read_text())
    assert ev["split"] == "test" and ev["elbo"] < 0 and ev["n"] == 359


def test_same_seed_same_metrics(tmp_path):
    a = aekit.train("vae", "digits", tmp_path / "a", epochs=2, **QUICK)
    b = aekit.train("vae", "digits", tmp_path / "b", epochs=2, **QUICK)
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in a.metrics]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in b.metrics]
    assert a.evaluation == b.evaluation
    c = aekit.train("vae", "digits", tmp_path / "c", epochs=2, seed=1, **QUICK)
    assert c.evaluation != a.evaluation


class Kill(Exception):
    pass


@pytest.mark.parametrize("model", ["vae", "ae", "conv-channels-last"])
def test_killed_mid_epoch_resumes_to_identical_weights(tmp_path, model):
    opts = dict(QUICK, epochs=4, schedule="cosine", beta_warmup_epochs=1) if model == "vae" else dict(QUICK, epochs=4)
    if model == "conv-channels-last":  # the optimiser's moments are put back in the parameters' layout on resume
        model = "vae"
        opts = {**{k: v for k, v in opts.items() if k != "hidden"}, "arch": "conv", "channels": "4,8",
                "channels_last": True}
    aekit.train(model, "digits", tmp_path / "full", **opts)

    def kill(epoch, step):
        if epoch == 2 and step == 5:
            raise Kill


    with pytest.raises(Kill):
        _train_with_hook(tmp_path / "killed", model, opts, kill)
    assert not (tmp_path / "killed" / "model.safetensors").exists()  # does not look complete
    with pytest.raises(RunError, match="incomplete"):
        aekit.load(tmp_path / "killed")
    aekit.train(resume=tmp_path / "killed", report=False, progress=False)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    full_rows = (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    resumed_rows = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()
    assert len(full_rows) == len(resumed_rows) == 5


def test_resume_needs_no_saved_noise_state(tmp_path):
    """Sampling noise is reseeded from (seed, epoch) on every device at each epoch start, so a checkpoint holds no
    generator state but the data order, and a resumed VAE draws the same noise: exact on a GPU by design, where
    the noise comes from the CUDA generator (test_killed_mid_epoch_resumes_on_cuda runs it when one is lent)."""
    aekit.train("vae", "digits", tmp_path / "r", epochs=1, **QUICK)
    from aekit.train.checkpoint import read_tensors

    tensors, _ = read_tensors(tmp_path / "r" / "checkpoint.safetensors")
    assert [k for k in tensors if k.startswith("rng.")] == ["rng.data"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_killed_mid_epoch_resumes_on_cuda(tmp_path):
    opts = dict(QUICK, epochs=3, device="cuda")
    aekit.train("vae", "digits", tmp_path / "full", **opts)

    def kill(epoch, step):
        if epoch == 1 and step == 3:
            raise Kill

    with pytest.raises(Kill):
        _train_with_hook(tmp_path / "killed", "vae", opts, kill)
    aekit.train(resume=tmp_path / "killed", report=False, progress=False)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _train_with_hook(out, model, opts, hook):
    """Run the library's train() but with an on_step hook injected into fit()."""
    import importlib

    run_mod = importlib.import_module("aekit.train.run")  # (aekit.train is also the train() function)
    real_fit = run_mod.fit

    def fit_with_hook(*a, **kw):
        return real_fit(*a, on_step=hook, **kw)

    run_mod.fit = fit_with_hook
    try:
        return aekit.train(model, "digits", out, **opts)
    finally:
        run_mod.fit = real_fit


def test_divergence_stops_with_clear_message_and_keeps_checkpoint(tmp_path):
    aekit.train("ae", "digits", tmp_path / "r", epochs=1, **QUICK)
    # poison the run: a huge learning rate after one good epoch
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    cfg["train"]["lr"] = 1e12
    cfg["train"]["epochs"] = 3
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(TrainingDiverged, match=r"lower --lr.*last good checkpoint \(epoch 1\)"):
        aekit.train(resume=tmp_path / "r", report=False, progress=False)
    from aekit.train.checkpoint import read_tensors

    _, meta = read_tensors(tmp_path / "r" / "checkpoint.safetensors")
    assert json.loads(meta["loop"])["epoch"] == 1


def test_divergence_with_a_finite_loss_is_caught_and_nothing_is_marked_complete(tmp_path):
    # --lr 1e6 on an ae: the loss can stay finite while BatchNorm's running_var or Adam's moments overflow
    with pytest.raises(TrainingDiverged, match=r"training diverged at epoch (\d+).*") as e:
        aekit.train("ae", "digits", tmp_path / "r", epochs=3, lr=1e6, **QUICK)
    epoch = int(e.value.args[0].split("at epoch ")[1].split(" ")[0])
    assert 1 <= epoch <= 3
    if "last good checkpoint" in str(e.value):  # the checkpoint named is the one on disk
        from aekit.train.checkpoint import checkpoint_epoch

        saved = checkpoint_epoch(tmp_path / "r" / "checkpoint.safetensors")
        assert saved is not None and saved < epoch and f"last good checkpoint (epoch {saved})" in str(e.value)
    assert not (tmp_path / "r" / "model.safetensors").exists()
    if (tmp_path / "r" / "checkpoint.safetensors").exists():  # what was saved is finite
        from aekit.train.checkpoint import non_finite, read_tensors

        assert non_finite(read_tensors(tmp_path / "r" / "checkpoint.safetensors")[0]) == []


def test_non_finite_tensors_are_never_saved(tmp_path):
    from aekit.train.checkpoint import atomic_save_tensors

    with pytest.raises(TrainingDiverged, match="w holds NaN or inf"):
        atomic_save_tensors({"ok": torch.zeros(2), "w": torch.tensor([1.0, float("inf")])}, tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


def test_resume_after_divergence_with_a_lower_lr_as_the_hint_says(tmp_path):
    aekit.train("vae", "digits", tmp_path / "r", epochs=1, **QUICK)
    run = aekit.train(resume=tmp_path / "r", epochs=2, lr=1e-4, report=False, progress=False)
    assert run.train_config.lr == 1e-4 and run.train_config.epochs == 2
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["lr"] == 1e-4  # recorded


def test_a_corrupt_checkpoint_leaves_the_finished_weights_untouched(tmp_path):
    aekit.train("ae", "digits", tmp_path / "r", epochs=1, **QUICK)
    weights = (tmp_path / "r" / "model.safetensors").read_bytes()
    ckpt = tmp_path / "r" / "checkpoint.safetensors"
    good = ckpt.read_bytes()
    for bad in (good[: len(good) // 2], good[:100] + bytes(50) + good[150:], b"not a checkpoint"):
        ckpt.write_bytes(bad)
        with pytest.raises(RunError):
            aekit.train(resume=tmp_path / "r", epochs=2, report=False, progress=False)
        assert (tmp_path / "r" / "model.safetensors").read_bytes() == weights


def test_early_stopping_ignores_an_epoch_without_losses():
    from aekit.train import EarlyStopping

    class T:
        should_stop = False
        model = torch.nn.Linear(2, 2)

    es = EarlyStopping(patience=1)
    es.on_epoch_end(T(), {"epoch": 1.0, "step": 0.0, "lr": 1e-3, "time_s": 0.0})  # no train_loss, no val_loss
    assert es.best_epoch == 0 and not T.should_stop


def test_early_stopping_restores_best(tmp_path, digits):
    torch.manual_seed(0)
    model = aekit.build_model("ae", aekit.MODELS["ae"].make_config({"hidden": (8,), "latent_dim": 2}).resolve(DataShape(digits.shape, True)))
    rows = fit(model, digits, TrainConfig(epochs=30, lr=0.5, early_stopping=2, progress=False, batch_size=64))
    assert len(rows) < 30
    best = min(r["val_loss"] for r in rows)
    from aekit.train import mean_losses

    assert mean_losses(model, digits.val)["loss"] == pytest.approx(best, rel=1e-5)


def test_bad_runs_give_one_line_errors(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        aekit.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="not an aekit run"):
        aekit.load(tmp_path / "empty")
    aekit.train("ae", "digits", tmp_path / "r", epochs=1, **QUICK)
    # weights that do not fit the config
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    cfg["model_config"]["latent_dim"] = 5
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="do not fit the model in config.json"):
        aekit.load(tmp_path / "r")
    # a corrupt weights file
    cfg["model_config"]["latent_dim"] = 4
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg))
    aekit.load(tmp_path / "r")
    (tmp_path / "r" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(RunError, match="not a readable safetensors"):
        aekit.load(tmp_path / "r")


def test_existing_out_is_not_clobbered(tmp_path):
    aekit.train("ae", "digits", tmp_path / "r", epochs=1, **QUICK)
    with pytest.raises(ConfigError, match="already exists"):
        aekit.train("ae", "digits", tmp_path / "r", epochs=1, **QUICK)
    aekit.train("ae", "digits", tmp_path / "r", epochs=1, overwrite=True, **QUICK)


def test_bad_data_creates_no_run_dir(tmp_path):
    with pytest.raises(aekit.errors.DataError):
        aekit.train("ae", "idx:" + str(tmp_path / "missing"), tmp_path / "r", epochs=1, **QUICK)
    assert not (tmp_path / "r").exists()


def test_loading_never_unpickles(tmp_path, monkeypatch):
    """Loading a run reads JSON + safetensors only: with every unpickling entry point made to raise, a run with
    a pickle planted next to its weights loads, and its weights are model.safetensors' (edited here) exactly."""
    import pickle

    from safetensors import safe_open

    aekit.train("ae", "digits", tmp_path / "r", epochs=1, **QUICK)
    path = tmp_path / "r" / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    edited = {k: v * 2 if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    save_file(edited, str(path), metadata=meta)  # weights no cache or pickle could supply
    from aekit.train.run import mark_complete

    mark_complete(path.parent)  # record the edited file's checksum: the run is complete with these weights
    (tmp_path / "r" / "model.pt").write_bytes(pickle.dumps({"planted": True}))

    def refuse(*args, **kwargs):
        raise AssertionError("loading a run unpickled something")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                         (torch.serialization, "load")]:
        monkeypatch.setattr(module, name, refuse)
    for model in (aekit.load(tmp_path / "r"), aekit.load_run(tmp_path / "r").model):
        state = model.state_dict()
        assert state.keys() == edited.keys()
        for k, v in edited.items():
            assert torch.equal(state[k], v), k


def test_lr_schedule():
    from aekit.train.trainer import lr_at

    cfg = TrainConfig(epochs=10, lr=1.0, schedule="cosine", lr_warmup_epochs=1)
    assert lr_at(cfg, 0, 10) == pytest.approx(0.1)
    assert lr_at(cfg, 9, 10) == pytest.approx(1.0)
    assert lr_at(cfg, 55, 10) == pytest.approx(0.5, abs=1e-9)
    assert lr_at(cfg, 99, 10) < 0.001


def test_data_config_object_accepted(tmp_path):
    run = aekit.train("pca", DataConfig("digits", val_fraction=0.2), None, latent_dim=5, progress=False)
    assert run.path is None and run.metrics[0]["train_loss"] > 0


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    """A real `aekit train` process killed with SIGKILL mid-run resumes to the same final weights."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["train", "--model", "vae", "--data", "digits", "--hidden", "64", "--latent-dim", "4", "--epochs", "12",
            "--batch-size", "16", "--no-progress", "--no-report", "--checkpoint-every-s", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def aekit(*extra):
        return subprocess.Popen([sys.executable, "-m", "aekit", "-q", *args, *extra], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    assert aekit("--out", str(tmp_path / "full")).wait(timeout=300) == 0
    proc = aekit("--out", str(tmp_path / "killed"))
    metrics = tmp_path / "killed" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 4:  # header + 3 epochs
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (tmp_path / "killed" / "model.safetensors").exists(), "killed too late: the run had finished"
    resume = subprocess.run([sys.executable, "-m", "aekit", "-q", "train", "--resume", str(tmp_path / "killed"),
                             "--no-report"], env=env, capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr
    a, b = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_autocast_trains(tmp_path):
    run = aekit.train("vae", "digits", None, epochs=2, bf16=True, **{k: v for k, v in QUICK.items() if k != "report"})
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in run.metrics)
    assert run.metrics[-1]["train_loss"] < run.metrics[0]["train_loss"]


def test_trailing_batch_of_one_sample_is_skipped_for_batchnorm(tmp_path):
    from aekit.data import load_data

    n = len(load_data(DataConfig(spec="digits")).train.x)
    opts = {**QUICK, "batch_size": n - 1}  # batches of n - 1 and 1: BatchNorm cannot train on the second
    run = aekit.train("ae", "digits", None, epochs=2, norm="batch", **{k: v for k, v in opts.items() if k != "report"})
    assert [r["step"] for r in run.metrics] == [1.0, 2.0]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in run.metrics)


def test_channels_last_trains_conv_models_and_saves_plain_weights(tmp_path):
    opts = {**QUICK, "hidden": None, "arch": "conv", "channels": "4,8", "epochs": 2}
    opts = {k: v for k, v in opts.items() if v is not None}
    a = aekit.train("vae", "digits", tmp_path / "nchw", memory_format="nchw", **opts)
    b = aekit.train("vae", "digits", tmp_path / "nhwc", channels_last=True, **opts)  # the alias
    saved = json.loads((tmp_path / "nhwc" / "config.json").read_text())["train"]
    assert saved["memory_format"] == "channels_last" and saved["channels_last"] is False  # normalised
    assert json.loads((tmp_path / "nchw" / "config.json").read_text())["train"]["memory_format"] == "nchw"
    for ra, rb in zip(a.metrics, b.metrics):  # the same computation in another memory layout
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-3)
    w = weights(tmp_path / "nhwc")
    assert all(t.is_contiguous() for t in w.values())
    again = aekit.load(tmp_path / "nhwc")
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(again.embed(x), b.model.embed(x.contiguous(memory_format=torch.channels_last)), atol=1e-5)


def test_optimiser_is_torchs_public_fused_adam():
    from aekit.train.optim import make_optimizer

    model = torch.nn.Linear(3, 2)
    for kind, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        opt = make_optimizer(model, 1e-3, 0.01, kind)
        assert type(opt) is cls and opt.param_groups[0]["fused"]


def test_no_private_torch_api_in_the_package():
    import re
    from pathlib import Path

    src = Path(aekit.__file__).parent
    private = re.compile(r"\btorch\.(?:[a-z]+\.)*_[a-z]\w*")  # torch._x, torch.nn.modules._x, …
    hits = [f"{p.relative_to(src)}:{i}: {m.group(0)}" for p in src.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) for m in [private.search(line)] if m]
    assert hits == []


def test_fit_leaves_no_global_state_behind(digits):
    from aekit.train.trainer import _flush_denormal_on

    torch.set_flush_denormal(False)
    model = aekit.build_model("vae", aekit.MODELS["vae"].make_config({"hidden": (8,), "latent_dim": 2}).resolve(
        digits))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    threads = torch.get_num_threads()
    fit(model, digits, TrainConfig(epochs=1, batch_size=256, progress=False))
    assert torch.equal(torch.get_rng_state(), before)  # the caller's generator is where it was
    assert not _flush_denormal_on() and torch.get_num_threads() == threads
    assert torch.set_flush_denormal(True) and _flush_denormal_on()  # the probe does see the setting
    fit(model, digits, TrainConfig(epochs=1, batch_size=256, progress=False))
    assert _flush_denormal_on()  # restored to what the caller had, not to a default
    torch.set_flush_denormal(False)


@pytest.mark.slow
def test_compile_trains_like_eager(tmp_path):
    """--compile (inductor, with aekit's options) gives the same noise draws and nearly the same losses."""
    opts = {"hidden": "32", "latent_dim": 4, "epochs": 1, "batch_size": 64, "subsample": 600, "progress": False}
    from torch._dynamo.utils import counters

    eager = aekit.train("vae", "digits", tmp_path / "eager", **opts)
    counters.clear()
    compiled = aekit.train("vae", "digits", tmp_path / "compiled", compile=True, **opts)
    assert counters["stats"]["unique_graphs"] >= 1  # it really compiled
    a, b = eager.metrics[-1], compiled.metrics[-1]
    assert math.isfinite(b["train_loss"])
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3)


def test_run_files_get_the_umask_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        aekit.train("vae", "digits", tmp_path / "r", epochs=1, progress=False)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert {"config.json", "model.safetensors", "metrics.csv", "evaluation.json", "report.html"} <= {p.name for p in files}
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o644}, modes  # 0o666 less the umask, as any tool gives (not mkstemp's 0o600)


def test_public_sample_needs_no_autograd(tmp_path):
    aekit.train("vae", "digits", tmp_path / "r", **{**QUICK, "epochs": 1, "evaluate": False})
    assert aekit.load(tmp_path / "r").sample(2).numpy().shape == (2, 1, 8, 8)


def test_resume_refuses_a_checkpoint_of_another_batch_geometry(tmp_path, digits):
    """lr schedules and warm-ups are functions of the step: a checkpoint written with another batch size (or
    number of processes) would shift them silently."""
    from aekit.train import Trainer

    aekit.train("vae", "digits", tmp_path / "r", epochs=1, **QUICK)
    run = aekit.load_run(tmp_path / "r")
    cfg = dataclasses.replace(run.train_config, epochs=2, batch_size=32)
    with pytest.raises(RunError, match="written with steps_per_epoch .* resume with the same batch size"):
        Trainer(cfg).fit(run.model, digits, resume_from=tmp_path / "r" / "checkpoint.safetensors")


# ------------------------------------------------------------------------------------------- precision


def _precision_module():
    import importlib

    return importlib.import_module("aekit.train.precision")


def test_precision_auto_is_bf16_only_where_native_and_measured(monkeypatch):
    P = _precision_module()
    cpu = torch.device("cpu")
    monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert P.choose_precision("auto", "unet", cpu) == ("bf16", "auto: CPU with AVX-512 BF16, bf16 parity measured "
                                                               "for --model unet")
    monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    assert P.choose_precision("auto", "unet", cpu)[0] == "bf16"
    chosen, why = P.choose_precision("auto", "wae", cpu)
    assert chosen == "fp32" and "not measured for --model wae" in why
    assert P.choose_precision("auto", None, cpu)[0] == "fp32"  # built outside the registry: never measured
    assert P.choose_precision("fp32", "vae", cpu) == ("fp32", "--precision fp32")
    assert P.choose_precision("bf16", "wae", cpu)[0] == "bf16"  # forced: no questions asked
    monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"avx512f", "avx2"}))
    chosen, why = P.choose_precision("auto", "vae", cpu)
    assert chosen == "fp32" and "without AMX or AVX-512 BF16" in why
    assert P.choose_precision("auto", "vae", torch.device("mps"))[0] == "fp32"


def test_bf16_on_a_device_without_native_bf16_is_honoured_with_one_warning(tmp_path, monkeypatch, caplog):
    import logging

    from aekit.models import MODELS

    P = _precision_module()
    cpu = {"device": "cpu", **QUICK}

    def warnings():
        return [r for r in caplog.records if "bf16 is not native here" in r.getMessage()]

    with caplog.at_level(logging.INFO, logger="aekit"):
        monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"avx2"}))
        run = aekit.train("vae", "digits", tmp_path / "a", epochs=1, precision="bf16", **cpu)
        assert run.train_config.precision == "bf16"  # honoured
        (w,) = warnings()
        assert w.levelno == logging.WARNING and "without AMX or AVX-512 BF16" in w.getMessage()
        assert "7–8×" in w.getMessage() and "trains in fp32 here" in w.getMessage()
        caplog.clear()  # a model with stages (a VQ-VAE's prior is a second fit): still one warning per run
        opts = {"device": "cpu", "batch_size": 64, "progress": False, "report": False, "epochs": 1}
        aekit.train("vqvae", "digits", tmp_path / "q", **{**MODELS["vqvae"].tiny, **opts, "precision": "bf16"})
        assert len(warnings()) == 1
        caplog.clear()  # resumed: the run trains in bf16 again, and says so once
        aekit.train(resume=tmp_path / "a", epochs=2, report=False, progress=False)
        assert len(warnings()) == 1
        caplog.clear()
        aekit.train("vae", "digits", tmp_path / "b", epochs=1, **cpu)  # auto: fp32, nothing to say
        assert not warnings()
        monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
        aekit.train("vae", "digits", tmp_path / "c", epochs=1, precision="bf16", **cpu)
        assert not warnings()


def test_the_measured_models_are_registered_and_named_in_the_help():
    from aekit.config import field_help
    from aekit.models import MODELS

    P = _precision_module()
    assert set(P.BF16_PARITY) <= set(MODELS)
    text = field_help(TrainConfig)["precision"][0]
    assert f"({', '.join(P.BF16_PARITY)})" in text


def test_bf16_is_an_alias_of_precision_bf16():
    assert TrainConfig().precision == "auto"
    cfg = TrainConfig(bf16=True)
    assert cfg.precision == "bf16" and cfg.bf16 is False  # one setting, as config.json records it
    assert dataclasses.replace(cfg, precision="fp32").precision == "fp32"
    assert TrainConfig(bf16=True, precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match="--bf16 and --precision fp32 contradict"):
        TrainConfig(bf16=True, precision="fp32")
    with pytest.raises(ConfigError, match="not one of 'auto', 'fp32', 'bf16'"):
        from aekit.config import from_dict

        from_dict(TrainConfig, {"precision": "fp16"})


def test_run_records_the_chosen_precision_and_a_resume_keeps_it(tmp_path, monkeypatch, caplog):
    import logging

    P = _precision_module()
    monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    with caplog.at_level(logging.INFO, logger="aekit.train"):
        bf16 = aekit.train("vae", "digits", tmp_path / "r", epochs=1, **QUICK)
    assert "precision bf16 (auto: CPU with AVX-512 BF16, bf16 parity measured for --model vae" in caplog.text
    assert "--precision fp32 forces fp32" in caplog.text

    def recorded(run):
        return json.loads((tmp_path / run / "config.json").read_text())["train"]["precision"]

    assert recorded("r") == "bf16" and bf16.train_config.precision == "bf16"
    monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset())  # resumed on a CPU without bf16: still bf16
    resumed = aekit.train(resume=tmp_path / "r", epochs=2, report=False, progress=False)
    assert resumed.train_config.precision == "bf16" and recorded("r") == "bf16"
    fp32 = aekit.train("vae", "digits", tmp_path / "s", epochs=1, **QUICK)  # a new run here: fp32
    assert recorded("s") == "fp32"
    # the choice is applied: bf16 rounding changes the losses
    assert fp32.metrics[0]["train_loss"] != bf16.metrics[0]["train_loss"]
    assert fp32.metrics[0]["train_loss"] == pytest.approx(bf16.metrics[0]["train_loss"], rel=0.02)


@pytest.mark.parametrize("bf16", [False, True])
def test_a_run_written_before_precision_existed_keeps_its_arithmetic(tmp_path, bf16):
    aekit.train("vae", "digits", tmp_path / "r", epochs=1, **QUICK)
    path = tmp_path / "r" / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["train"]["precision"], cfg["train"]["checkpoint_every_s"]
    cfg["train"]["bf16"] = bf16
    path.write_text(json.dumps(cfg))
    assert aekit.load_run(tmp_path / "r").train_config.precision == ("bf16" if bf16 else "fp32")


def test_cli_bf16_flags_map_to_precision(tmp_path, capsys):
    from aekit.cli import main

    tiny = ["train", "--model", "vae", "--data", "digits", "--hidden", "8", "--latent-dim", "2", "--epochs", "1",
            "--no-report", "--no-progress", "-q"]
    assert main(["-q", *tiny[:-1], "--bf16", "--out", str(tmp_path / "a")]) == 0
    assert main(["-q", *tiny[:-1], "--no-bf16", "--out", str(tmp_path / "b")]) == 0
    for run, want in (("a", "bf16"), ("b", "fp32")):
        assert json.loads((tmp_path / run / "config.json").read_text())["train"]["precision"] == want
    capsys.readouterr()
    assert main(["-q", *tiny[:-1], "--no-bf16", "--precision", "bf16", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--no-bf16 and --precision bf16 contradict" in err
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_cli_channels_last_flags_map_to_memory_format(tmp_path, capsys):
    from aekit.cli import main

    tiny = ["train", "--model", "vae", "--data", "digits", "--arch", "conv", "--channels", "4", "--latent-dim", "2",
            "--epochs", "1", "--no-report", "--no-progress", "--device", "cpu"]
    for run, flags, want in (("a", ["--channels-last"], "channels_last"), ("b", ["--no-channels-last"], "nchw"),
                             ("c", [], "channels_last"), ("d", ["--memory-format", "nchw"], "nchw")):
        assert main(["-q", *tiny, *flags, "--out", str(tmp_path / run)]) == 0
        assert json.loads((tmp_path / run / "config.json").read_text())["train"]["memory_format"] == want
    capsys.readouterr()
    assert main(["-q", *tiny, "--no-channels-last", "--memory-format", "channels_last",
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--no-channels-last and --memory-format channels_last contradict" in err
    assert not (tmp_path / "e").exists()
    capsys.readouterr()
    assert main(["-q", "train", "--resume", str(tmp_path / "b"), "--channels-last"]) == 2  # resume keeps the layout
    assert "not --channels-last" in capsys.readouterr().err
    # a run's config.json as --config, with a flag over the file's alias: the flag wins, no contradiction
    assert main(["-q", "train", "--config", str(tmp_path / "a" / "config.json"), "--no-channels-last", "--epochs", "1",
                 "--no-report", "--no-progress", "--out", str(tmp_path / "f")]) == 0
    assert json.loads((tmp_path / "f" / "config.json").read_text())["train"]["memory_format"] == "nchw"


@pytest.mark.slow
def test_config_file_of_a_run_from_before_memory_format_reproduces_its_layout(tmp_path):
    from aekit.cli import main

    tiny = ["train", "--model", "vae", "--data", "digits", "--arch", "conv", "--channels", "4", "--latent-dim", "2",
            "--epochs", "1", "--no-report", "--no-progress", "--device", "cpu", "-q"]
    assert main([*tiny, "--out", str(tmp_path / "old")]) == 0
    path = tmp_path / "old" / "config.json"
    cfg = json.loads(path.read_text())
    for legacy, want in ((False, "nchw"), (True, "channels_last")):
        del cfg["train"]["memory_format"]
        cfg["train"]["channels_last"] = legacy
        path.write_text(json.dumps(cfg))
        cfg["train"]["memory_format"] = want
        assert aekit.load_run(tmp_path / "old").train_config.memory_format == want
        out = tmp_path / f"again-{want}"
        assert main(["-q", "train", "--config", str(path), "--out", str(out)]) == 0
        assert json.loads((out / "config.json").read_text())["train"]["memory_format"] == want


# ------------------------------------------------------------------------------------------- checkpoints


def _checkpoint_writes(monkeypatch):
    import importlib

    cb = importlib.import_module("aekit.train.callbacks")
    writes, real = [], cb.save_checkpoint

    def counting(path, model, opt, gen, loop):
        writes.append(loop["epoch"])
        real(path, model, opt, gen, loop)

    monkeypatch.setattr(cb, "save_checkpoint", counting)
    return writes


class _Clock:
    """A fake clock for the checkpoint interval: one second per finished epoch (a callback before the checkpoint)."""

    def __init__(self, monkeypatch):
        import importlib
        import types

        self.now = 0.0
        cb = importlib.import_module("aekit.train.callbacks")
        monkeypatch.setattr(cb, "time", types.SimpleNamespace(monotonic=lambda: self.now))

    def callback(self):
        clock = self

        class Tick(Callback):
            def on_epoch_end(self, trainer, row):
                clock.now += 1.0

        return Tick()


def test_checkpoint_on_an_interval_and_after_the_last_epoch(tmp_path, monkeypatch):
    writes = _checkpoint_writes(monkeypatch)
    aekit.train("vae", "digits", tmp_path / "a", epochs=3, **{**QUICK, "checkpoint_every_s": 3600})
    assert writes == [3]  # short epochs: only the end of training
    writes.clear()
    aekit.train("vae", "digits", tmp_path / "b", epochs=3, **QUICK)  # 0: every epoch
    assert writes == [1, 2, 3]
    writes.clear()
    clock = _Clock(monkeypatch)
    aekit.train("vae", "digits", tmp_path / "c", epochs=5, callbacks=[clock.callback()],
                **{**QUICK, "checkpoint_every_s": 2})
    assert writes == [2, 4, 5]
    writes.clear()
    aekit.train("vae", "digits", tmp_path / "d", epochs=6, **{**QUICK, "checkpoint_every_s": 3600,
                                                               "early_stopping": 1, "lr": 0.5})
    assert writes and writes[-1] == len(aekit.load_run(tmp_path / "d").metrics)  # stopped early: saved then


def test_killed_between_interval_checkpoints_resumes_to_identical_weights(tmp_path, monkeypatch):
    """The checkpoint is from epoch 2; the kill comes in epoch 4: the resume replays epoch 3 exactly."""
    opts = {**QUICK, "epochs": 5, "checkpoint_every_s": 2, "schedule": "cosine"}
    clock = _Clock(monkeypatch)
    aekit.train("vae", "digits", tmp_path / "full", callbacks=[clock.callback()], **opts)
    writes = _checkpoint_writes(monkeypatch)
    clock.now = 0.0

    def kill(epoch, index):
        if (epoch, index) == (3, 2):
            raise Kill

    with pytest.raises(Kill):
        aekit.train("vae", "digits", tmp_path / "killed", callbacks=[clock.callback(), LambdaCallback(kill)], **opts)
    assert writes == [2]
    from aekit.train.checkpoint import read_tensors

    _, meta = read_tensors(tmp_path / "killed" / "checkpoint.safetensors")
    assert json.loads(meta["loop"])["epoch"] == 2
    aekit.train(resume=tmp_path / "killed", report=False, progress=False)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [(tmp_path / r / "metrics.csv").read_text().splitlines() for r in ("full", "killed")]
    assert len(rows[0]) == len(rows[1]) == 6


def test_checkpoint_every_s_must_be_finite_and_not_negative():
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="--checkpoint-every-s must be a finite number ≥ 0"):
            TrainConfig(checkpoint_every_s=bad)


def test_divergence_names_the_epoch_of_the_checkpoint_on_disk_not_the_one_before(tmp_path):
    """With --checkpoint-every-s the checkpoint on disk can be several epochs old: the message reads its epoch."""
    import types

    from aekit.train.callbacks import DivergenceGuard
    from aekit.train.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    ckpt = tmp_path / "checkpoint.safetensors"
    save_checkpoint(ckpt, model, opt, torch.Generator(), {"epoch": 2, "step": 20})
    trainer = types.SimpleNamespace(cfg=types.SimpleNamespace(lr=1e-3))
    with pytest.raises(TrainingDiverged, match=r"at epoch 5 .*last good checkpoint \(epoch 2\)"):
        DivergenceGuard(ckpt)._fail(trainer, 5, "loss is nan")  # type: ignore[arg-type]


def test_precision_auto_keeps_a_measured_entry_to_its_measured_range(monkeypatch):
    from aekit.models import MODELS

    P = _precision_module()
    cpu = torch.device("cpu")
    monkeypatch.setattr(P, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))

    def cfg(**o):
        return MODELS["vae"].make_config({"likelihood": "bernoulli", **o}, name="vae")

    mnist = (1, 28, 28)
    assert P.choose_precision("auto", "vae", cpu, cfg(input_shape=mnist))[0] == "bf16"  # MLP
    assert P.choose_precision("auto", "vae", cpu, cfg(input_shape=mnist, arch="conv", channels="32,64"))[0] == "bf16"
    chosen, why = P.choose_precision("auto", "vae", cpu, cfg(input_shape=(1, 64, 64), arch="conv",
                                                           channels="32,32,64,64", conv_hidden="256"))
    assert chosen == "fp32" and "4-level conv VAE on 4,096-element inputs" in why and "failed parity" in why
    assert P.choose_precision("auto", "vae", cpu, cfg(input_shape=(1, 64, 64), arch="conv", channels="32,64"))[0] == "fp32"
    chosen, why = P.choose_precision("auto", "vae", cpu, cfg(input_shape=(1, 64, 64)))  # an MLP: not measured either
    assert chosen == "fp32" and "an MLP VAE on 4,096-element inputs" in why
    assert P.choose_precision("auto", "vae", cpu, cfg(input_shape=(3, 28, 28), arch="conv", channels="32,64"))[0] == "fp32"
    assert P.choose_precision("auto", "vae", cpu)[0] == "fp32"  # no config to check against the limits
    chosen, why = P.choose_precision("auto", "vae", cpu, cfg(input_shape=(20,), likelihood="gaussian"))  # a table
    assert chosen == "fp32" and "gaussian likelihood is outside the measured VAEs" in why
    ae = MODELS["ae"].make_config({"input_shape": mnist}, name="ae")
    assert P.choose_precision("auto", "ae", cpu, ae)[0] == "bf16"
    chosen, why = P.choose_precision("auto", "ae", cpu, MODELS["ae"].make_config({"input_shape": (3, 32, 32)}, name="ae"))
    assert chosen == "fp32" and "an MLP AE on 3,072-element inputs" in why
    assert P.choose_precision("bf16", "vae", cpu, cfg(input_shape=(1, 64, 64), arch="conv",
                                                      channels="32,32,64,64"))[0] == "bf16"  # forced


def test_memory_format_auto_is_channels_last_for_conv_models_on_a_cpu(tmp_path, caplog, monkeypatch):
    """auto: channels_last for a model with 2-D convolutions in fp32 on a CPU, nchw for an MLP, in bf16 and off a
    CPU (by design: mixed or not measured there); config.json records the choice, and a run without the field
    reads as nchw."""
    from aekit.data import DataShape
    from aekit.models import MODELS, build_model
    from aekit.train.memory_format import choose_memory_format

    def net(**o):
        return build_model("vae", MODELS["vae"].make_config({"latent_dim": 2, **o}).resolve(DataShape((1, 8, 8))))

    conv, mlp = net(arch="conv", channels=(4,)), net(hidden=(8,))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_memory_format("auto", conv, cpu)[0] == "channels_last"
    assert choose_memory_format("auto", mlp, cpu)[0] == "nchw"
    assert choose_memory_format("auto", conv, cuda)[0] == "nchw"
    assert choose_memory_format("nchw", conv, cpu)[0] == "nchw"
    assert choose_memory_format("auto", conv, cpu, "bf16")[0] == "nchw"  # mixed evidence in bf16
    assert choose_memory_format("channels_last", mlp, cpu, "bf16")[0] == "channels_last"  # asked: honoured
    opts = {k: v for k, v in {**QUICK, "hidden": None, "arch": "conv", "channels": "4,8", "epochs": 1,
                              "device": "cpu"}.items() if v is not None}
    with caplog.at_level("INFO", logger="aekit"):
        run = aekit.train("vae", "digits", tmp_path / "c", **opts)
    assert run.train_config.memory_format == "channels_last"
    assert "memory format channels_last (auto: 2-D convolutions in fp32 on a CPU" in caplog.text
    assert all(p.is_contiguous() for p in run.model.parameters())  # handed back in the default layout
    path = tmp_path / "c" / "config.json"
    cfg = json.loads(path.read_text())
    assert cfg["train"]["memory_format"] == "channels_last"
    assert aekit.train("vae", "digits", tmp_path / "m", **{**QUICK, "epochs": 1}).train_config.memory_format == "nchw"
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")  # not measured on ARM: NCHW
    assert choose_memory_format("auto", conv, cpu)[0] == "nchw"
    del cfg["train"]["memory_format"]  # a run written before --memory-format: NCHW, and it resumes so
    path.write_text(json.dumps(cfg))
    assert aekit.train(resume=tmp_path / "c", epochs=2).train_config.memory_format == "nchw"


def test_channels_last_and_nchw_contradict():
    from aekit.errors import ConfigError
    from aekit.train.config import TrainConfig

    with pytest.raises(ConfigError, match="contradict"):
        TrainConfig(channels_last=True, memory_format="nchw")
