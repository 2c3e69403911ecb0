"""Anomaly detection: the pure scoring functions, `aekit anomaly` on images and csv: tables, and the
one-class experiment (quick)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import aekit
from aekit.cli import main
from aekit.data import DataShape
from aekit.errors import ConfigError, DataError
from aekit.evaluate.anomaly import (
    anomaly_scores,
    detection_metrics,
    parse_labels,
    rates_at_threshold,
    threshold_at_fpr,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("anomaly") / "vae"
    aekit.train("vae", "digits", out, hidden="32", latent_dim=4, epochs=2, batch_size=64, progress=False,
                report=False, evaluate=False)
    return out


def test_threshold_and_rates():
    normal = np.arange(100, dtype=float)  # 0..99
    t = threshold_at_fpr(normal, 0.05)
    assert t == 94.0 and (normal > t).mean() == 0.05
    assert threshold_at_fpr(normal, 0.0) == 99.0
    assert threshold_at_fpr([3.0], 0.5) == 3.0
    scores = np.array([0.1, 0.2, 0.9, 0.8])
    anom = np.array([False, False, True, True])
    assert detection_metrics(scores, anom)["auroc"] == 1.0
    assert detection_metrics(-scores, anom)["auroc"] == 0.0
    assert rates_at_threshold(scores, anom, 0.5) == {"tpr": 1.0, "fpr": 0.0, "precision": 1.0, "flagged": 2}
    with pytest.raises(ConfigError, match="--fpr"):
        threshold_at_fpr(normal, 1.5)
    with pytest.raises(DataError, match="normal and anomalous"):
        detection_metrics(scores, np.ones(4, bool))


def test_parse_labels():
    assert parse_labels("1, 0,1") == [0, 1]
    assert parse_labels("Trouser,0", ("T-shirt/top", "Trouser")) == [0, 1]
    with pytest.raises(ConfigError, match="not a label"):
        parse_labels("cat")


def test_scores_recon_and_elbo(vae_dir, digits):
    model = aekit.load(vae_dir)
    x = digits.test.x[:50]
    recon = anomaly_scores(model, x, "recon", batch_size=16)
    assert recon.shape == (50,) and (recon > 0).all()
    sse = ((model.reconstruct(x.float() / 255) - x.float() / 255) ** 2).flatten(1).sum(1).detach().numpy()
    np.testing.assert_allclose(recon, sse, rtol=1e-5)
    elbo = anomaly_scores(model, x, "elbo")
    assert np.array_equal(elbo, anomaly_scores(model, x, "elbo", batch_size=7))  # batching does not change scores
    assert (elbo > 0).all()  # -ELBO of Bernoulli images is positive
    ae = aekit.build_model("pca", aekit.MODELS["pca"].make_config({"latent_dim": 2}).resolve(DataShape((1, 8, 8), True)))
    with pytest.raises(ConfigError, match="--score recon"):
        anomaly_scores(ae, x, "elbo")


def test_cli_scores_metrics_threshold_histogram(vae_dir, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["-q", "anomaly", str(vae_dir), "--score", "elbo", "--normal-labels", "0,1", "--fpr", "0.1",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 359 and list(rows[0]) == ["index", "label", "score", "anomalous", "flagged"]
    info = json.loads(out.with_suffix(".json").read_text())
    # AUROC and AUPRC by hand from the written rows (anomalous = positive): the fraction of (anomalous, normal)
    # pairs ranked right (ties half), and the mean over anomalous rows of the precision at their score
    scores = np.array([float(r["score"]) for r in rows])
    anom = np.array([r["anomalous"] == "1" for r in rows])
    assert set(anom) == {True, False} and (anom == [r["label"] not in ("0", "1") for r in rows]).all()
    pos, neg = scores[anom], scores[~anom]
    auroc = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    auprc = np.mean([(scores[anom] >= t).sum() / (scores >= t).sum() for t in pos])
    # the CSV keeps 7 significant digits: allow for 3 (anomalous, normal) pairs that this rounding reorders
    # (each moves AUROC by 1 / (n_pos·n_neg) and AUPRC by at most 1 / n_pos)
    assert info["auroc"] == pytest.approx(auroc, abs=3 / (len(pos) * len(neg)))
    assert info["auprc"] == pytest.approx(auprc, abs=3 / len(pos))
    assert info["threshold_from"].startswith("val split")
    assert info["n_normal"] == sum(r["label"] in ("0", "1") for r in rows)
    flagged = sum(int(r["flagged"]) for r in rows)
    assert flagged == info["flagged_at_threshold"]
    assert out.with_suffix(".png").stat().st_size > 5000
    # without labels of normal samples: scores only
    out2 = tmp_path / "plain.csv"
    assert main(["-q", "anomaly", str(vae_dir), "--split", "val", "--out", str(out2)]) == 0
    assert out2.read_text().splitlines()[0] == "index,label,score" and not out2.with_suffix(".json").exists()


@pytest.mark.parametrize("args, words", [
    (["--out", "x.txt"], "write a .csv"),
    (["--normal-labels", "cat", "--out", "s.csv"], "'cat' is not a class of this data: valid labels are 0, 1,"),
    (["--normal-labels", "0,1,2,3,4,5,6,7,8,9", "--out", "s.csv"], "normal and anomalous"),
    (["--fpr", "2", "--normal-labels", "0", "--out", "s.csv"], "--fpr"),
])
def test_cli_errors_are_one_line(vae_dir, tmp_path, capsys, args, words):
    args = [a if a != "s.csv" else str(tmp_path / a) for a in args]
    assert main(["anomaly", str(vae_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err


def test_cli_on_a_csv_table(tmp_path, capsys):
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(120, 4))
    odd = rng.normal(size=(30, 4)) * 4 + 3
    table = np.concatenate([normal, odd])
    labels = np.r_[np.zeros(120, int), np.ones(30, int)]
    path = tmp_path / "t.csv"
    with path.open("w") as f:
        f.write("a,b,c,d,kind\n")
        for row, lab in zip(table, labels):
            f.write(",".join(f"{v:.5f}" for v in row) + f",{lab}\n")
    run = tmp_path / "ae"
    aekit.train("ae", f"csv:{path}", run, label_column="kind", hidden="8", latent_dim=2, epochs=5,
                batch_size=32, progress=False, report=False, evaluate=False)
    out = tmp_path / "s.csv"
    assert main(["-q", "anomaly", str(run), "--normal-labels", "0", "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["auroc"] > 0.8  # far-away rows reconstruct worse


def test_one_class_experiment_quick(tmp_path):
    out = tmp_path / "oc"
    assert main(["-q", "experiment", "one-class", "--quick", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["class"] for r in rows] == ["0", "1", "mean"]
    for m in ("pca", "ae", "vae", "vae_recon"):
        vals = [float(r[m]) for r in rows]
        assert all(0.0 <= v <= 1.0 for v in vals)
        assert vals[-1] == pytest.approx(np.mean(vals[:-1]))
    assert float(rows[-1]["pca"]) > 0.8  # digits 0 and 1 are easy for PCA
    summary = (out / "summary.md").read_text()
    assert "Mean AUROC over 2 classes" in summary and (out / "one_class_auroc.png").exists()
    # the summary names a best method only where its mean AUROC leads the runner-up's by ≥ 0.01
    means = sorted(((float(rows[-1][m]), m) for m in ("pca", "ae", "vae")), reverse=True)
    label = {"pca": "PCA", "ae": "AE", "vae": "VAE (−ELBO)"}[means[0][1]]
    assert (f"{label} detects best:" in summary) == (means[0][0] - means[1][0] >= 0.01)
    assert (f"{label} detects best:" in summary) != ("too short to tell" in summary)


def test_conditional_scores_use_the_given_labels_or_combine_the_classes():
    import torch

    from aekit.models import MODELS

    spec = MODELS["cvae"]
    cfg = spec.make_config({"hidden": (8,), "latent_dim": 2}, name="cvae").resolve(
        DataShape((1, 4, 4), num_classes=3))
    torch.manual_seed(0)
    model = aekit.build_model("cvae", cfg).eval()
    x = torch.rand(5, 1, 4, 4)
    labels = torch.tensor([0, 1, 2, 1, 0])
    for score in ("recon", "elbo"):
        per_class = np.stack([anomaly_scores(model, x, score, labels=torch.full((5,), k)) for k in range(3)])
        given = anomaly_scores(model, x, score, labels=labels)
        assert np.allclose(given, per_class[labels.numpy(), np.arange(5)])  # each row with its own label
        best = anomaly_scores(model, x, score)  # no labels: recon the best class, elbo (nats) the uniform marginal
        want = per_class.min(0) if score == "recon" else -np.log(np.exp(-per_class).mean(0))
        assert np.allclose(best, want) and not np.allclose(per_class[0], per_class[1])
