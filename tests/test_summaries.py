"""Experiment summaries follow from their numbers: every sentence that states a finding is built by
``aekit.experiments.finding`` from the numbers and a stated threshold; numbers that contradict the finding give
its negation, and a run too short to show it says so.  Synthetic numbers, no training."""

from __future__ import annotations

import re

import pytest

from aekit.experiments import ExperimentContext, finding, too_short
from aekit.experiments.anomaly import one_class_summary
from aekit.experiments.seed_family import (
    code_size_summary,
    denoising_summary,
    pca_vs_ae_summary,
    sparsity_summary,
    stacked_summary,
)
from aekit.experiments.segmentation import SkipConfig, skip_summary


def stated(summary: str, claim: str) -> bool:
    """Whether ``summary`` has a sentence that states ``claim`` (a sentence beginning with it)."""
    claim = claim[:1].upper() + claim[1:]
    return re.search(r"(^|  |\n)" + re.escape(claim), summary) is not None


SHORT = "a --quick smoke run"


def test_finding_states_negates_or_says_too_short():
    assert finding("x holds", True, "1 (threshold 2)", negation="x fails") == "X holds: 1 (threshold 2)."
    assert finding("x holds", False, "3 (threshold 2)", negation="x fails") == "X fails: 3 (threshold 2)."
    short = finding("x holds", False, "3 (threshold 2)", negation="x fails", short=SHORT)
    assert short == f"This run ({SHORT}) is too short to tell whether x holds: 3 (threshold 2)."
    assert finding("x holds", True, "1", negation="x fails", short=SHORT) == "X holds: 1."  # shown: stated


def test_too_short(tmp_path):
    assert too_short(ExperimentContext("digits", tmp_path, quick=True), 10**6) == SHORT
    ctx = ExperimentContext("digits", tmp_path)
    assert too_short(ctx, 5000) == "" and too_short(ctx, None) == ""
    assert too_short(ctx, 220) == "220 optimiser steps, fewer than the 5,000 the finding needs"
    assert too_short(ctx, 3, 20, "epochs") == "3 epochs, fewer than the 20 the finding needs"


SPANS = "the linear AE's decoder spans PCA's subspace"
MATCHES = "the linear AE reaches PCA's error"


def _pca(lin: float, angles: list[float], short: str = "") -> str:
    return pca_vs_ae_summary("digits", 359, 8, 64, "64-82-41-20-8", 1.539, lin, 1.844, angles, short)


def test_pca_vs_ae_summary():
    converged = _pca(1.540, [0.01, 0.05, 0.08])
    assert stated(converged, SPANS) and stated(converged, MATCHES) and "largest principal angle 0.1°" in converged
    # the quick run: 56.3° must not read as "spans"
    contra = _pca(1.554, [0.1, 0.2, 56.3])
    assert not stated(contra, SPANS) and stated(contra, "the linear AE's decoder does not span PCA's subspace")
    assert "56.3° (threshold 5°" in contra
    assert stated(contra, MATCHES)  # +0.9%: within ±3%
    quick = _pca(1.7, [0.1, 56.3], SHORT)
    assert not stated(quick, SPANS) and not stated(quick, MATCHES)
    assert quick.count("is too short to tell whether") == 2 and "does not" not in quick
    assert stated(_pca(1.7, [0.1, 56.3]), "the linear AE does not reach PCA's error")  # +10.5%


def _rows(pca: list[float], ae: list[float], ks: list[int]) -> list[dict]:
    return [{"code_size": k, "pca_test_sse_per_image": p, "ae_test_sse_per_image": a, "ae_over_pca": a / max(p, 1e-12)}
            for k, p, a in zip(ks, pca, ae)]


IDENTITY = "the AE approaches the identity"
PLATEAU = "the code stops being what limits the AE"


def test_code_size_summary():
    ks = [2, 8, 32, 64]
    good = code_size_summary("digits", 64, _rows([20, 8, 2, 0.0], [10, 1.0, 0.21, 0.2], ks), 20)
    assert stated(good, "PCA is exact") and stated(good, IDENTITY)
    assert stated(good, PLATEAU + " from code size 32 on")  # 0.21 and 0.2: within 10% of the lowest
    # the README's Fashion-MNIST shape: the AE flattens out far above 0 and never nears the identity
    flat = code_size_summary("fm", 784, _rows([36, 12, 8, 0.0], [20, 6.88, 6.74, 7.05], [2, 32, 64, 784]), 10)
    assert not stated(flat, IDENTITY) and stated(flat, "the AE does not reach the identity at code size 784 in 10 epochs")
    assert stated(flat, PLATEAU + " from code size 32 on")
    falling = code_size_summary("digits", 64, _rows([20, 8, 2, 0.5], [10, 5, 2, 1], ks), 6)
    assert stated(falling, "PCA is not exact") and not stated(falling, "PCA is exact")
    assert not stated(falling, PLATEAU) and stated(falling, "the AE's error does not settle")
    quick = code_size_summary("digits", 64, _rows([20, 8, 2, 0.0], [10, 5, 2, 1], ks), 6, SHORT)
    assert stated(quick, "PCA is exact")  # no training: never "too short"
    assert not stated(quick, IDENTITY) and quick.count("too short to tell") == 2
    partial = code_size_summary("digits", 64, _rows([20, 8], [10, 5], [2, 8]), 6)
    assert "no test of the identity" in partial and not stated(partial, "PCA is exact")


