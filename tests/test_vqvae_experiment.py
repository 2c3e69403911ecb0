"""``aekit experiment vqvae``'s summary: its sentences follow its numbers (claims hold, fail, or too short)."""

from __future__ import annotations

from pathlib import Path

from aekit.experiments import ExperimentContext
from aekit.experiments.vae_geometry import compare
from aekit.experiments.vqvae import VqvaeExperimentConfig, vqvae_summary


def _numbers(perplexity: float, dead: int, fid_q: float = 40.0, fid_a: float = 80.0):
    k = 128
    r = {"vqvae": {"test_sse_per_image": 9.0, "test_sse_se": 0.05, "sample_fid": fid_q, "sample_fid_se": 1.0,
                   "train_seconds": 300.0, "code_capacity_bits": 343.0},
         "vae": {"test_sse_per_image": 20.0, "test_sse_se": 0.1, "sample_fid": fid_a, "sample_fid_se": 1.0,
                 "train_seconds": 250.0, "test_kl_bits": 25.35}}
    cb = {"codebook_perplexity": perplexity, "codebook_usage": (k - dead) / k, "dead_codes": dead,
          "prior_nll": 200.0, "prior_bits_per_code": 200.0 / (49 * 0.6931)}
    v_fid = compare(fid_q, fid_a, 1.0, 1.0)
    v_sse = compare(9.0, 20.0, 0.05, 0.1)
    return r, cb, v_fid, v_sse


def _summary(quick: bool, steps: int, **numbers):
    ctx = ExperimentContext("fashion-mnist", Path("/nonexistent"), quick=quick)
    r, cb, v_fid, v_sse = _numbers(**numbers)
    return vqvae_summary(ctx, VqvaeExperimentConfig(), "fashion-mnist", r, cb, 0.3, 0.9, v_fid, v_sse, steps, 60.0)


def test_claims_hold_with_their_thresholds():
    text = _summary(False, 3440, perplexity=64.0, dead=0)
    assert "The codebook is well used: perplexity 64.0 = 50% of K (threshold 25%)" in text
    assert "No code is unused on the test set: 0 of 128 codes unused (threshold 0)" in text
    assert "the VQ-VAE's prior samples have the lower domain FID" in text
    assert "the VQ-VAE reconstructs better" in text


def test_the_summary_names_the_different_bottlenecks():
    text = _summary(False, 3440, perplexity=64.0, dead=0)
    assert "the same conv stack (channels 32,64, stride 2" in text and "different bottlenecks" in text
    assert "the same conv encoder" not in text
    assert "(VQ-VAE; its code holds at most 343 bits per image, h·w·log₂K)" in text
    assert "(VAE; test KL 25.4 bits per image" in text


def test_claims_fail_when_the_numbers_say_so():
    text = _summary(False, 3440, perplexity=20.0, dead=3, fid_q=80.0, fid_a=79.0)
    assert "The codebook is poorly used: perplexity 20.0 = 16% of K (threshold 25%)" in text
    assert "Some codes are unused on the test set: 3 of 128 codes unused" in text
    assert "prior samples' FIDs tie" in text
    assert "well used" not in text


def test_a_short_run_is_too_short_to_tell():
    for quick, steps in ((True, 3440), (False, 100)):
        text = _summary(quick, steps, perplexity=64.0, dead=0)
        assert "too short to tell whether the codebook is well used" in text
        assert "too short to tell whether no code is unused" in text
        assert "no verdict" in text
