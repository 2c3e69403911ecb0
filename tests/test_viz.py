"""Figures and the HTML report: every plot writes a real PNG, grid layout math is exact, reports are complete."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aekit.data import DataConfig, DataShape
from aekit.evaluate import evaluate
from aekit.models import MODELS, build_model
from aekit.train.run import Run
from aekit.train.trainer import TrainConfig, fit
from aekit.viz import (
    make_grid,
    plot_error_histogram,
    plot_interpolation,
    plot_latent_scatter,
    plot_losses,
    plot_manifold,
    plot_reconstructions,
    plot_samples,
    project_2d,
    save_image_grid,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_size: tuple[int, int] = (20, 20)) -> tuple[int, int]:
    """A readable, non-blank PNG of at least ``min_size``; returns its (width, height)."""
    path = Path(path)
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        size = im.size
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert size[0] >= min_size[0] and size[1] >= min_size[1], size
    assert pixels.std() > 1.0, f"{path.name} looks blank"
    assert not list(path.parent.glob(f".{path.name}.*.tmp")), "temporary file left behind"
    return size


def tiny_model(name: str, data, **options):
    defaults = {} if name in ("pca", "unet") else {"hidden": [16]}
    cfg = MODELS[name].make_config({**defaults, **options}).resolve(DataShape(data.shape, data.in_unit_interval))
    return build_model(name, cfg)


TRAIN1 = TrainConfig(epochs=1, batch_size=256, progress=False, device="cpu")


def make_run(path: Path, name: str, data, spec: str, *, train: bool = True, **options) -> Run:
    model = tiny_model(name, data, **options)
    rows = fit(model, data, TRAIN1, None) if train else []
    return Run(path, name, model, DataConfig(spec), TRAIN1, rows, evaluate(model, data, "test"))


# ------------------------------------------------------------------------------------------- make_grid


def test_make_grid_layout_is_exact():
    images = torch.stack([torch.full((1, 2, 2), v) for v in (0.1, 0.5, 0.9)])
    p = 1
    grid = make_grid(images, nrow=2, padding=p, pad_value=0.25)
    # 2 columns, 2 rows: (rows·(H + p) + p, cols·(W + p) + p, C)
    assert grid.shape == (2 * (2 + p) + p, 2 * (2 + p) + p, 1) == (7, 7, 1)
    assert grid.dtype == np.float32
    np.testing.assert_allclose(grid[1:3, 1:3, 0], 0.1)
    np.testing.assert_allclose(grid[1:3, 4:6, 0], 0.5)
    np.testing.assert_allclose(grid[4:6, 1:3, 0], 0.9)
    np.testing.assert_allclose(grid[4:6, 4:6, 0], 0.25)  # the unused cell is padding
    for line in (0, 3, 6):  # padding rows and columns
        np.testing.assert_allclose(grid[line, :, 0], 0.25)
        np.testing.assert_allclose(grid[:, line, 0], 0.25)


def test_make_grid_rgb_uint8_clamp_and_fewer_images_than_nrow():
    rgb = np.zeros((2, 3, 4, 5), np.uint8)
    rgb[1, 0] = 255  # second image pure red
    grid = make_grid(rgb, nrow=8, padding=2)
    assert grid.shape == (4 + 4, 2 * (5 + 2) + 2, 3)
    np.testing.assert_allclose(grid[2:6, 9:14], np.broadcast_to([1.0, 0.0, 0.0], (4, 5, 3)))
    np.testing.assert_allclose(grid[2:6, 2:7], 0.0)
    # floats are clamped to [0, 1]; (N, H, W) gains one channel; NaN shows as 0
    out = make_grid(torch.tensor([[[-3.0, 7.0], [float("nan"), 0.5]]]), nrow=1, padding=0)
    np.testing.assert_allclose(out[:, :, 0], [[0.0, 1.0], [0.0, 0.5]])
    with pytest.raises(ValueError):
        make_grid(torch.zeros(0, 1, 2, 2))
    with pytest.raises(ValueError):
        make_grid(torch.zeros(4, 5))


def test_save_image_grid_size_matches_make_grid(tmp_path):
    images = torch.rand(5, 1, 8, 8)
    path = save_image_grid(images, tmp_path / "g.png", nrow=3, scale=1)
    h, w, _ = make_grid(images, 3).shape
    assert assert_png(path, (1, 1)) == (w, h)
    path = save_image_grid(torch.rand(5, 3, 7, 9), tmp_path / "rgb.png", nrow=2, scale=3)
    h, w, _ = make_grid(torch.rand(5, 3, 21, 27), 2).shape
    assert assert_png(path) == (w, h)
    # tiny images are upscaled by default so digits are readable; a title adds a band on top
    width, height = assert_png(save_image_grid(images, tmp_path / "up.png", nrow=5, title="digits"))
    assert width >= 5 * 8 * 4 and height > make_grid(images, 5).shape[0] * 4


# ------------------------------------------------------------------------------------------- plots


def test_plot_losses(tmp_path):
    rows = [{"epoch": float(e), "train_loss": 10.0 / e, "val_loss": 11.0 / e, "train_recon": 9.0 / e,
             "val_recon": 10.0 / e, "train_kl": 1.0, "val_kl": 1.1, "lr": 1e-3, "time_s": 0.1} for e in range(1, 6)]
    assert_png(plot_losses(rows, tmp_path / "losses.png"), (300, 150))
    # a closed-form model has one row and no validation columns
    assert_png(plot_losses([{"epoch": 1.0, "train_loss": 3.0, "train_recon": 3.0}], tmp_path / "one.png"))
    with pytest.raises(ValueError):
        plot_losses([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_plot_reconstructions_images_and_tables(tmp_path):
    x = torch.rand(12, 1, 8, 8)
    w, h = assert_png(plot_reconstructions(x, x.flip(0), tmp_path / "img.png", n=10))
    assert w > h  # two rows of ten
    t = torch.randn(8, 7)
    assert_png(plot_reconstructions(t, t * 0.9, tmp_path / "tab.png", n=4,
                                    feature_names=[f"f{i}" for i in range(7)]), (300, 150))


def test_project_2d_uses_pca_above_two_dims():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 5)) * np.array([5.0, 0.1, 2.0, 0.1, 0.1])
    xy, (xl, yl) = project_2d(torch.from_numpy(z).float())
    assert xl.startswith("PC1 of codes") and yl.startswith("PC2 of codes")
    assert xy.shape == (300, 2)
    zc = z - z.mean(0)
    _, vecs = np.linalg.eigh(zc.T @ zc)
    ref = zc @ vecs[:, ::-1][:, :2]  # projections on the top two eigenvectors of the covariance
    for j in range(2):  # equal up to sign
        corr = np.corrcoef(xy[:, j], ref[:, j])[0, 1]
        assert abs(corr) > 0.999
    z2 = rng.normal(size=(10, 2))
    xy2, labels2 = project_2d(z2)
    np.testing.assert_allclose(xy2, z2)
    assert labels2 == ("z0", "z1")  # units numbered from z0, as encode and traverse do
    xy1, labels1 = project_2d(z2[:, :1])
    np.testing.assert_allclose(xy1[:, 0], z2[:, 0])
    assert "jitter" in labels1[1]


def test_plot_latent_scatter_variants(tmp_path):
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(6000, 4, generator=g)
    labels = torch.randint(0, 3, (6000,), generator=g)
    assert_png(plot_latent_scatter(codes, labels, ("cat", "dog", "eel"), tmp_path / "a.png", "codes"), (300, 200))
    assert_png(plot_latent_scatter(codes[:50, :1], None, None, tmp_path / "b.png", "1-d"))
    assert_png(plot_latent_scatter(codes[:200, :2], torch.arange(200) % 30, None, tmp_path / "c.png", "many"))


def test_interpolation_samples_and_errors(tmp_path):
    strip = torch.rand(10, 1, 8, 8)
    w, h = assert_png(plot_interpolation(strip, tmp_path / "i.png", title="a → b"))
    assert w > 4 * h
    assert_png(plot_interpolation(torch.randn(10, 7), tmp_path / "it.png"))
    assert_png(plot_samples(torch.rand(16, 3, 10, 12), tmp_path / "s.png", nrow=4))
    with pytest.raises(ValueError):
        plot_samples(torch.randn(4, 7), tmp_path / "bad.png")
    errors = torch.rand(100) * 5
    assert_png(plot_error_histogram(errors, tmp_path / "e.png"))
    assert_png(plot_error_histogram(errors, tmp_path / "el.png", labels=torch.arange(100) % 4,
                                    classes=("a", "b", "c", "d")))


def test_plot_manifold(tmp_path, digits):
    vae = tiny_model("vae", digits, latent_dim=2)
    w, h = assert_png(plot_manifold(vae, tmp_path / "m.png", n=6), (200, 200))
    assert 0.8 < w / h < 1.25
    with pytest.raises(ValueError):
        plot_manifold(tiny_model("vae", digits, latent_dim=3), tmp_path / "m3.png")


# ------------------------------------------------------------------------------------------- report


def check_report(report: Path, run: Run) -> list[str]:
    """The report's <img> files exist and are PNGs; every metric name is on the page.  Returns the images."""
    assert report == run.path / "report.html" and report.is_file()
    text = report.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "could not be drawn" not in text
    for key in run.evaluation or {}:  # a row of the metrics table, or a column of the per-class table
        assert f"<th>{key}</th>" in text or f"<code>{key}</code></th>" in text, key
    images = re.findall(r'<img src="([^"]+)"', text)
    assert images and len(images) == len(set(images))
    for name in images:
        assert "/" not in name and name.endswith(".png")
        assert_png(run.path / name)
    assert sorted(p.name for p in run.path.glob("*.png")) == sorted(images)
    assert "<details>" in text and "model_config" in text
    return images


