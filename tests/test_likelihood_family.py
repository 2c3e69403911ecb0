"""``iwae-vs-vae`` and ``wae-vs-vae``: the verdict rules on hand-made numbers (including numbers that contradict
each claim) and the ``--quick`` runs end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aekit.experiments import ExperimentContext, run_experiment
from aekit.experiments.likelihood_family import (
    IwaeVsVaeConfig,
    WaeVsVaeConfig,
    fid_verdict,
    fid_with_se,
    iwae_summary,
    likelihood_verdict,
    reconstruct_all,
    wae_summary,
)


def test_likelihood_verdict_is_paired_and_can_go_either_way():
    # every image 1 nat better under the IWAE model: the paired SE is 0 although the NLLs vary by 10 nats
    v = likelihood_verdict(np.array([80.0, 90.0, 100.0]), np.array([79.0, 89.0, 99.0]))
    assert v["verdict"] == "iwae" and v["diff"] == pytest.approx(1.0) and v["se"] == pytest.approx(0.0)
    # contradicting numbers: the ELBO model is better by 1, 1.1, 0.9 nats (mean −1, sd 0.1, se 0.1/√3)
    v = likelihood_verdict(np.array([79.0, 88.9, 99.1]), np.array([80.0, 90.0, 100.0]))
    assert v["verdict"] == "elbo" and v["diff"] == pytest.approx(-1.0)
    assert v["se"] == pytest.approx(0.1 / math.sqrt(3)) and v["threshold"] == pytest.approx(0.2 / math.sqrt(3))
    # differences +1, −1, +1, −1 + 0.4: mean 0.1, sd ≈ 0.94, se ≈ 0.47 → within 2 SE: a tie
    v = likelihood_verdict(np.array([1.0, 0.0, 1.0, 0.4]), np.array([0.0, 1.0, 0.0, 1.0]))
    assert v["verdict"] == "tie" and v["diff"] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        likelihood_verdict(np.zeros(3), np.zeros(4))


def _iwae_rows(nll_elbo: float, nll_iwae: float) -> list[dict]:
    base = {"test_iwae_nll_se": 1.0, "test_elbo": -250.0, "active_units": 20, "train_seconds": 1.0,
            "eval_seconds": 1.0}
    return [{**base, "test_iwae_nll": nll_elbo}, {**base, "test_iwae_nll": nll_iwae}]


@pytest.mark.parametrize(("elbo_nll", "iwae_nll", "words"), [
    ((240.0, 241.0, 239.0), (239.0, 240.0, 238.0), "The IWAE-trained model has the lower IWAE NLL: "),
    ((239.0, 240.0, 238.1), (240.0, 241.0, 239.0), "The claim is contradicted: the ELBO-trained model"),
    ((240.0, 239.0, 240.0), (239.0, 240.0, 240.0), "do not differ by more than the threshold"),
])
def test_iwae_summary_states_the_verdict_of_its_numbers(tmp_path, elbo_nll, iwae_nll, words):
    ctx = ExperimentContext(data="fashion-mnist", out=tmp_path)
    v = likelihood_verdict(np.array(elbo_nll), np.array(iwae_nll))
    rows = _iwae_rows(float(np.mean(elbo_nll)), float(np.mean(iwae_nll)))
    text = iwae_summary(ctx, IwaeVsVaeConfig(), "fashion-mnist", rows, v, 22000, 10.0, 10000, 784)
    assert words in text and "784-200-200-50" in text
    # too few steps: never a verdict, whatever the numbers
    short = iwae_summary(ctx, IwaeVsVaeConfig(), "fashion-mnist", rows, v, 100, 10.0, 10000, 784)
    assert "too short to tell" in short and "contradicted" not in short and "The IWAE-trained model has" not in short


def test_fid_verdict_and_bootstrap():
    assert fid_verdict(50.0, 63.0, 1.0, 1.0)["verdict"] == "WAE"  # 13 > max(6.3, 2·√2)
    assert fid_verdict(80.0, 63.0, 1.0, 1.0)["verdict"] == "VAE"  # contradicting numbers
    assert fid_verdict(60.0, 63.0, 1.0, 1.0)["verdict"] == "tie"  # 3 < 6.3
    assert fid_verdict(50.0, 63.0, 5.0, 5.0)["verdict"] == "tie"  # 13 < 2·√50 ≈ 14.1
    feats = np.random.default_rng(0).normal(size=(400, 3))
    real = (feats.mean(0), np.cov(feats, rowvar=False))
    fid, se = fid_with_se(feats, real, 5, 0)
    assert fid == pytest.approx(0.0, abs=1e-9) and 0 < se < 0.1


def test_reconstruct_all_sends_batches_to_the_model_device():
    import torch

    class OnMeta:  # a model on another device: its input must arrive there (a CPU tensor would fail on CUDA)
        device = torch.device("meta")
        seen: list[torch.device] = []

        def reconstruct(self, x):
            self.seen.append(x.device)
            return torch.full(x.shape, 2.0)  # (a stand-in output on the CPU: meta tensors hold no data)

    m = OnMeta()
    out = reconstruct_all(m, torch.zeros(5, 1, 2, 2, dtype=torch.uint8), batch_size=2)
    assert m.seen == [torch.device("meta")] * 3  # batches of 2, 2, 1
    assert out.shape == (5, 1, 2, 2) and out.device.type == "cpu" and float(out.max()) == 1.0  # clamped


def test_wae_summary_states_the_verdict_of_its_numbers(tmp_path):
    ctx = ExperimentContext(data="fashion-mnist", out=tmp_path)

    def result(fid: float) -> dict:
        return {"sample_fid": fid, "sample_fid_se": 0.5, "recon_fid": 5.0, "recon_fid_se": 0.1,
                "test_sse_per_image": 10.0, "train_seconds": 1.0}

    for wae, vae, words in ((50.0, 63.0, "The WAE's prior samples have the lower domain FID: "),
                            (80.0, 63.0, "The claim is contradicted: the VAE's prior samples"),
                            (62.0, 63.0, "tie under the threshold")):
        r = {"wae": result(wae), "vae": result(vae)}
        v = fid_verdict(wae, vae, 0.5, 0.5)
        v_rec = fid_verdict(5.0, 5.0, 0.1, 0.1)
        text = wae_summary(ctx, WaeVsVaeConfig(), "fashion-mnist", r, 1.0, 0.9, v, v_rec, 11000, 1.0)
        assert words in text
    # a weak classifier: too short to tell, even with the WAE ahead
    r = {"wae": result(50.0), "vae": result(63.0)}
    text = wae_summary(ctx, WaeVsVaeConfig(), "fashion-mnist", r, 1.0, 0.5, fid_verdict(50.0, 63.0, 0.5, 0.5),
                       v_rec, 11000, 1.0)
    assert "too short to tell" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["iwae-vs-vae", "wae-vs-vae"])
def test_quick_runs_end_to_end(tmp_path, name):
    ctx = ExperimentContext(data="digits", out=tmp_path / name, quick=True, progress=False)
    result = run_experiment(name, ctx)
    assert (tmp_path / name / "summary.md").exists() and (tmp_path / name / "results.csv").exists()
    assert "too short to tell" in result.summary and "Wall time" in result.summary
    if name == "iwae-vs-vae":
        assert [r["objective"] for r in result.rows] == ["ELBO (k = 1)", "IWAE (k = 5)"]
        assert all(r["test_iwae_nll"] > 0 and r["eval_rows"] == 64 for r in result.rows)
        assert result.extra["verdict"]["n"] == 64
    else:
        assert [r["model"] for r in result.rows] == ["real training images", "WAE", "VAE"]
        assert all(r["sample_fid"] >= 0 for r in result.rows)
        assert set(result.figures) == {"samples_wae.png", "reconstructions_wae.png", "samples_vae.png",
                                       "reconstructions_vae.png"}


def test_contractive_validation_choice_and_its_note():
    from aekit.experiments.contractive import _choice_note, pick_lambda

    def rows(vals: list[float]) -> list[dict]:
        return [{"lambda": lam, "val_sse_per_image": v, "test_sse_per_image": v, "test_jacobian_sq_frobenius": 20 / (1 + 10 * lam)}
                for lam, v in zip((0.0, 0.01, 0.03, 0.1), vals)]

    # the digits' numbers of session 17: 0.5751 ≤ 1.1 · 0.5572 = 0.61292 < 0.6138
    r = rows([0.5572, 0.5751, 0.6138, 0.7622])
    assert pick_lambda(r, 0.10) == 0.01
    note = _choice_note(r, 0.01, 0.10)
    assert "‖J‖²_F is 91% of λ = 0's" in note and "0.6138 against the limit 0.6129" in note
    assert _choice_note(r[::-1], 0.01, 0.10) == note  # the λ = 0 row and the next λ found in any row order
    # every λ > 0 over the tolerance: the rule picks 0 and says that it gives no default
    r = rows([0.5, 0.56, 0.6, 0.7])
    assert pick_lambda(r, 0.10) == 0.0
    assert "no penalty passes the rule" in _choice_note(r, 0.0, 0.10)