@pytest.mark.parametrize("shape", ["rising", "bumpy", "flat"])
def test_sparsity_summary(shape):
    inact = {"rising": [0.35, 0.44, 0.97], "bumpy": [0.35, 0.30, 0.97], "flat": [0.4, 0.4, 0.4]}[shape]
    l1 = [{"lambda": lam, "fraction_inactive": f, "dead_units": 0, "test_sse_per_image": e}
          for lam, f, e in zip([1.0, 0.0, 0.1], [inact[2], inact[0], inact[1]], [19.0, 4.3, 5.4])]  # unsorted
    s = sparsity_summary("digits", 64, l1, [], 1.0)
    claim = "the share of inactive activations rises with the L1 weight"
    assert stated(s, claim) == (shape == "rising")
    assert stated(s, "the share of inactive activations does not rise steadily") == (shape != "rising")
    assert stated(s, "the test error rises with the L1 weight") and "λ goes 0 → 0.1 → 1" in s
    short = sparsity_summary("digits", 64, l1, [], 1.0, SHORT)
    assert stated(short, claim) == (shape == "rising") and ("too short to tell" in short) == (shape != "rising")


STACKED = "greedy pretraining + fine-tuning beats training from scratch"


def test_stacked_summary():
    stages = [{"stage": "pretrain-1", "train_recon": 1.0, "val_recon": 1.1}]
    assert stated(stacked_summary("fm", "784-30", "sigmoid", 40, 20, [14.96, 6.59, 18.77], stages), STACKED)
    tie = stacked_summary("digits", "64-8", "sigmoid", 12, 4, [6.657, 4.729, 4.709], stages)  # the quick run
    assert not stated(tie, STACKED) and stated(tie, "neither greedy pretraining") and "0.4% higher" in tie
    worse = stacked_summary("digits", "64-8", "sigmoid", 12, 4, [6.0, 5.0, 4.0], stages)
    assert stated(worse, "training from scratch beats greedy pretraining")
    short = stacked_summary("digits", "64-8", "sigmoid", 12, 4, [6.0, 5.0, 4.0], stages, SHORT)
    assert not stated(short, "training from scratch beats") and "too short to tell" in short


def test_denoising_summary():
    rows = [{"corruption": c, "ae_sse_corrupted": a, "dae_sse_corrupted": b, "improvement_pct": 100 * (1 - b / a),
             "dae_sse_clean": 2.6} for c, a, b in [("mask:0.25", 18.13, 8.45), ("gaussian:0.1", 2.565, 2.609),
                                                   ("salt-pepper:0.1", 3.0, 2.9)]]
    s = denoising_summary("digits", "64-8", 20, rows, 2.5)
    assert stated(s, "training on mask:0.25 lowers the error on mask:0.25 inputs") and "(-53.4%" in s
    assert stated(s, "training on gaussian:0.1 does not lower")  # +2%
    assert stated(s, "training on salt-pepper:0.1 does not lower")  # −3%: under the 5% threshold
    short = denoising_summary("digits", "64-8", 5, rows, 2.5, SHORT)
    assert not stated(short, "training on gaussian:0.1") and short.count("too short to tell") == 2


def test_one_class_summary():
    clear = one_class_summary("digits", 10, 359, 2, {"pca": 0.95, "ae": 0.90, "vae": 0.80, "vae_recon": 0.85})
    assert stated(clear, "PCA detects best") and "leads AE by 0.050" in clear
    close = one_class_summary("digits", 10, 359, 2, {"pca": 0.950, "ae": 0.946, "vae": 0.8, "vae_recon": 0.8})
    assert not stated(close, "PCA detects best") and stated(close, "no method of PCA, AE and VAE")
    quick = one_class_summary("digits", 10, 359, 2, {"pca": 0.950, "ae": 0.946, "vae": 0.8, "vae_recon": 0.8}, SHORT)
    assert not stated(quick, "PCA detects best") and "too short to tell" in quick


def _seg(miou: float, bf: float) -> dict:
    return {"miou": miou, "dice": miou, "boundary_f1": bf, "boundary_f1_1px": bf - 0.1}


def test_skip_summary():
    cfg = SkipConfig()
    blurred = skip_summary("cells", 40, cfg, 0, _seg(0.9, 0.9), _seg(0.8, 0.6))
    assert stated(blurred, "without skip connections the outlines come back blurred") and "bottleneck" in blurred
    assert "4.0×" in blurred  # 1 − BF: 0.4 vs 0.1
    # no-skip better (a one-epoch run): neither the finding nor its explanation
    contra = skip_summary("cells", 40, cfg, 0, _seg(0.5, 0.3), _seg(0.55, 0.35))
    assert not stated(contra, "without skip connections the outlines come back blurred")
    assert "bottleneck" not in contra and stated(contra, "without skip connections the outlines are not clearly worse")
    quick = skip_summary("cells", 40, cfg, 0, _seg(0.5, 0.3), _seg(0.55, 0.35), SHORT)
    assert "too short to tell" in quick and "bottleneck" not in quick
