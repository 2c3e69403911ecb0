"""`aekit bench` works end to end on tiny stand-ins (a check of the machinery, not of any speed)."""

import json
import tempfile

import numpy as np
import pytest

from aekit.bench import LEVER_LADDER, get_case, matmul_flops_per_sample, parse_impl, pythae_available
from aekit.cli import main
from aekit.data import DataConfig, make_dataset
from aekit.errors import ConfigError


def test_train_suite_smoke(tmp_path):
    impls = "reference,aekit" + (",pythae" if pythae_available() else "")
    assert main(["-q", "bench", "train", "--smoke", "--inprocess", "--repeats", "1", "--cases", "mlp-vae,unet",
                 "--impls", impls, "--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "r.md")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["gemm_fp32_flops"] > 0
    for case in ("mlp-vae", "unet"):
        rows = {r["impl"]: r for r in report["cases"][case]["rows"]}
        assert "reference" in rows and "aekit" in rows and rows["reference"]["vs_reference"] == pytest.approx(1.0)
        for r in rows.values():
            assert r["samples_per_s"] > 0 and r["test_loss"] > 0 and r["peak_rss_mb"] > 0 and 0 < r["bound_fraction"]
    assert ("pythae" in {r["impl"] for r in report["cases"]["mlp-vae"]["rows"]}) == pythae_available()
    md = (tmp_path / "r.md").read_text()
    assert "aekit bench train --smoke --cases mlp-vae" in md and "| aekit trainer |" in md


def test_levers_smoke(tmp_path):
    assert main(["-q", "bench", "levers", "--smoke", "--inprocess", "--repeats", "1", "--cases", "conv-vae",
                 "--impls", "reference+resident+flush+fused+logits+channels_last,aekit+bf16",
                 "--json", str(tmp_path / "l.json")]) == 0
    rows = json.loads((tmp_path / "l.json").read_text())["cases"]["conv-vae"]["rows"]
    assert [r["impl"] for r in rows] == ["reference+resident+flush+fused+logits+channels_last", "aekit+bf16"]


def test_stream_suite_smoke(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the children's run directories go
    assert main(["-q", "bench", "stream", "--size", "3MB", "--budget", "1MB", "--skip-whole", "--path",
                 str(tmp_path / "big.npy"), "--json", str(tmp_path / "s.json")]) == 0
    r = json.loads((tmp_path / "s.json").read_text())
    assert r["streamed_rss_mb"] > 0 and r["footprint_rss_mb"] > 0 and r["streamed_samples_per_s"] > 0
    assert list(scratch.iterdir()) == []  # nothing left behind in the temp directory


def test_flop_count_and_impl_names():
    # pytorch/examples' VAE: 2·(784·400 + 400·40 + 20·400 + 400·784) forward, about twice that backward
    x = np.random.default_rng(0).integers(0, 256, size=(300, 28, 28), dtype=np.uint8)
    f = matmul_flops_per_sample(get_case("mlp-vae"), data=make_dataset("x", "image", DataConfig("x"), x, None))
    fwd = 2 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784)
    assert 2.5 * fwd < f < 3.1 * fwd
    assert parse_impl("reference+resident+flush") == ("reference", frozenset({"resident", "flush"}))
    assert all(parse_impl(i) for i in LEVER_LADDER)
    with pytest.raises(ConfigError, match="unknown implementation"):
        parse_impl("keras")
