"""Segmentation metrics as pure tensor functions, and the evaluation of a segmentation model on a split.

All figures are computed over *every pixel of the split at once* (counts are summed over images, then turned
into ratios), as in the Pascal VOC / Cityscapes protocols:

- ``iou`` of class c = TP / (TP + FP + FN); ``miou`` = mean over the classes present in the ground truth or
  the prediction (background included);
- ``dice`` (= F1) of class c = 2 TP / (2 TP + FP + FN); ``dice`` = mean over the same classes;
- ``pixel_accuracy`` = correctly labelled pixels / all pixels;
- ``boundary_f1`` (Csurka et al. 2013, the BF score): a pixel of class c is a boundary pixel when one of its 8
  neighbours has another class (the image edge is not a boundary).  Precision = the share of predicted boundary
  pixels within ``tolerance`` pixels (Euclidean) of a ground-truth boundary pixel of the same class; recall the
  other way round; F1 per class from the summed counts, then the mean over classes with a boundary in the ground
  truth or the prediction.  The default tolerance is 2 pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

TOLERANCE = 2


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts, rows = true class, columns = predicted class."""
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores_from_confusion(cm: torch.Tensor) -> dict[str, Any]:
    """Per-class IoU and Dice (NaN where the class is in neither prediction nor target) and pixel accuracy."""
    cm = cm.double()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    denom = tp + fp + fn
    nan = torch.full_like(tp, math.nan)
    iou = torch.where(denom > 0, tp / denom.clamp_min(1), nan)
    dice = torch.where(denom > 0, 2 * tp / (2 * tp + fp + fn).clamp_min(1), nan)
    return {"iou": iou, "dice": dice, "pixel_accuracy": float(tp.sum() / cm.sum().clamp_min(1))}


def boundaries(labels: torch.Tensor) -> torch.Tensor:
    """Bool (B, H, W): pixels with an 8-neighbour of another class (edge pixels are replicated outward)."""
    lab = labels.float()[:, None]
    pad = F.pad(lab, (1, 1, 1, 1), mode="replicate")
    hi = F.max_pool2d(pad, 3, stride=1)
    lo = -F.max_pool2d(-pad, 3, stride=1)
    return ((hi != lab) | (lo != lab))[:, 0]


def _disk(radius: int) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).float()[None, None]


def _near(mask: torch.Tensor, tolerance: int) -> torch.Tensor:
    """Bool (N, H, W): pixels within ``tolerance`` (Euclidean) of a True pixel of ``mask`` (N, H, W)."""
    if tolerance <= 0:
        return mask
    hit = F.conv2d(mask.float()[:, None], _disk(tolerance).to(mask.device), padding=tolerance)
    return hit[:, 0] > 0.5


def boundary_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                    tolerance: int = TOLERANCE) -> torch.Tensor:
    """(4, K) int64: per class, matched predicted boundary pixels, predicted boundary pixels, matched
    ground-truth boundary pixels, ground-truth boundary pixels.  ``pred``, ``target``: (B, H, W) class ids."""
    bp, bt = boundaries(pred), boundaries(target)
    out = torch.zeros(4, num_classes, dtype=torch.int64)
    for c in range(num_classes):  # a loop over classes; everything per pixel is vectorised
        p = bp & (pred == c)
        t = bt & (target == c)
        out[0, c] = (p & _near(t, tolerance)).sum()
        out[1, c] = p.sum()
        out[2, c] = (t & _near(p, tolerance)).sum()
        out[3, c] = t.sum()
    return out


def boundary_f1_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Per-class boundary F1 (K,) from :func:`boundary_counts` (summed over images); NaN where no boundary."""
    c = counts.double()
    precision = c[0] / c[1].clamp_min(1)
    recall = c[2] / c[3].clamp_min(1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12),
                     torch.zeros_like(precision))
    return torch.where((c[1] + c[3]) > 0, f1, torch.full_like(f1, math.nan))


def _nanmean(t: torch.Tensor) -> float | None:
    ok = ~torch.isnan(t)
    return float(t[ok].mean()) if ok.any() else None


def _per_class(t: torch.Tensor, names: Sequence[str]) -> dict[str, float | None]:
    return {str(n): (None if math.isnan(v) else float(v)) for n, v in zip(names, t.tolist())}


class SegmentationMeter:
    """Accumulates the confusion matrix and the boundary counts over batches."""

    def __init__(self, num_classes: int, tolerance: int = TOLERANCE):
        self.k = num_classes
        self.tolerance = tolerance
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.bcounts = torch.zeros(4, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = pred.long().cpu(), target.long().cpu()
        self.cm += confusion_matrix(pred, target, self.k)
        self.bcounts += boundary_counts(pred, target, self.k, self.tolerance)

    def result(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        names = list(names) if names is not None and len(names) == self.k else [str(c) for c in range(self.k)]
        s = scores_from_confusion(self.cm)
        bf = boundary_f1_from_counts(self.bcounts)
        return {
            "miou": _nanmean(s["iou"]), "dice": _nanmean(s["dice"]), "pixel_accuracy": s["pixel_accuracy"],
            "boundary_f1": _nanmean(bf),
            "iou_per_class": _per_class(s["iou"], names), "dice_per_class": _per_class(s["dice"], names),
            "boundary_f1_per_class": _per_class(bf, names),
        }


def segmentation_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                         class_names: Sequence[str] | None = None, tolerance: int = TOLERANCE) -> dict[str, Any]:
    """Every metric of this module for predictions ``pred`` vs ``target`` ((B, H, W) or (H, W) class ids)."""
    if pred.ndim == 2:
        pred, target = pred[None], target[None]
    meter = SegmentationMeter(num_classes, tolerance)
    meter.update(pred, target)
    return meter.result(class_names)


@torch.no_grad()
def predict_masks(model: Any, x: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Class ids (N, H, W) int64 for images ``x`` (uint8 or float (N, C, H, W)), in batches."""
    from ..data import iterate_batches, to_float

    model.eval()
    out = [model.predict(to_float(x[idx]).to(model.device)).cpu()
           for idx in iterate_batches(len(x), batch_size, shuffle=False)]
    return torch.cat(out) if out else torch.zeros(0, *x.shape[-2:], dtype=torch.int64)


@torch.no_grad()
def evaluate_segmentation(model: Any, data: Any, split: str = "test", batch_size: int = 32,
                          tolerance: int = TOLERANCE) -> dict[str, Any]:
    """``miou``, ``dice``, ``pixel_accuracy``, ``boundary_f1`` (+ per class) and the loss terms of ``split``."""
    from ..data import iterate_batches, to_float
    from ..models.batching import mean_losses

    s = data.split(split)
    model.eval()
    meter = SegmentationMeter(model.num_classes, tolerance)
    for idx in iterate_batches(len(s), batch_size, shuffle=False):
        pred = model.predict(to_float(s.x[idx]).to(model.device))
        meter.update(pred, s.y[idx])
    result: dict[str, Any] = {"n": len(s), "split": split, "data": data.name, "tolerance_px": tolerance}
    result.update(meter.result(data.classes))
    result.update(mean_losses(model, s, batch_size))
    return result
