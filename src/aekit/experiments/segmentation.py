"""`aekit experiment skip-vs-noskip --data cells`: what the U-Net's skip connections buy.

Two U-Nets that differ only in ``skip`` (concatenating the encoder's feature maps into the decoder, or not: a
plain encoder-decoder) are trained identically — same data, initial seed, batches, augmentation, epochs — and
evaluated on the test split.  The table has mIoU, Dice, pixel accuracy and boundary F1 (2-pixel tolerance, and
a stricter 1 pixel) of each; the figure shows the same test images segmented by both.  Options (``--set
KEY=VALUE``): ``depth``, ``base_channels``, ``upsample``, ``epochs``, ``batch_size``, ``lr``, ``augment``, and for
``--data cells`` ``image_size``, ``cells_count``, ``cells_difficulty``, ``cells_borders``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Literal

import torch

from ..config import check
from ..data import DataConfig, load_data
from ..errors import DataError
from ..evaluate.segmentation import evaluate_segmentation, predict_masks
from ..models import build_model, get_spec
from ..train.trainer import TrainConfig, fit
from . import ExperimentContext, ExperimentResult, finding, register, too_short

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SkipConfig:
    depth: int = 3
    base_channels: int = 8
    upsample: Literal["transpose", "bilinear"] = "transpose"
    augment: bool = True
    epochs: int = 6
    batch_size: int = 16
    lr: float = 2e-3
    image_size: int | None = None  # cells: side (default 128); seg:DIR: resize to S×S
    cells_count: int = 400
    cells_difficulty: float = 0.5
    cells_borders: bool = False
    n_show: int = 6  # test images in the figure

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "skip-vs-noskip: epochs must be ≥ 1")
        check(self.n_show >= 1, "skip-vs-noskip: n_show must be ≥ 1")


QUICK = {"depth": 2, "base_channels": 4, "epochs": 1, "batch_size": 8, "image_size": 32, "cells_count": 16,
         "n_show": 3}
VARIANTS = {"skip": True, "no-skip": False}


@register("skip-vs-noskip")
def skip_vs_noskip(ctx: ExperimentContext) -> ExperimentResult:
    """The U-Net with and without skip connections, trained identically: mIoU and boundary F1."""
    cfg = ctx.config(SkipConfig, QUICK, "skip-vs-noskip")
    data = load_data(DataConfig(spec=ctx.data, image_size=cfg.image_size, cells_count=cfg.cells_count,
                                cells_difficulty=cfg.cells_difficulty, cells_borders=cfg.cells_borders))
    spec = get_spec("unet")
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=ctx.seed, device="cpu",
                       progress=ctx.progress)
    show = torch.arange(min(cfg.n_show, len(data.test)))
    rows: list[dict[str, Any]] = []
    preds: dict[str, torch.Tensor] = {}
    extra: dict[str, Any] = {"config": dataclasses.asdict(cfg)}
    for name, skip in VARIANTS.items():
        fields = {"depth": cfg.depth, "base_channels": cfg.base_channels, "upsample": cfg.upsample,
                  "augment": cfg.augment, "skip": skip}
        mcfg = spec.make_config(fields, name="unet").resolve(data)
        with torch.random.fork_rng(devices=[]):  # the caller's RNG stays as it was
            torch.manual_seed(ctx.seed)  # identical initialisation of the shared layers' RNG stream
            model = build_model("unet", mcfg)
        t0 = time.perf_counter()
        fit(model, data, tcfg)
        seconds = time.perf_counter() - t0
        ev = evaluate_segmentation(model.eval(), data, "test")
        strict = evaluate_segmentation(model, data, "test", tolerance=1)["boundary_f1"]
        rows.append({"model": name, "parameters": sum(p.numel() for p in model.parameters()),
                     "miou": ev["miou"], "dice": ev["dice"], "pixel_accuracy": ev["pixel_accuracy"],
                     "boundary_f1": ev["boundary_f1"], "boundary_f1_1px": strict, "train_s": round(seconds, 1)})
        extra[name] = ev
        preds[name] = predict_masks(model, data.test.x[show])
        log.info("%s: mIoU %.4f  Dice %.4f  boundary F1 %.4f  (%.0f s)", name, ev["miou"], ev["dice"],
                 ev["boundary_f1"], seconds)
    figure = "skip_vs_noskip.png"
    from ..viz.segmentation import plot_method_comparison

    masks = data.test.y
    if masks is None:  # evaluate_segmentation has already needed them
        raise DataError(f"{data.name}: the test split has no masks")
    plot_method_comparison(data.test.x[show], masks[show], preds, ctx.out / figure,
                           title="the same test images: U-Net with and without skip connections")
    summary = skip_summary(data.name, len(data.test), cfg, ctx.seed, rows[0], rows[1],
                           too_short(ctx, cfg.epochs, SkipConfig.epochs, "epochs"))
    return ExperimentResult("skip-vs-noskip", rows, summary, [figure], extra)


# the finding: without skip connections the boundary error 1 − BF (2 px) is at least 1.2× the U-Net's
BLUR_RATIO = 1.2


def skip_summary(data: str, n_test: int, cfg: SkipConfig, seed: int, a: dict[str, Any], b: dict[str, Any],
                 short: str = "") -> str:
    """skip-vs-noskip's summary from the rows of the U-Net (``a``) and of the network without skips (``b``)."""
    err_a, err_b = 1 - a["boundary_f1"], 1 - b["boundary_f1"]
    blurred = err_b >= BLUR_RATIO * err_a and err_b > 0
    return (
        f"U-Net with vs without skip connections on {data} (test split, n = {n_test}), both trained "
        f"identically ({cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}, depth {cfg.depth}, base "
        f"channels {cfg.base_channels}, {cfg.upsample} upsampling, augmentation {'on' if cfg.augment else 'off'}, "
        f"seed {seed}). mIoU {a['miou']:.4f} vs {b['miou']:.4f}, Dice {a['dice']:.4f} vs {b['dice']:.4f}, "
        f"boundary F1 (2 px) {a['boundary_f1']:.4f} vs {b['boundary_f1']:.4f} (1 px: {a['boundary_f1_1px']:.4f} vs "
        f"{b['boundary_f1_1px']:.4f}).  "
        + finding("without skip connections the outlines come back blurred", blurred,
                  f"the boundary error 1 − BF (2 px) is {_ratio(err_b, err_a)} and 1 − mIoU "
                  f"{_ratio(1 - b['miou'], 1 - a['miou'])} that of the U-Net (threshold {BLUR_RATIO:g}× the "
                  "boundary error)", negation="without skip connections the outlines are not clearly worse",
                  short=short)
        + (f"  Without them every detail must pass through the 1/{2 ** cfg.depth}-resolution bottleneck: the "
           "decoder knows *what* is there but not exactly *where*." if blurred else "")
    )


def _ratio(worse: float, better: float) -> str:
    return f"{worse / better:.1f}×" if better > 1e-9 else ("the same as" if worse <= 1e-9 else "far above")