def test_report_ae_on_digits(tmp_path, digits):
    run = make_run(tmp_path / "ae", "ae", digits, "digits", latent_dim=3)
    images = check_report(write_report(run, digits), run)
    assert {"losses.png", "reconstructions.png", "interpolation.png", "latent.png", "errors.png"} == set(images)
    text = (run.path / "report.html").read_text()
    assert "sse_per_image" in text and "ae on digits" in text
    assert "principal components" in text  # latent 3 → PCA-projected scatter
    assert "latent dim 3" in text.split("<h2>")[0]
    for key in ("mean_abs_activation", "fraction_inactive", "dead_units"):  # code-activity rows have meanings
        assert key in run.evaluation
        note = re.search(rf'<tr><th>{key}</th><td[^>]*>[^<]*</td><td class="note">([^<]*)</td>', text).group(1)
        assert len(note) > 20, (key, note)
    assert "|a| &lt; 0.01" in text or "|a| < 0.01" in text


def test_report_vae_latent2_has_manifold_and_samples(tmp_path, digits):
    run = make_run(tmp_path / "vae", "vae", digits, "digits", latent_dim=2)
    images = check_report(write_report(run, digits), run)
    assert {"samples.png", "manifold.png", "losses.png"} <= set(images)
    text = (run.path / "report.html").read_text()
    for key in ("elbo", "kl", "recon", "nats per sample"):
        assert key in text


