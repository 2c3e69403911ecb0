"""U-Net: shapes at any size, skip vs no-skip, losses and metrics against hand-computed values, paired
augmentation, exact resume, seamless overlap-tile inference, the CLI end to end and the ablation experiment."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import aekit
from aekit import losses as L
from aekit.cli import main
from aekit.data import Batch, DataShape
from aekit.data.augment import paired_augment
from aekit.errors import ConfigError
from aekit.evaluate.segmentation import (
    boundaries,
    boundary_counts,
    boundary_f1_from_counts,
    segmentation_metrics,
)
from aekit.infer import predict_tiled, segment_image
from aekit.models import MODELS, UNetConfig, build_model

TINY = {"cells_count": 24, "image_size": 32, "depth": 2, "base_channels": 4, "batch_size": 8, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


def unet(shape=(1, 16, 16), **kw):
    cfg = MODELS["unet"].make_config({"depth": 2, "base_channels": 4, **kw}).resolve(DataShape(shape, True))
    return build_model("unet", cfg)


# ------------------------------------------------------------------------------------------------ the network


@pytest.mark.parametrize(("upsample", "skip"), [("transpose", True), ("bilinear", True), ("transpose", False)])
@pytest.mark.parametrize("hw", [(13, 17), (1, 5), (33, 9)])
def test_forward_backward_any_size(upsample, skip, hw):
    model = unet((3, 16, 16), upsample=upsample, skip=skip, num_classes=3)
    x = torch.rand(2, 3, *hw)
    y = torch.randint(0, 3, (2, *hw))
    out = model(x)
    assert out.shape == (2, 3, *hw) and torch.allclose(out.sum(1), torch.ones(2, *hw), atol=1e-5)
    losses = model.loss(Batch(x, labels=y))
    assert set(losses.terms) == {"ce", "dice_loss"} and torch.isfinite(losses.total)
    losses.total.backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert model.predict(x).shape == (2, *hw)


def test_skip_vs_noskip_parameters_and_shapes():
    a, b = unet(skip=True, base_channels=8, depth=3), unet(skip=False, base_channels=8, depth=3)
    # only the first conv of each decoder block differs: it sees 2·c_i channels (skip + upsampled) instead of c_i
    extra = sum(9 * c * c for c in (8, 16, 32))
    assert sum(p.numel() for p in a.parameters()) - sum(p.numel() for p in b.parameters()) == extra
    x = torch.rand(2, 1, 24, 24)
    ca, cb = a.encode(x), b.encode(x)
    assert [s.shape[1:] for s in ca.skips] == [(8, 24, 24), (16, 12, 12), (32, 6, 6)] and cb.skips == ()
    assert ca.bottleneck.shape == cb.bottleneck.shape == (2, 64, 3, 3)
    assert a(x).shape == b(x).shape == (2, 2, 24, 24)
    assert a.embed(x).shape == (2, 64) == (2, a.latent_dim)


def test_config_checks():
    with pytest.raises(ConfigError, match="--depth"):
        UNetConfig(depth=0)
    with pytest.raises(ConfigError, match="--num-classes must be ≥ 2"):
        UNetConfig(num_classes=1)
    with pytest.raises(ConfigError, match="one per class"):
        UNetConfig(num_classes=3, class_weights=(1.0, 2.0))
    with pytest.raises(ConfigError, match="needs images"):
        UNetConfig().resolve(DataShape((7,), False))


# ------------------------------------------------------------------------------------------------ losses


def test_losses_match_hand_computed_values():
    # one sample, 2 classes, 1×2 pixels: pixel 0 has p(class 1) = 3/4 and is class 1, pixel 1 has p = 1/2, class 0
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), 0.0]]]])
    y = torch.tensor([[[1, 0]]])
    ce = (math.log(4 / 3) + math.log(2)) / 2  # nats per pixel
    assert L.pixel_cross_entropy(logits, y).item() == pytest.approx(ce, rel=1e-6)
    w = torch.tensor([1.0, 3.0])
    assert L.pixel_cross_entropy(logits, y, w).item() == pytest.approx((3 * math.log(4 / 3) + math.log(2)) / 2)
    # soft Dice of the foreground: intersection 3/4, Σp = 5/4, Σg = 1
    assert L.soft_dice_loss(logits, y, smooth=0.0).item() == pytest.approx(1 - 1.5 / 2.25, rel=1e-6)
    assert L.soft_dice_loss(logits, y, smooth=1.0).item() == pytest.approx(1 - 2.5 / 3.25, rel=1e-6)
    # background included: Dice_0 = 2·(1/2) / (5/4 − ... ) with p0 = (1/4, 1/2), g0 = (0, 1)
    d0 = 2 * 0.5 / (0.75 + 1)
    assert L.soft_dice_loss(logits, y, smooth=0.0, include_background=True).item() == pytest.approx(
        1 - (d0 + 1.5 / 2.25) / 2, rel=1e-6)
    # per-sample values, averaged by the model over the batch
    model = unet(num_classes=2, seg_loss="ce")
    x, yy = torch.rand(3, 1, 8, 8), torch.randint(0, 2, (3, 8, 8))
    expected = L.pixel_cross_entropy(model.logits(x), yy).mean()
    assert model.loss(Batch(x, labels=yy)).total.item() == pytest.approx(expected.item(), rel=1e-6)


# ------------------------------------------------------------------------------------------------ metrics


def test_iou_dice_accuracy_by_hand():
    t = torch.zeros(4, 4, dtype=torch.long)
    p = torch.zeros(4, 4, dtype=torch.long)
    t[1:3, 1:3] = 1
    p[1:3, 2:4] = 1  # shifted one column: TP 2, FP 2, FN 2 for class 1
    m = segmentation_metrics(p, t, 2, ["bg", "fg"])
    assert m["iou_per_class"]["fg"] == pytest.approx(2 / 6)
    assert m["iou_per_class"]["bg"] == pytest.approx(10 / 14)
    assert m["miou"] == pytest.approx((2 / 6 + 10 / 14) / 2)
    assert m["dice_per_class"]["fg"] == pytest.approx(4 / 8) and m["dice_per_class"]["bg"] == pytest.approx(20 / 24)
    assert m["pixel_accuracy"] == pytest.approx(12 / 16)
    perfect = segmentation_metrics(t, t, 3)
    assert perfect["miou"] == perfect["dice"] == perfect["boundary_f1"] == 1.0
    assert perfect["iou_per_class"]["2"] is None  # a class in neither mask is left out of the means


def test_boundary_f1_tolerance_by_hand():
    t = torch.zeros(1, 10, 10, dtype=torch.long)
    p = torch.zeros(1, 10, 10, dtype=torch.long)
    t[0, 3:7, 2:6] = 1
    p[0, 3:7, 5:9] = 1  # the same 4×4 square moved 3 columns right (clear of the image edge)
    assert int(boundaries(t)[0][t[0] == 1].sum()) == 12  # the square's ring
    # tolerance 0: only the shared column matches (4 of 12 each way); 2: 8 of 12; 3: all
    for tol, f1 in ((0, 4 / 12), (2, 8 / 12), (3, 1.0)):
        counts = boundary_counts(p, t, 2, tol)
        assert counts[:, 1].tolist() == [round(12 * f1), 12, round(12 * f1), 12]
        assert boundary_f1_from_counts(counts)[1].item() == pytest.approx(f1)


def test_boundary_f1_matches_brute_force():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 3, (9, 11))
    p = t.copy()
    p[rng.random(t.shape) < 0.2] = rng.integers(0, 3)

    def bnd(m):
        pad = np.pad(m, 1, mode="edge")
        return np.array([[(pad[i:i + 3, j:j + 3] != m[i, j]).any() for j in range(m.shape[1])]
                         for i in range(m.shape[0])])

    counts = boundary_counts(torch.from_numpy(p)[None], torch.from_numpy(t)[None], 3, 2)
    bp, bt = bnd(p), bnd(t)
    for c in range(3):
        a = np.argwhere(bp & (p == c))
        b = np.argwhere(bt & (t == c))
        near = lambda u, v: 0 if len(v) == 0 else sum(((v - q) ** 2).sum(1).min() <= 4 for q in u)  # noqa: E731
        assert counts[:, c].tolist() == [near(a, b), len(a), near(b, a), len(b)]


# ------------------------------------------------------------------------------------------------ augmentation


def test_paired_augmentation_keeps_pairs_and_is_deterministic():
    y = torch.randint(0, 3, (6, 5, 5), dtype=torch.uint8).repeat_interleave(4, 1).repeat_interleave(4, 2)  # blocks
    x = y[:, None].float() / 2
    xa, ya = paired_augment(x, y, torch.Generator().manual_seed(1), elastic_sigma=0.0)
    assert torch.equal(xa[:, 0] * 2, ya.float())  # flips / rotations move image and mask together, exactly
    assert not torch.equal(ya, y)
    xb, yb = paired_augment(x, y, torch.Generator().manual_seed(1), elastic_sigma=0.05)
    xc, yc = paired_augment(x, y, torch.Generator().manual_seed(1), elastic_sigma=0.05)
    assert torch.equal(xb, xc) and torch.equal(yb, yc)
    assert yb.dtype == torch.uint8 and set(yb.unique().tolist()) <= {0, 1, 2}
    assert (torch.round(xb[:, 0] * 2) == yb.float()).float().mean() > 0.9  # still aligned after the warp
    xr, yr = paired_augment(x[..., :15], y[..., :15], torch.Generator().manual_seed(2))  # not square: no transpose
    assert xr.shape == (6, 1, 20, 15) and yr.shape == (6, 20, 15)


def test_unet_resume_is_exact(tmp_path):
    import importlib

    run_mod = importlib.import_module("aekit.train.run")
    opts = dict(TINY, epochs=3, report=False)
    aekit.train("unet", "cells", tmp_path / "full", **opts)

    class Kill(Exception):
        pass

    def kill(epoch, step):
        if epoch == 1 and step == 1:
            raise Kill

    real_fit = run_mod.fit
    run_mod.fit = lambda *a, **kw: real_fit(*a, on_step=kill, **kw)
    try:
        with pytest.raises(Kill):
            aekit.train("unet", "cells", tmp_path / "killed", **opts)
    finally:
        run_mod.fit = real_fit
    aekit.train(resume=tmp_path / "killed", report=False, progress=False)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------ tiling


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_tiled_inference_equals_whole_image(upsample):
    torch.manual_seed(0)
    model = unet((1, 32, 32), upsample=upsample, num_classes=3)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial batch-norm statistics
            model(torch.rand(4, 1, 32, 32))
    model.eval()
    x = torch.rand(1, 1, 150, 203)
    with torch.no_grad():
        whole = model.logits(x)
    tiled = predict_tiled(model, x, tile=96, margin=model.receptive_radius())  # 4 × 5 tiles
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-4
    mask, was_tiled = segment_image(model, x[0])
    assert was_tiled and torch.equal(mask, whole.argmax(1)[0])
    with pytest.raises(ConfigError, match="multiple of 2\\^depth"):
        predict_tiled(model, x, tile=90)
    with pytest.raises(ConfigError, match="no room"):
        predict_tiled(model, x, tile=64, margin=40)


def test_receptive_radius_bounds_the_influence():
    for depth, upsample in ((2, "transpose"), (2, "bilinear"), (3, "bilinear")):
        model = unet((1, 32, 32), depth=depth, base_channels=8, upsample=upsample).eval()
        x = torch.rand(1, 1, 160, 160, requires_grad=True)
        model.logits(x)[0, :, 80, 80].abs().sum().backward()
        ys, xs = (x.grad[0, 0] != 0).nonzero(as_tuple=True)
        assert max((ys - 80).abs().max(), (xs - 80).abs().max()) <= model.receptive_radius()


# ------------------------------------------------------------------------------------------------ end to end


def test_cli_train_evaluate_segment(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--model", "unet", "--data", "cells", "--cells-count", "24", "--image-size", "32", "--depth", "2",
            "--base-channels", "4", "--epochs", "2", "--batch-size", "8", "--no-progress", "--out", str(out)]
    assert main(["-q", "train", *args]) == 0
    assert {"report.html", "segmentations.png", "losses.png", "evaluation.json"} <= {p.name for p in out.iterdir()}
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    for key in ("miou", "dice", "pixel_accuracy", "boundary_f1", "iou_per_class", "boundary_f1_per_class"):
        assert key in ev
    assert set(ev["iou_per_class"]) == {"background", "cell"} and 0 <= ev["miou"] <= 1
    # segment: one image larger than the training size (tiled), one smaller (whole)
    from aekit.data.cells import generate_cells

    big, _ = generate_cells(1, (90, 70), seed=9)
    Image.fromarray(big[0]).save(tmp_path / "big.png")
    Image.fromarray(big[0, :20, :25]).convert("RGB").save(tmp_path / "small.jpg")
    assert main(["-q", "segment", str(out), str(tmp_path / "big.png"), str(tmp_path / "small.jpg"),
                 "--out", str(tmp_path / "seg")]) == 0
    mask = np.asarray(Image.open(tmp_path / "seg" / "big_mask.png"))
    assert mask.shape == (90, 70) and mask.max() <= 1
    overlay = Image.open(tmp_path / "seg" / "small_overlay.png")
    assert overlay.size == (25, 20) and overlay.mode == "RGB"
    # errors: one line, exit 2
    capsys.readouterr()
    assert main(["-q", "segment", str(out), str(tmp_path / "missing.png"), "--out", str(tmp_path / "seg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_segment_refuses_a_non_segmentation_run(tmp_path, capsys):
    aekit.train("ae", "digits", tmp_path / "ae", epochs=1, hidden="8", latent_dim=2, progress=False, report=False)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    assert main(["-q", "segment", str(tmp_path / "ae"), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]) == 2
    assert "not a segmentation model" in capsys.readouterr().err


def test_skip_vs_noskip_quick(tmp_path):
    from aekit.experiments import ExperimentContext, run_experiment

    result = run_experiment("skip-vs-noskip", ExperimentContext(data="cells", out=tmp_path, quick=True,
                                                                  progress=False))
    assert [r["model"] for r in result.rows] == ["skip", "no-skip"]
    assert result.rows[0]["parameters"] > result.rows[1]["parameters"]
    for f in ("results.csv", "results.md", "summary.md", "skip_vs_noskip.png"):
        assert (tmp_path / f).exists()
    assert "boundary F1" in result.summary
    # the finding (and its explanation) only where the numbers show it: 1 − BF without skips ≥ 1.2× the U-Net's
    skip, plain = result.rows
    blurred = 1 - plain["boundary_f1"] >= 1.2 * (1 - skip["boundary_f1"]) and plain["boundary_f1"] < 1
    assert ("Without skip connections the outlines come back blurred:" in result.summary) == blurred
    assert ("bottleneck" in result.summary) == blurred and ("too short to tell" in result.summary) != blurred
