"""The CLI end to end on digits, and every bad input → one line on stderr, exit 2, no traceback."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from aekit.cli import main

FAST = ["--hidden", "32", "--latent-dim", "2", "--epochs", "2", "--batch-size", "64", "--no-progress"]


def cli(*args, cwd=None):
    """Run `python -m aekit ARGS` in a subprocess (a real new user's invocation)."""
    return subprocess.run([sys.executable, "-m", "aekit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "vae"
    assert main(["-q", "train", "--model", "vae", "--data", "digits", "--out", str(out), *FAST]) == 0
    return out


def test_train_writes_report_and_evaluate_json(vae_run):
    names = {p.name for p in vae_run.iterdir()}
    assert {"config.json", "model.safetensors", "metrics.csv", "report.html", "evaluation.json"} <= names
    r = cli("evaluate", vae_run, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("n", "split", "sse_per_image", "mse", "elbo", "recon", "kl"):
        assert key in out
    assert out["split"] == "test" and out["elbo"] < 0
    assert out["mse"] == pytest.approx(out["sse_per_image"] / 64)
    assert out["elbo"] == pytest.approx(-(out["recon"] + out["kl"]))


def test_generation_commands(vae_run, tmp_path):
    assert main(["-q", "sample", str(vae_run), "-n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["-q", "reconstruct", str(vae_run), "--out", str(tmp_path / "r.png")]) == 0
    assert main(["-q", "interpolate", str(vae_run), "--a", "0", "--b", "5", "--spherical",
                 "--out", str(tmp_path / "i.png")]) == 0
    for f in ("s.png", "r.png", "i.png"):
        assert Image.open(tmp_path / f).size[0] > 50
    assert main(["-q", "sample", str(vae_run), "-n", "3", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (3, 1, 8, 8)


def test_encode_npy_and_csv(vae_run, tmp_path):
    assert main(["-q", "encode", str(vae_run), "--out", str(tmp_path / "c.npy")]) == 0
    codes = np.load(tmp_path / "c.npy")
    assert codes.shape == (359, 2)
    assert main(["-q", "encode", str(vae_run), "--split", "val", "--out", str(tmp_path / "c.csv")]) == 0
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "z0,z1,label" and len(lines) == 1 + 144


def test_models_and_datasets_listing(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "vae" in out and "pca" in out
    assert main(["datasets"]) == 0
    assert "digits" in capsys.readouterr().out


BAD = [
    (["train", "--model", "vea", "--out", "{tmp}/r"], "unknown model 'vea': did you mean 'vae'?"),
    (["train", "--data", "digitz", "--out", "{tmp}/r"], "unknown dataset 'digitz'"),
    (["train", "--model", "ae", "--beta", "4", "--out", "{tmp}/r"], "unknown option --beta for --model ae"),
    (["train", "--latent-dim", "many", "--out", "{tmp}/r"], "expected an integer"),
    (["train", "--likelihood", "poisson", "--out", "{tmp}/r"], "is not one of"),
    (["train", "--data", "idx:{tmp}/nowhere", "--out", "{tmp}/r"], ""),
    (["train", "--frobnicate", "3", "--out", "{tmp}/r"], "unrecognized arguments"),
    (["train", "--data", "digits"], "needs --out"),
    (["evaluate", "{tmp}/nothing"], "does not exist"),
    (["train", "--model", "ae", "--tied", "--arch", "conv", "--out", "{tmp}/r"], "--tied works with --arch mlp"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_one_line_exit_2(tmp_path, args, message):
    r = cli(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr
    assert len(err.splitlines()) == 1, err
    assert err.startswith("aekit: error:") and message in err
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_evaluate_with_other_data_of_wrong_shape(vae_run, tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, size=(30, 1, 5, 5), dtype=np.uint8)
    np.save(tmp_path / "x.npy", arr)
    r = cli("evaluate", vae_run, "--data", f"npy:{tmp_path / 'x.npy'}")
    assert r.returncode == 2 and "expects (1, 8, 8)" in r.stderr and "Traceback" not in r.stderr


def test_resume_cli_continues_to_more_epochs(vae_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(vae_run, run)
    assert main(["-q", "train", "--resume", str(run), "--epochs", "3"]) == 0
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3