def test_report_table_dataset(tmp_path, tiny_table):
    run = make_run(tmp_path / "tab", "vae", tiny_table, "csv:<t>&.csv", latent_dim=2)
    images = check_report(write_report(run, tiny_table), run)
    assert "samples.png" not in images and "manifold.png" not in images  # image-only figures
    assert {"reconstructions.png", "latent.png", "errors.png", "interpolation.png"} <= set(images)
    text = (run.path / "report.html").read_text()
    assert "standardised units" in text
    assert "csv:&lt;t&gt;&amp;.csv" in text and "<t>" not in text  # every string is escaped


def test_report_without_metrics_or_evaluation(tmp_path, tiny_images):
    model = tiny_model("pca", tiny_images, latent_dim=2)
    model.fit(tiny_images.train.x.float() / 255)
    run = Run(tmp_path / "pca", "pca", model, DataConfig("tiny"), TRAIN1, [], None)
    images = check_report(write_report(run, tiny_images), run)
    assert "losses.png" not in images
    text = (run.path / "report.html").read_text()
    assert "No training metrics recorded" in text and "No evaluation recorded" in text
    with pytest.raises(ValueError):
        write_report(Run(None, "pca", model, DataConfig("tiny"), TRAIN1, [], None), tiny_images)


@pytest.fixture(scope="module")
def tiny_cells():
    from aekit.data import make_dataset
    from aekit.data.cells import generate_cells

    x, y = generate_cells(30, 32, 0.5, seed=0)
    return make_dataset("cells", "image", DataConfig("cells"), x, y, classes=("background", "cell"))


