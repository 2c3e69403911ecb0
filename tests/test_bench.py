"""benchmarks/bench.py works end to end on tiny stand-ins (a check of the machinery, not of any speed), and it
is a script of the repository, not part of the installed package."""

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from aekit.data import DataConfig, make_dataset
from aekit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("aekit_benchmarks_bench", ROOT / "benchmarks" / "bench.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)


def test_not_in_the_package_and_runs_as_a_script_from_the_repo_root():
    assert importlib.util.find_spec("aekit.bench") is None
    r = subprocess.run([sys.executable, "benchmarks/bench.py", "train", "--help"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "--cases" in r.stdout and "python benchmarks/bench.py train" in r.stdout
    r = subprocess.run([sys.executable, "benchmarks/bench.py", "train", "--smoke", "--cases", "nope"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown benchmark case 'nope'" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.slow
def test_train_suite_smoke(tmp_path):
    impls = "reference,aekit" + (",pythae" if bench.pythae_available() else "")
    assert bench.main(["-q", "train", "--smoke", "--inprocess", "--repeats", "1", "--cases", "mlp-vae,unet",
                       "--impls", impls, "--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "r.md")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["gemm_fp32_flops"] > 0
    for case in ("mlp-vae", "unet"):
        rows = {r["impl"]: r for r in report["cases"][case]["rows"]}
        assert "reference" in rows and "aekit" in rows and rows["reference"]["vs_reference"] == pytest.approx(1.0)
        for r in rows.values():
            assert r["samples_per_s"] > 0 and r["test_loss"] > 0 and r["peak_rss_mb"] > 0 and 0 < r["bound_fraction"]
    assert ("pythae" in {r["impl"] for r in report["cases"]["mlp-vae"]["rows"]}) == bench.pythae_available()
    md = (tmp_path / "r.md").read_text()
    assert "`python benchmarks/bench.py train --smoke --cases mlp-vae`" in md and "| aekit trainer |" in md
    assert report["command"].startswith("python benchmarks/bench.py train --smoke --inprocess")


@pytest.mark.slow
def test_levers_smoke(tmp_path):
    assert bench.main(["-q", "levers", "--smoke", "--inprocess", "--repeats", "1", "--cases", "conv-vae",
                       "--impls", "reference+resident+flush+fused+logits+channels_last,aekit+bf16",
                       "--json", str(tmp_path / "l.json")]) == 0
    rows = json.loads((tmp_path / "l.json").read_text())["cases"]["conv-vae"]["rows"]
    assert [r["impl"] for r in rows] == ["reference+resident+flush+fused+logits+channels_last", "aekit+bf16"]


@pytest.mark.slow
def test_stream_suite_smoke(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the children's run directories go
    assert bench.main(["-q", "stream", "--size", "3MB", "--budget", "1MB", "--skip-whole", "--path",
                       str(tmp_path / "big.npy"), "--json", str(tmp_path / "s.json")]) == 0
    r = json.loads((tmp_path / "s.json").read_text())
    assert r["streamed_rss_mb"] > 0 and r["footprint_rss_mb"] > 0 and r["streamed_samples_per_s"] > 0
    assert list(scratch.iterdir()) == []  # nothing left behind in the temp directory


def test_flop_count_and_impl_names():
    # pytorch/examples' VAE: 2·(784·400 + 400·40 + 20·400 + 400·784) forward, about twice that backward
    x = np.random.default_rng(0).integers(0, 256, size=(300, 28, 28), dtype=np.uint8)
    f = bench.matmul_flops_per_sample(bench.get_case("mlp-vae"),
                                      data=make_dataset("x", "image", DataConfig("x"), x, None))
    fwd = 2 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784)
    assert 2.5 * fwd < f < 3.1 * fwd
    assert bench.parse_impl("reference+resident+flush") == ("reference", frozenset({"resident", "flush"}))
    assert all(bench.parse_impl(i) for i in bench.LEVER_LADDER)
    with pytest.raises(ConfigError, match="unknown implementation"):
        bench.parse_impl("keras")


def test_device_option_and_aekit_levers():
    assert bench.parse_impl("aekit+fp32") == ("aekit", frozenset({"fp32"}))
    assert bench.parse_impl("aekit+bf16+compile+channels_last")[1] == {"bf16", "compile", "channels_last"}
    for bad in ("aekit+fp32+bf16", "aekit+resident", "reference+fp32"):
        with pytest.raises(ConfigError):
            bench.parse_impl(bad)
    args = bench.build_parser().parse_args(["train", "--device", "cuda", "--smoke"])
    assert args.device == "cuda"
    if not __import__("torch").cuda.is_available():
        r = subprocess.run([sys.executable, "benchmarks/bench.py", "train", "--smoke", "--device", "cuda"], cwd=ROOT,
                           capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no CUDA GPU is visible" in r.stderr


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_train_suite_on_cuda_runs_every_case(tmp_path):
    assert bench.main(["-q", "train", "--smoke", "--inprocess", "--repeats", "1", "--device", "cuda",
                       "--impls", "reference,reference+resident,aekit,aekit+bf16", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["cases"]) == set(bench.CASES) and report["machine"]["gpu"]
    for case in report["cases"].values():
        assert all(r["samples_per_s"] > 0 and r["test_loss"] > 0 for r in case["rows"])


@pytest.mark.slow
def test_parity_script_smoke(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        parity = importlib.import_module("parity")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert parity.main(["--smoke", "--inprocess", "--cases", "mlp-vae"]) == 0
    out = capsys.readouterr().out
    assert "| MLP VAE 784-400-20" in out and "| holds |" in out
    assert parity.main(["--smoke", "--cases", "nope"]) == 2


@pytest.mark.slow
def test_plain_loop_runs_on_idx_files(tmp_path):
    """The process-to-process reference of the whole job reads gzip IDX files itself (no aekit import)."""
    import gzip

    rng = np.random.default_rng(0)
    for name, n in (("train-images-idx3-ubyte", 300), ("t10k-images-idx3-ubyte", 50)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in x.shape)
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(header + x.tobytes()))
    r = subprocess.run([sys.executable, "benchmarks/plain_loop.py", "--epochs", "1", "--val", "50", "--data-dir",
                        str(tmp_path), "--out", str(tmp_path / "w.pt")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[0]["epoch"] == 1 and lines[0]["val_loss"] > 0 and lines[-1]["test_loss"] > 0
    assert (tmp_path / "w.pt").exists()
    src = (ROOT / "benchmarks" / "plain_loop.py").read_text()
    assert "import aekit" not in src and "from aekit" not in src


@pytest.mark.slow
def test_bf16_step_script_times_both_precisions():
    import re

    r = subprocess.run([sys.executable, "benchmarks/bf16_step.py", "--steps", "1"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.match(r"bf16 native: (True|False) \(", lines[0])
    timed = [ln for ln in lines if re.search(r"fp32 [\d.]+ ms/step, bf16 [\d.]+ ms/step, bf16/fp32 [\d.]+×$", ln)]
    assert [ln.split(":")[0] for ln in timed] == ["mlp-vae 784-400-20", "dsprites conv vae"]


@pytest.mark.slow
def test_conv_levers_script_times_every_setting():
    r = subprocess.run([sys.executable, "benchmarks/conv_levers.py", "--steps", "1"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    timed = [ln for ln in r.stdout.splitlines() if ln.endswith("samples/s")]
    assert len(timed) == 8 and sum("oneDNN off, channels_last on" in ln for ln in timed) == 2
