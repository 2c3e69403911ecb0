"""The conditional VAE (``--model cvae``): its loss against a hand computation, the label's effect on the decoder,
the one-line errors of missing / unknown labels, the label set recorded in a run, and ``aekit sample --label``."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import aekit
from aekit.cli import main
from aekit.data import Batch, DataShape
from aekit.errors import AekitError, ConfigError
from aekit.models import MODELS
from aekit.models.cvae import CVAE, CVAEConfig


def tiny(k: int = 3, **kw) -> CVAE:
    cfg = CVAEConfig(hidden=(), latent_dim=2, num_classes=k, **kw).resolve(DataShape((1, 2, 2)))
    return CVAE(cfg)


def test_loss_equals_a_hand_computation():
    torch.manual_seed(0)
    m = tiny()  # encoder: one Linear (4 + 3 → 2·2); decoder: one Linear (2 + 3 → 4); Bernoulli likelihood
    x = torch.tensor([[[[0.0, 1.0], [0.5, 0.2]]], [[[1.0, 0.0], [0.3, 0.9]]]])
    y = torch.tensor([2, 0])
    torch.manual_seed(1)
    losses = m.loss(Batch(x, labels=y))
    # by hand, the same draw ε (the global generator, re-seeded)
    enc, dec = m.encoder[-1], m.decoder[0]
    onehot = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    h = torch.cat([x.flatten(1), onehot], 1) @ enc.weight.T + enc.bias
    mu, logvar = h[:, :2], h[:, 2:]
    torch.manual_seed(1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(2, 2)
    p = torch.sigmoid(torch.cat([z, onehot], 1) @ dec.weight.T + dec.bias)
    xf = x.flatten(1)
    recon = -(xf * torch.log(p) + (1 - xf) * torch.log(1 - p)).sum(1).mean()
    kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum(1).mean()
    assert torch.allclose(losses.terms["recon"], recon, atol=1e-5)
    assert torch.allclose(losses.terms["kl"], kl, atol=1e-6)
    assert torch.allclose(losses.total, recon + kl, atol=1e-5)
    assert torch.allclose(losses.terms["elbo"], -(recon + kl), atol=1e-5)
    # β weighs the KL only
    m2 = tiny(beta=3.0)
    m2.load_state_dict(m.state_dict())
    torch.manual_seed(1)
    assert torch.allclose(m2.loss(Batch(x, labels=y)).total, recon + 3 * kl, atol=1e-5)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_the_label_changes_the_decoder_output_for_the_same_z(arch):
    torch.manual_seed(0)
    cfg = CVAEConfig(arch=arch, hidden=(8,), channels=(4,), latent_dim=2, num_classes=4)
    m = CVAE(cfg.resolve(DataShape((1, 8, 8)))).eval()
    z = torch.randn(5, 2)
    a, b = m.decode(z, labels=1), m.decode(z, labels=torch.full((5,), 3))
    assert a.shape == b.shape == (5, 1, 8, 8)
    assert (a - b).abs().max() > 1e-4
    assert torch.equal(m.decode(z, labels=1), m.decode(z, labels=[1] * 5))  # one label = that label for all
    # and the encoder reads the label too
    x = torch.rand(5, 1, 8, 8)
    assert (m.encode(x, labels=0).mean - m.encode(x, labels=2).mean).abs().max() > 1e-5


def test_missing_and_unknown_labels_are_one_line_errors():
    m = tiny(class_names=("cat", "dog", "bird"))
    x, z = torch.rand(2, 1, 2, 2), torch.randn(2, 2)
    for call in (lambda: m.encode(x), lambda: m.decode(z), lambda: m.sample(2), lambda: m.reconstruct(x),
                 lambda: m.loss(Batch(x))):
        with pytest.raises(ConfigError, match="label") as e:
            call()
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"valid labels are 0 \(cat\), 1 \(dog\), 2 \(bird\)"):
        m.sample(2, labels="fish")
    with pytest.raises(ConfigError, match="valid labels"):
        m.decode(z, labels=torch.tensor([0, 3]))
    with pytest.raises(ConfigError, match="3 labels for 2 inputs"):
        m.decode(z, labels=[0, 1, 2])
    assert m.label_index("dog") == 1 and m.label_index("2") == 2
    assert m.label_index("DOG") == 1 and m.label_index(" Bird") == 2  # any case, when one class matches
    twins = tiny(class_names=("Cat", "cat", "dog"))
    assert twins.label_index("cat") == 1  # an exact match first
    with pytest.raises(ConfigError, match="valid labels"):
        twins.label_index("CAT")  # two classes match without case: ambiguous
    assert m.sample(2, labels="bird").shape == (2, 1, 2, 2)
    # an unconditional model has no labels to give
    vae = aekit.build_model("vae", MODELS["vae"].make_config(MODELS["vae"].tiny).resolve(DataShape((1, 2, 2))))
    with pytest.raises(AekitError, match="conditional"):
        vae.label_index("3")
    assert vae.label_kwargs(torch.tensor([1])) == {}


def test_config_needs_classes():
    with pytest.raises(ConfigError, match="--num-classes"):
        CVAEConfig().resolve(DataShape((1, 2, 2)))
    with pytest.raises(ConfigError, match="names for"):
        CVAEConfig(num_classes=2, class_names=("a",))
    cfg = CVAEConfig(class_names=("a", "b"), num_classes=2).resolve(DataShape((1, 2, 2)))
    assert CVAE(cfg).label_names == ("a", "b")


@pytest.mark.slow
def test_run_records_its_labels_and_samples_by_class(tmp_path, capsys):
    run = aekit.train("cvae", aekit.DataConfig("digits", subsample=300), tmp_path / "r", report=False,
                      hidden=(16,), latent_dim=3, epochs=1, batch_size=64, progress=False)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["model_config"]
    assert saved["num_classes"] == 10 and saved["class_names"] == [str(i) for i in range(10)]
    ev = json.loads((tmp_path / "r" / "evaluation.json").read_text())
    assert ev["elbo"] < 0 and ev["elbo"] == pytest.approx(-(ev["recon"] + ev["kl"]), abs=1e-6)
    loaded = aekit.load_run(tmp_path / "r")
    assert loaded.model.label_names == run.model.label_names
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 3, generator=g)
    assert torch.equal(loaded.model.eval().decode(z, labels=7), run.model.eval().decode(z, labels=7))
    assert main(["sample", str(tmp_path / "r"), "--label", "7", "-n", "4", "--out", str(tmp_path / "s.npy")]) == 0
    import numpy as np

    got = torch.from_numpy(np.load(tmp_path / "s.npy"))
    want = aekit.latent.sample(loaded.model, 4, seed=0, labels=7)
    assert torch.allclose(got, want)
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "r"), "--label", "12", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "valid labels are 0, 1, 2" in err[0]
    assert not (tmp_path / "x.png").exists()
    # the Hub round trip keeps the label set
    from aekit.hub import from_pretrained, save_pretrained

    save_pretrained(run, tmp_path / "hub")
    again = from_pretrained(tmp_path / "hub").eval()
    assert again.label_names == run.model.label_names
    assert torch.equal(again.decode(z, labels=7), run.model.decode(z, labels=7))


@pytest.mark.slow
def test_experiment_quick(tmp_path):
    from aekit.experiments import ExperimentContext, run_experiment

    res = run_experiment("cvae", ExperimentContext("digits", tmp_path, quick=True, progress=False))
    assert (tmp_path / "samples_per_class.png").exists()
    per_class = [r for r in res.rows if "class_rate" in r]
    assert len(per_class) == 10 and all(0.0 <= r["class_rate"] <= 1.0 for r in per_class)
    assert "too short to tell" in res.summary  # a --quick run states no finding
    temps = res.extra["temperatures"]
    assert [r["temperature"] for r in temps] == [1.0, 0.7, 0.5]  # τ = 1 (the claim's) and the default others
    assert all(r["domain_fid"] >= 0 and r["domain_fid_stderr"] > 0 for r in temps)
    assert "too short to read more into them" in res.summary and "real training images: FID" in res.summary
    assert res.figures[0] == "samples_per_class.png"
    assert all((tmp_path / f).exists() for f in ("samples_per_class_t0.7.png", "samples_per_class_t0.5.png"))
    assert all("class_rate_t0.5" in r and "most_mistaken_for" in r for r in per_class)


def test_one_hot_matches_torch():
    m = tiny(k=4)
    ids = torch.tensor([3, 0, 2])
    assert torch.equal(m.onehot(ids, 3), F.one_hot(ids, 4).float())


def test_class_findings_hold_fail_and_too_short():
    import numpy as np

    from aekit.experiments.cvae import class_findings

    names = ["T-shirt", "Shirt", "Bag"]
    real = np.array([0.95, 0.60, 0.99])
    good = class_findings(names, np.array([0.93, 0.95, 0.97]), real, 100, "")
    assert good.startswith("The cVAE's prior draws are classified as the requested class: lowest class rate 93.0%")
    assert "Measured against the classifier's own accuracy on real images of each class, every class is drawn" in good
    # Shirt 0.58 < 0.9 but ≥ 0.9 · 0.60 = 0.54: the absolute claim fails, the relative reading holds
    mixed = class_findings(names, np.array([0.93, 0.58, 0.97]), real, 100, "")
    assert mixed.startswith("Not every class of the cVAE's prior draws is classified as requested")
    assert "below it: Shirt 58.0% (32.0 points short)" in mixed
    assert "lowest ratio of class rate to the classifier's real-image accuracy of that class 0.97 (Shirt" in mixed
    assert "not every class is drawn" not in mixed
    # T-shirt 0.80 < 0.9 · 0.95 = 0.855: both fail
    bad = class_findings(names, np.array([0.80, 0.58, 0.97]), real, 100, "")
    assert "not every class is drawn recognisably" in bad and "below it: T-shirt 80.0% vs 95.0%" in bad
    short = class_findings(names, np.array([0.93, 0.95, 0.97]), real, 100, "a --quick smoke run")
    assert short.count("too short to tell whether") == 2  # even numbers that meet both thresholds: no finding


def test_most_confused_and_the_temperature_paragraph():
    import numpy as np

    from aekit.experiments.cvae import most_confused, temperature_sentence

    confusion = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05], [0.0, 0.4, 0.6]])
    other, share = most_confused(confusion)
    assert other.tolist() == [1, 0, 1] and share.tolist() == [0.2, 0.05, 0.4]  # never the class itself
    assert most_confused(np.eye(3))[1].tolist() == [0, 0, 0]  # nothing mistaken: share 0
    names = ["a", "b", "c"]
    by_t = {1.0: (np.array([0.7, 0.9, 0.6]), 20.0, 0.5), 0.5: (np.array([0.95, 0.99, 0.91]), 30.0, 0.7)}
    text = temperature_sentence(names, by_t, 3.0, "")
    assert "τ = 1: mean 73.3%, lowest 60.0% (c), domain FID 20.0 ± 0.5; τ = 0.5: mean 95.0%" in text
    assert "(real training images: FID 3.0;" in text and "Every class reaches 90% at τ = 0.5." in text
    assert "At none" in temperature_sentence(names, {1.0: by_t[1.0]}, 3.0, "")
    assert "too short" in temperature_sentence(names, by_t, 3.0, "a --quick smoke run")


@pytest.mark.parametrize("temps", [(0.0,), (-0.5,), (float("nan"),), (1.0000001,), (0.5, 0.50000001)])
def test_experiment_rejects_temperatures_it_cannot_score_or_name(temps):
    from aekit.errors import AekitError
    from aekit.experiments.cvae import CVAEExperimentConfig

    with pytest.raises(AekitError, match="temperatures"):
        CVAEExperimentConfig(temperatures=temps)


def test_class_draws_at_temperature_zero_are_one_image_per_class():
    import numpy as np

    from aekit.evaluate.classifier import ClassifierConfig, DomainClassifier
    from aekit.experiments.cvae import class_draws

    m = tiny(k=4).eval()
    clf = DomainClassifier(ClassifierConfig(input_shape=m.input_shape, n_classes=4))
    cold = class_draws(m, clf, 8, seed=0, temperature=0.0)
    assert np.allclose(cold.confusion.max(1), 1.0)  # every draw of a class is the same image: one prediction
    warm = class_draws(m, clf, 8, seed=0)
    assert warm.features.shape == (32, clf.config.features) and not np.allclose(warm.features[:8], warm.features[:1])


def test_class_draws_scale_the_same_noise_by_the_temperature():
    """class_draws(τ) decodes τ·ε with class c's own ε (seed·1000 + c) at every τ: temperatures differ only in τ."""
    from aekit.evaluate.classifier import ClassifierConfig, DomainClassifier, classify_all
    from aekit.experiments.cvae import class_draws

    m = tiny(k=3).eval()
    clf = DomainClassifier(ClassifierConfig(input_shape=m.input_shape, n_classes=3))
    got = class_draws(m, clf, 5, seed=2, temperature=0.5).features
    want = []
    for c in range(3):
        eps = torch.randn(5, m.latent_dim, generator=torch.Generator().manual_seed(2000 + c))
        with torch.no_grad():
            want.append(classify_all(clf, m.decode(0.5 * eps, labels=c).clamp(0, 1))[0])
    import numpy as np

    assert np.allclose(got, np.concatenate(want), atol=1e-6)
