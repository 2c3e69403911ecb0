"""Review items of issue 17 on the conditional plumbing: the label-free conditional anomaly score (N2), numeric
class names vs class ids (N3), and one interpolation rule for the CLI and the explorer (N4)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
from model_stubs import tiny_cvae

import aekit
from aekit.data import DataConfig
from aekit.data.base import make_dataset
from aekit.errors import ConfigError
from aekit.evaluate.anomaly import (
    anomaly_scores,
    class_frequencies,
    combine_class_scores,
    get_score,
    parse_labels,
    score_run,
)

# ------------------------------------------------------------------------------------------------------------ N2


def test_label_free_score_in_nats_is_the_marginal_over_classes_by_hand():
    per_class = [[1.0, 10.0], [2.0, 10.0], [3.0, 10.0]]  # (K = 3, N = 2)
    e1, e2, e3 = math.exp(-1), math.exp(-2), math.exp(-3)
    # uniform p(c): −log((e^-1 + e^-2 + e^-3) / 3) = 1.691006; equal scores s give s back
    uniform = combine_class_scores(per_class, nats=True)
    assert uniform[0] == pytest.approx(-math.log((e1 + e2 + e3) / 3), abs=1e-12)
    assert uniform[0] == pytest.approx(1.691006, abs=1e-6) and uniform[1] == pytest.approx(10.0, abs=1e-12)
    # p(c) = counts (2, 1, 1) / 4: −log(0.5 e^-1 + 0.25 e^-2 + 0.25 e^-3) = 1.468719
    weighted = combine_class_scores(per_class, nats=True, class_prior=[2, 1, 1])
    assert weighted[0] == pytest.approx(-math.log(0.5 * e1 + 0.25 * e2 + 0.25 * e3), abs=1e-12)
    assert weighted[0] == pytest.approx(1.468719, abs=1e-6)
    # a class the training data never had drops out: p = (0, 1, 0) gives class 1's score
    assert combine_class_scores(per_class, nats=True, class_prior=[0, 5, 0])[0] == pytest.approx(2.0, abs=1e-12)
    # the marginal is never below the best class and at most log K above it; min is kept for squared errors
    assert 1.0 < uniform[0] < 1.0 + math.log(3)
    assert combine_class_scores(per_class, nats=False).tolist() == [1.0, 10.0]
    # very large scores (hundreds of nats) do not underflow to inf
    assert combine_class_scores([[900.0], [901.0]], nats=True)[0] == pytest.approx(
        900.0 - math.log((1 + math.exp(-1)) / 2), abs=1e-9)
    with pytest.raises(ConfigError, match="3 non-negative class frequencies"):
        combine_class_scores(per_class, nats=True, class_prior=[1, 1])
    with pytest.raises(ConfigError, match="not all 0"):
        combine_class_scores(per_class, nats=True, class_prior=[0, 0, 0])


def test_which_scores_are_nats():
    assert get_score("elbo").nats and not get_score("recon").nats


def test_class_frequencies():
    assert class_frequencies(np.array([0, 0, 2, 1]), 3).tolist() == [0.5, 0.25, 0.25]
    assert class_frequencies(np.array([1, 1]), 3).tolist() == [0.0, 1.0, 0.0]
    assert class_frequencies(None, 3) is None and class_frequencies(np.zeros(0), 3) is None


def test_conditional_elbo_score_of_a_model_is_the_marginal_and_recon_the_minimum():
    model = tiny_cvae()
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    for score, nats in (("elbo", True), ("recon", False)):
        per_class = np.stack([anomaly_scores(model, x, score, labels=torch.full((5,), k)) for k in range(3)])
        p = np.array([0.6, 0.3, 0.1])
        marginal = -np.log((p[:, None] * np.exp(-per_class)).sum(0))  # written out, no logsumexp
        got = anomaly_scores(model, x, score, class_prior=p)
        assert np.allclose(got, marginal if nats else per_class.min(0), rtol=0, atol=1e-9)
        assert not np.allclose(marginal, per_class.min(0))  # the two rules differ on these numbers


def test_score_run_uses_the_training_class_frequencies():
    model = tiny_cvae()
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 20 + [2] * 10)
    data = make_dataset("toy", "image", DataConfig(spec="toy"), rng.integers(0, 256, (60, 1, 4, 4), dtype=np.uint8),
                        y, classes=("a", "b", "c"))
    run = types.SimpleNamespace(model=model)
    freq = np.bincount(data.train.y.numpy(), minlength=3) / len(data.train)
    scores, _, info = score_run(run, data, score="elbo")
    assert info["class_prior"] == pytest.approx(freq.tolist(), abs=1e-6) and "marginal" in info["conditional"]
    assert np.allclose(scores, anomaly_scores(model, data.test.x, "elbo", class_prior=freq), rtol=0, atol=1e-12)
    assert not np.allclose(scores, anomaly_scores(model, data.test.x, "elbo"))  # not the uniform marginal
    _, _, info = score_run(run, data, score="recon")
    assert "class_prior" not in info and info["conditional"].startswith("lowest")
    # scoring other data: p(c) is the run's own training labels, given explicitly, not the scored data's
    own = np.array([2, 2, 2, 1])
    scores, _, info = score_run(run, data, score="elbo", train_labels=own)
    assert info["class_prior"] == pytest.approx([0.0, 0.25, 0.75])
    assert np.allclose(scores, anomaly_scores(model, data.test.x, "elbo", class_prior=[0, 0.25, 0.75]), atol=1e-12)
    scores, _, info = score_run(run, data, score="elbo", train_labels=None)  # unknown: uniform
    assert "class_prior" not in info and "uniform" in info["conditional"]
    assert np.allclose(scores, anomaly_scores(model, data.test.x, "elbo"), rtol=0, atol=1e-12)
    _, _, info = score_run(run, data, score="elbo", train_labels=None, no_labels_reason="data gone: x.npz")
    assert info["conditional"].endswith("p(c) = uniform (data gone: x.npz)")  # the cause is in scores.json too


def test_anomaly_cli_says_why_the_class_prior_is_uniform():
    from aekit.cli.anomaly import NO_LABELS, _run_train_labels
    from aekit.errors import DataError

    def unreadable():
        raise DataError("npz:/gone.npz does not exist")

    labels, why = _run_train_labels(types.SimpleNamespace(dataset=unreadable))
    assert labels is None and why == "the run's own training data could not be read: npz:/gone.npz does not exist"
    unlabelled = types.SimpleNamespace(train=types.SimpleNamespace(y=None))
    assert _run_train_labels(types.SimpleNamespace(dataset=lambda: unlabelled)) == (None, "the run's own data has no labels")
    labelled = types.SimpleNamespace(train=types.SimpleNamespace(y=torch.tensor([0, 1])))
    got, why = _run_train_labels(types.SimpleNamespace(dataset=lambda: labelled))
    assert got.tolist() == [0, 1] and why == NO_LABELS


def test_anomaly_cli_writes_the_reason_to_scores_json_when_the_runs_data_is_gone(tmp_path, capsys):
    import json

    from aekit.cli import main

    rng = np.random.default_rng(0)
    own, other = tmp_path / "own.npz", tmp_path / "other.npz"
    np.savez(own, x=rng.integers(0, 256, (120, 4, 4), dtype=np.uint8), y=np.arange(120) % 3)
    np.savez(other, x=rng.integers(0, 256, (60, 4, 4), dtype=np.uint8), y=np.arange(60) % 2)
    run = tmp_path / "run"
    aekit.train("cvae", f"npz:{own}", run, hidden=(8,), latent_dim=2, epochs=1, batch_size=32, progress=False,
                report=False, device="cpu")
    own.unlink()  # the run's own training data is gone: p(c) cannot be its class frequencies
    assert main(["-q", "anomaly", str(run), "--data", f"npz:{other}", "--score", "elbo", "--normal-labels", "0",
                 "--out", str(tmp_path / "s.csv")]) == 0
    info = json.loads((tmp_path / "s.json").read_text())
    assert "class_prior" not in info
    assert "p(c) = uniform (the run's own training data could not be read: " in info["conditional"]
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "p(c) of the marginal score is uniform" in ln]
    assert len(warned) == 1 and "own.npz" in info["conditional"] and "own.npz" in warned[0]


def test_score_run_says_when_no_training_label_is_a_class_of_the_run():
    run = types.SimpleNamespace(model=tiny_cvae())
    rng = np.random.default_rng(0)
    data = make_dataset("toy", "image", DataConfig(spec="toy"), rng.integers(0, 256, (60, 1, 4, 4), dtype=np.uint8),
                        np.array([0, 1] * 30), classes=("a", "b", "c"))
    _, _, info = score_run(run, data, score="elbo", train_labels=np.array([7, 9]))
    assert info["conditional"].endswith("uniform (no training label is a class id 0 … 2 of this run)")


def test_score_run_warns_of_normal_labels_no_sample_has(caplog):
    run = types.SimpleNamespace(model=tiny_cvae())
    rng = np.random.default_rng(0)
    data = make_dataset("toy", "image", DataConfig(spec="toy"), rng.integers(0, 256, (60, 1, 4, 4), dtype=np.uint8),
                        np.array([0, 1] * 30), classes=("a", "b", "c"))
    _, _, info = score_run(run, data, score="recon", normal_labels=[0, 2])
    assert info["normal_labels"] == [0, 2] and ("--normal-labels: class id(s) 2 (c) occur in no sample of the test split: check --normal-labels and --split"
                                           in caplog.text)
    caplog.clear()
    score_run(run, data, score="recon", normal_labels=[0])
    assert "occur in no sample" not in caplog.text


# ------------------------------------------------------------------------------------------------------------ N3


def test_numeric_class_names_win_over_ids_and_id_colon_is_explicit():
    m = tiny_cvae(3, ("1", "3", "5"))  # e.g. a table's label values 1, 3, 5 named in sorted order
    assert m.label_index("1") == 0  # the class named "1", though id 1 exists too: the name wins
    assert m.label_index("3") == 1 and m.label_index(" 5 ") == 2
    for ambiguous in ("2", "0"):  # a bare integer naming no class, while the names are other numbers: an error
        with pytest.raises(ConfigError, match=r"id:N for class id N"):
            m.label_index(ambiguous)
    assert m.label_index("id:1") == 1 and m.label_index("id: 0") == 0  # explicit id form
    assert m.label_index(1) == 1  # a Python int (the explorer's JSON numbers) is always an id
    assert m.label_ids(["1", 1, "id:2"], 3).tolist() == [0, 1, 2]
    assert m.label_index(np.int64(1)) == 1  # NumPy integers are ids too, as Python ints
    assert m.label_ids(np.array([1, 2]), 2).tolist() == [1, 2] == m.label_ids(torch.tensor([1, 2]), 2).tolist()
    assert m.label_ids(np.int64(2), 3).tolist() == [2, 2, 2]
    for bad in ("7", "id:3", 3, "id:x"):
        with pytest.raises(ConfigError, match=r"valid labels are 0 \(1\), 1 \(3\), 2 \(5\).*id:N for class id N"):
            m.label_index(bad)


def test_class_names_equal_to_their_ids_keep_working():
    m = tiny_cvae(4)  # names "0" … "3"
    assert [m.label_index(t) for t in ("2", 2, "id:2")] == [2, 2, 2]
    with pytest.raises(ConfigError, match="valid labels are 0, 1, 2, 3$"):  # no id:N hint: names are the ids
        m.label_index("4")
    named = tiny_cvae(2, ("cat", "dog"))
    assert named.label_index("dog") == 1 and named.label_index("1") == 1 and named.label_index("id:0") == 0


def test_normal_labels_follow_the_same_rule():
    assert parse_labels("1,id:1,id:2", ("1", "3", "5")) == [0, 1, 2]
    with pytest.raises(ConfigError, match=r"^--normal-labels '2' is not a class of this data: valid labels are "
                                          r"0 \(1\), 1 \(3\), 2 \(5\) \(.*write id:N for class id N\)$"):
        parse_labels("1,2", ("1", "3", "5"))  # numeric names: a bare integer naming none is ambiguous
    assert parse_labels("3,7", None) == [3, 7] and parse_labels("3", tuple("0123")) == [3]
    assert parse_labels("Trouser,0", ("T-shirt/top", "Trouser")) == [0, 1]
    with pytest.raises(ConfigError, match=r"'id:' is not a class of this data: valid labels are 0 \(a\)$"):
        parse_labels("id:", ("a",))
    # names in any letter case when one class matches so (the rule of label_index); ids outside the classes
    assert parse_labels("trouser, T-SHIRT/TOP", ("T-shirt/top", "Trouser")) == [0, 1]
    assert parse_labels("cat", ("Cat", "cat")) == [1]  # an exact match first
    with pytest.raises(ConfigError, match=r"'CAT' matches 'Cat' and 'cat' only in another letter case: give the "
                                          r"exact name\)$"):
        parse_labels("CAT", ("Cat", "cat"))  # two classes match without case: ambiguous
    for bad in ("id:2", "2", "-1"):
        with pytest.raises(ConfigError, match=r"is not a class of this data: valid labels are 0 \(a\), 1 \(b\)$"):
            parse_labels(bad, ("a", "b"))
    assert parse_labels("ID:1", ("a", "b")) == [1]  # the id: prefix in any case, as the names
    assert parse_labels("5", None) == [5] and parse_labels("id:5", ()) == [5]  # no names: ids not checked here
    with pytest.raises(ConfigError, match="no class names, so give class ids"):
        parse_labels("cat", ())


def test_class_names_with_surrounding_spaces_are_reachable():
    from aekit.models.base import class_named

    names = (" cat", "dog ", "Bird")
    assert class_named(" cat", names) == 0 and class_named("cat", names) == 0 and class_named("dog", names) == 1
    assert class_named(" bird ", names) == 2 and class_named("fish", names) is None
    assert class_named("cat", ("cat ", " cat")) is None  # two names equal without their spaces: ambiguous
    assert parse_labels(" cat, dog ", names) == [0, 1]


# ------------------------------------------------------------------------------------------------------------ N4


def test_interpolation_label_rule():
    from aekit.latent import interpolation_labels

    assert interpolation_labels((2, 7), None) == ((2, 7), 2)  # own labels; the path in a's class
    assert interpolation_labels((2, 7), 5) == ((2, 7), 5)  # still encoded with their own labels, drawn as 5
    assert interpolation_labels(None, 5) == ((5, 5), 5)  # an unlabelled split: the class for both
    with pytest.raises(ConfigError, match="needs the inputs' class labels"):
        interpolation_labels(None, None)


def _toy_explorer():
    from aekit.serve.explorer import Explorer

    model = tiny_cvae(3, ("a", "b", "c"))
    rng = np.random.default_rng(0)
    data = make_dataset("toy", "image", DataConfig(spec="toy"), rng.integers(0, 256, (40, 1, 4, 4), dtype=np.uint8),
                        np.arange(40) % 3, classes=("a", "b", "c"))
    return model, data, Explorer(model, data)


def test_explorer_interpolation_is_latent_interpolate_with_the_rule(monkeypatch):
    from aekit.data import to_float
    from aekit.latent import interpolation_path

    model, data, ex = _toy_explorer()
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(ex, "render", lambda x: seen.append(x.detach().clone()) or ["img"] * len(x))
    s = data.test
    a = 0
    b = int(np.flatnonzero(s.y.numpy() != int(s.y[0]))[0])  # a row of another class
    ya, yb = int(s.y[a]), int(s.y[b])
    other = ({0, 1, 2} - {ya, yb}).pop()
    for label, want in ((None, ((ya, yb), ya)), (other, ((ya, yb), other)), ("c", ((ya, yb), 2))):
        out = ex.interpolate(a, b, 5, False, label)
        z, x = interpolation_path(model, to_float(s.x[a]), to_float(s.x[b]), 5, labels=want[0], path_label=want[1])
        assert torch.equal(seen[-1], x) and np.allclose(out["codes"], z.numpy(), rtol=0, atol=0)
    # the class of the path matters, the inputs' encoding does not follow it
    assert not torch.equal(seen[0], seen[1])
    enc_both = interpolation_path(model, to_float(s.x[a]), to_float(s.x[b]), 5, labels=other)[0]
    assert not np.allclose(ex.interpolate(a, b, 5, False, other)["codes"], enc_both.numpy())


@pytest.mark.slow  # trains a 1-epoch digits run
def test_cli_and_explorer_interpolate_the_same_path(tmp_path, monkeypatch):
    import aekit.viz.plots as plots
    from aekit.cli import main
    from aekit.serve.app import explorer_for_run

    run = tmp_path / "cvae"
    aekit.train("cvae", "digits", run, hidden="16", latent_dim=2, epochs=1, batch_size=256, progress=False,
                report=False, evaluate=False)
    strips: list[torch.Tensor] = []
    monkeypatch.setattr(plots, "plot_interpolation", lambda strip, path, **kw: strips.append(strip.detach().clone()))
    ex = explorer_for_run(run)
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(ex, "render", lambda x: seen.append(x.detach().clone()) or ["img"] * len(x))
    y = ex.y
    assert y is not None and int(y[0]) != int(y[3])
    for label in (None, "5", "id:8"):
        args = ["interpolate", str(run), "--a", "0", "--b", "3", "--steps", "6", "--out", str(tmp_path / "p.png")]
        assert main(args + ([] if label is None else ["--label", label])) == 0
        ex.interpolate(0, 3, 6, False, None if label is None else int(label.removeprefix("id:")))
        assert torch.allclose(strips[-1], seen[-1], rtol=0, atol=1e-6), label
    assert not torch.allclose(strips[0], strips[1]) and not torch.allclose(strips[1], strips[2])


# ------------------------------------------------------------------------------------------------------------ R1


@pytest.mark.parametrize("name", ["cvae", "ae-vs-vae"])
def test_experiments_judge_images_through_judged_images(name, tmp_path, capsys, monkeypatch):
    import aekit.experiments.cvae as cvae_exp
    import aekit.experiments.vae_geometry as geometry
    from aekit.cli import main

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", x=rng.normal(size=(40, 3)), y=np.arange(40) % 2)  # a labelled table, not images
    assert main(["experiment", name, "--quick", "--data", f"npz:{tmp_path / 't.npz'}", "--out", str(tmp_path / "o")]) == 2
    assert f"{name} needs labelled images (its classifier learns the classes)" in capsys.readouterr().err
    calls: list[str] = []

    def fake(ctx, cfg, data_cfg, what, **kw):
        calls.append(what)
        raise ConfigError("stop here")

    monkeypatch.setattr(cvae_exp if name == "cvae" else geometry, "judged_images", fake)
    assert main(["experiment", name, "--quick", "--out", str(tmp_path / "o2")]) == 2 and calls == [name]


@pytest.mark.slow
def test_anomaly_cli_keeps_the_runs_class_prior_when_scoring_other_data(tmp_path):
    import json

    from aekit.cli import main
    from aekit.models import MODELS

    run = tmp_path / "run"
    aekit.train("cvae", "digits", run, **{**MODELS["cvae"].tiny, "epochs": 1, "batch_size": 64, "progress": False})
    own = aekit.load_run(run).dataset().train.y.numpy()
    # --data: other images of the model's shape, with two classes in other proportions than the run's ten
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "other.npz", x=rng.integers(0, 256, (200, 8, 8), dtype=np.uint8),
             y=np.array([0] * 150 + [1] * 50))
    rc = main(["-q", "anomaly", str(run), "--data", f"npz:{tmp_path / 'other.npz'}", "--score", "elbo",
               "--normal-labels", "0", "--out", str(tmp_path / "s.csv")])
    assert rc == 0
    info = json.loads((tmp_path / "s.json").read_text())
    assert info["class_prior"] == pytest.approx((np.bincount(own, minlength=10) / len(own)).tolist(), abs=1e-6)


def test_label_values_of_every_integer_kind_are_ids_and_bools_floats_are_not():
    m = tiny_cvae(3, ("1", "3", "5"))  # names are other numbers: a misread id would pick the wrong class
    for v in (1, np.int64(1), np.array(1), torch.tensor(1)):
        assert m.label_index(v) == 1
    assert m.label_ids(np.array(1), 2).tolist() == [1, 1]  # what split.y[i].numpy() gives
    assert m.label_ids([np.array(1), torch.tensor(2)], 2).tolist() == [1, 2]
    assert m.label_ids(np.array(["3", "5"]), 2).tolist() == [1, 2]  # strings are names
    for bad in (True, np.bool_(True)):
        with pytest.raises(ConfigError, match="not a class of this run"):
            m.label_ids(bad, 1)
    for bad in (torch.tensor([1.7]), torch.tensor([True])):
        with pytest.raises(ConfigError, match="must be integer class ids"):
            m.label_ids(bad, 1)


def test_every_experiment_gets_one_wall_time_with_its_data_load(tmp_path, monkeypatch):
    import json
    import time

    from aekit.experiments import EXPERIMENTS, ExperimentContext, ExperimentResult, run_experiment

    def slow_load(ctx):  # stands for an experiment whose data load takes most of its time
        time.sleep(0.3)
        return ExperimentResult("toy-timing", [{"a": 1}], "A finding.")

    monkeypatch.setitem(EXPERIMENTS._entries, "toy-timing", slow_load)
    threads = torch.get_num_threads()
    result = run_experiment("toy-timing", ExperimentContext(data="toy", out=tmp_path, quick=True))
    extra = json.loads((tmp_path / "extra.json").read_text())
    assert extra == result.extra and 0.3 <= extra["wall_seconds"] < 30 and extra["threads"] == 1  # --quick: 1 thread
    assert "Wall time of the whole experiment: 0 s (data load included; torch threads: 1)." in (tmp_path / "summary.md").read_text()
    assert torch.get_num_threads() == threads
    # an experiment that states its own wall time (extra "seconds") gets no second one
    monkeypatch.setitem(EXPERIMENTS._entries, "toy-timing",
                        lambda ctx: ExperimentResult("toy-timing", [{"a": 1}], "Wall time 0 s.", extra={"seconds": 0.1}))
    run_experiment("toy-timing", ExperimentContext(data="toy", out=tmp_path, quick=True))
    assert "Wall time of the whole" not in (tmp_path / "summary.md").read_text()
    assert "wall_seconds" in json.loads((tmp_path / "extra.json").read_text())


def test_reused_runs_are_matched_on_precision(tmp_path, monkeypatch):
    import json

    import aekit.experiments.vae_geometry as vg
    from aekit.experiments import ExperimentContext
    from aekit.models import MODELS
    from aekit.train.run import WEIGHTS

    ctx = ExperimentContext(data="digits", out=tmp_path, progress=False)
    data_cfg = DataConfig(spec="digits", subsample=300)
    opts = {**MODELS["vae"].tiny, "epochs": 1, "batch_size": 64, "device": "cpu"}
    first = vg.train_or_reuse(ctx, "r", "vae", data_cfg, {**opts, "bf16": True})
    assert first.train_config.precision == "bf16"
    trained = []
    monkeypatch.setattr(vg, "train", lambda *a, **k: trained.append(k) or "trained")
    # the alias given again: the bf16 run is reused (config.json stores precision "bf16" and bf16 false)
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, {**opts, "bf16": True}).path == first.path and not trained
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, {**opts, "precision": "bf16"}).path == first.path
    # auto reuses whatever the run trained in (retraining would replace the run: hours for the long recipes)
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, opts).path == first.path and not trained
    # an explicit other precision retrains, also an interrupted run (not resumed in the other precision)
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, {**opts, "precision": "fp32"}) == "trained"
    assert "resume" not in trained[-1] and trained[-1]["precision"] == "fp32"
    (tmp_path / "runs" / "r" / WEIGHTS).rename(tmp_path / "weights.bak")  # as if killed before the end
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, {**opts, "precision": "fp32"}) == "trained"
    assert "resume" not in trained[-1]
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, {**opts, "bf16": True}) == "trained"
    assert trained[-1].get("resume") == tmp_path / "runs" / "r"  # the same precision: resumed
    # a run written before precision existed ("bf16": true, no "precision") trained in bf16
    (tmp_path / "weights.bak").rename(tmp_path / "runs" / "r" / WEIGHTS)
    path = tmp_path / "runs" / "r" / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["train"]["precision"]
    cfg["train"]["bf16"] = True
    path.write_text(json.dumps(cfg))
    trained.clear()
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, {**opts, "precision": "bf16"}) != "trained" and not trained
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, {**opts, "precision": "fp32"}) == "trained"

@pytest.mark.slow  # quick subset under 3 min on a slow 2-core CPU (session 20)
@pytest.mark.parametrize("name,module", [("one-class", "anomaly"), ("disentangle", "disentangle"),
                                         ("beta-sweep", "vae_geometry")])
def test_experiment_timers_include_the_data_load(name, module, tmp_path, monkeypatch):
    import importlib
    import time

    from aekit.experiments import ExperimentContext, run_experiment

    mod = importlib.import_module(f"aekit.experiments.{module}")
    real = mod.load_data

    def slow_load(*a, **k):  # the data load takes 1 s more: the experiment's own timer must see it
        time.sleep(1.0)
        return real(*a, **k)

    monkeypatch.setattr(mod, "load_data", slow_load)
    data = "digits" if name == "one-class" else "dsprites"
    result = run_experiment(name, ExperimentContext(data=data, out=tmp_path, quick=True, progress=False))
    # the experiment's timer starts before the load: it misses only run_experiment's own overhead, not the 1 s
    assert result.extra["seconds"] >= 1.0 and abs(result.extra["wall_seconds"] - result.extra["seconds"]) < 0.5


def test_a_run_written_before_a_field_existed_is_reused_with_its_default(tmp_path, monkeypatch):
    import json

    import aekit.experiments.vae_geometry as vg
    from aekit.experiments import ExperimentContext
    from aekit.models import MODELS

    ctx = ExperimentContext(data="digits", out=tmp_path, progress=False)
    data_cfg = DataConfig(spec="digits", subsample=300)
    opts = {**MODELS["vae"].tiny, "epochs": 1, "batch_size": 64, "device": "cpu", "beta": 1.0}
    first = vg.train_or_reuse(ctx, "r", "vae", data_cfg, opts)
    path = tmp_path / "runs" / "r" / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["model_config"]["beta"]  # as if written before `beta` existed: it loads with the default, 1.0
    path.write_text(json.dumps(cfg))
    trained = []
    monkeypatch.setattr(vg, "train", lambda *a, **k: trained.append(k) or "trained")
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, opts).path == first.path and not trained
    assert vg.train_or_reuse(ctx, "r", "vae", data_cfg, {**opts, "beta": 2.0}) == "trained"  # not the default