def test_report_unet_fits_segmentation(tmp_path, tiny_cells):
    run = make_run(tmp_path / "unet", "unet", tiny_cells, "cells", depth=1, base_channels=4)
    images = check_report(write_report(run, tiny_cells), run)
    assert "segmentations.png" in images and "errors.png" not in images
    text = (run.path / "report.html").read_text()
    header = text.split("<h2>")[0]
    assert "latent dim" not in header and "segmentation, 2 classes per pixel" in header
    evaluation = text.split("<h2>Evaluation</h2>")[1].split("<h2>")[0]
    for absent in ("sse_per_image", "elbo", "ELBO", "nats per sample"):  # reconstruction / VAE words
        assert absent not in evaluation, absent
    assert "every pixel of the split" in evaluation and "nats per pixel" in evaluation
    # per-class scores: a table row per class name, 4 decimals, not a JSON dump with 16 digits
    ev = run.evaluation
    for name in ("background", "cell"):
        row = re.search(rf"<tr><th>{name}</th>(.*?)</tr>", evaluation).group(1)
        values = re.findall(r'<td class="num">([^<]+)</td>', row)
        expect = [ev[k][name] for k in ("iou_per_class", "dice_per_class", "boundary_f1_per_class")]
        assert values == [f"{v:.4f}" if v is not None else "–" for v in expect]
    assert '{"background"' not in evaluation and not re.search(r"\d\.\d{9,}", evaluation)


COLLAPSE = {"collapsed": True, "active_units": 0, "latent_dim": 8, "kl_nats": 0.0046, "kl_threshold_nats": 0.5,
            "rule": "active units = 0 or validation KL < 0.5 nats per sample",
            "hint": "train with --beta-warmup-epochs 10 or --free-bits 0.5"}


def test_report_posterior_collapse_banner(tmp_path, digits):
    from aekit.viz.report import _collapse_banner

    run = make_run(tmp_path / "vae", "vae", digits, "digits", train=False, latent_dim=8)
    run.evaluation = {**run.evaluation, "posterior_collapse": COLLAPSE}
    text = write_report(run, digits).read_text()
    banner = re.search(r'<div class="banner"[^>]*>(.*?)</div>', text, re.S)
    assert banner and text.index('class="banner"') < text.index("<h2>Evaluation</h2>")  # at the top
    for fact in ("Posterior collapse", "0 of 8 latent units", "0.0046 nats", "0.5 nats", COLLAPSE["rule"],
                 COLLAPSE["hint"][1:]):
        assert html.escape(fact, quote=False) in banner.group(1), fact
    row = re.search(r"<tr><th>posterior_collapse</th><td[^>]*>([^<]*)</td>", text).group(1)
    assert row.startswith("collapsed: 0 of 8")
    # a healthy run, an older run without the field, or a partial record: no banner, nothing breaks
    for evaluation in ({"posterior_collapse": {**COLLAPSE, "collapsed": False}}, {"elbo": -30.0}, None,
                       {"posterior_collapse": "yes"}):
        assert _collapse_banner(evaluation) == ""
    assert "? of ? latent units" in _collapse_banner({"posterior_collapse": {"collapsed": True}})


def test_error_histogram_labels_fit_and_name_sse(tmp_path):
    from aekit.viz.plots import error_histogram_figure

    fig = error_histogram_figure(torch.rand(200) * 30, torch.arange(200) % 10, classes=[f"c{i}" for i in range(10)],
                                 xlabel="SSE per image (inputs scaled to [0, 1])")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax in axes:
        for label in (ax.xaxis.label, ax.yaxis.label, ax.title):
            ext = label.get_window_extent(renderer)
            assert ext.width > 0 and box.x0 <= ext.x0 and ext.x1 <= box.x1 and box.y0 <= ext.y0 and ext.y1 <= box.y1, \
                (label.get_text(), ext, box)
    texts = " ".join(t.get_text() for ax in axes for t in (ax.xaxis.label, ax.yaxis.label, ax.title))
    assert "SSE" in texts and "squared error per" not in texts.replace("\n", " ")  # no "mean squared error" wording
    assert_png(plot_error_histogram(torch.rand(50), tmp_path / "e.png", torch.arange(50) % 2))
