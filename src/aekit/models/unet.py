"""U-Net (Ronneberger, Fischer & Brox 2015) for semantic segmentation: one class per pixel.

Contracting path: ``depth`` levels of :class:`~aekit.models.blocks.DoubleConv` ((3×3 conv → batch norm →
ReLU) × 2) each followed by 2×2 max pooling, channels doubling from ``base_channels``; a bottleneck block;
an expanding path that upsamples (2×2 transposed conv, or ``upsample="bilinear"``: bilinear ×2 then a 1×1
conv) and concatenates the encoder's feature map of the same level (the skip connection) before its block;
a 1×1 conv to ``num_classes`` logits.  ``skip=False`` builds the same network without the concatenations (a
plain encoder-decoder, for the ablation).  Convolutions are padded, and inputs of any height and width are
reflect-padded at the bottom / right to a multiple of 2^depth and the output cropped back, so output pixel
(i, j) is the class of input pixel (i, j).

It fits the autoencoder API: ``encode`` returns a :class:`UNetCode` (bottleneck + skip features),
``decode`` the per-pixel class probabilities, ``embed`` the spatially averaged bottleneck (B, latent_dim),
``forward`` = ``decode(encode(x))``.  It declares ``supervised`` (``loss(batch)`` trains against the masks in
``batch.labels``) and not ``latent_vectors`` (``decode`` takes the :class:`UNetCode` of ``encode``);
``batch_transforms`` gives the paired training augmentation the trainer applies.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import losses as L
from ..config import check, opt
from ..data import Batch, Dataset, DataShape
from ..data.augment import PairedAugment
from ..data.batch import BatchTransform
from ..errors import AekitError, ConfigError, DataError
from .base import Autoencoder, Losses, ModelConfig
from .blocks import DoubleConv


@dataclasses.dataclass(frozen=True)
class UNetConfig(ModelConfig):
    num_classes: int = opt(0, "classes of the per-pixel output; 0: from the data's masks (2 = binary)")
    depth: int = opt(3, "pooling steps (levels); inputs are padded to a multiple of 2^depth")
    base_channels: int = opt(8, "channels of the first level, doubling per level")
    upsample: Literal["transpose", "bilinear"] = opt(
        "transpose", "decoder upsampling: a learned 2×2 transposed conv, or bilinear ×2 then a 1×1 conv")
    skip: bool = opt(True, "concatenate the encoder's features into the decoder (--no-skip: plain encoder-decoder)")
    seg_loss: Literal["ce", "dice", "ce+dice"] = opt(
        "ce+dice", "segmentation loss: per-pixel cross-entropy (nats per pixel), soft Dice loss, or their sum")
    class_weights: tuple[float, ...] = opt((), "cross-entropy weight per class, e.g. 1,3 (empty: all 1)")
    augment: bool = opt(True, "paired flips / 90° rotations / elastic deformation of training batches")
    elastic_sigma: float = opt(0.03, "std of the elastic displacements, as a fraction of the image side (0: off)",
                               scope="--augment")

    def __post_init__(self) -> None:
        check(1 <= self.depth <= 6, "--depth must be between 1 and 6, e.g. --depth 3")
        check(self.base_channels >= 1, "--base-channels must be ≥ 1, e.g. --base-channels 16")
        check(self.num_classes == 0 or self.num_classes >= 2,
              "--num-classes must be ≥ 2 (2 = binary), or 0 to take it from the data")
        check(all(w >= 0 for w in self.class_weights), "--class-weights must be ≥ 0, e.g. --class-weights 1,3")
        check(self.num_classes == 0 or not self.class_weights or len(self.class_weights) == self.num_classes,
              f"--class-weights has {len(self.class_weights)} values for {self.num_classes} classes: give one "
              "per class")
        check(0.0 <= self.elastic_sigma <= 0.2, "--elastic-sigma must be in [0, 0.2], e.g. 0.03 (0 = off)")

    def resolve(self, data: Dataset | DataShape) -> UNetConfig:
        """A copy with the input shape and ``num_classes`` set from the data (checked against ``--num-classes``)."""
        self.check_shape(data)
        if len(data.shape) != 3:
            raise ConfigError(f"--model unet needs images (C, H, W), not data of shape {tuple(data.shape)}: "
                              "use --data cells or --data seg:DIR")
        if isinstance(data, DataShape):
            k = self.num_classes or data.num_classes or 2
            return dataclasses.replace(self, input_shape=tuple(data.shape), num_classes=k)
        y = data.train.y
        if y is None or y.ndim != 3:
            raise DataError(f"--model unet needs segmentation masks, and {data.name!r} has none: "
                            "use --data cells or --data seg:DIR (images/ + masks/)")
        k_data = len(data.classes) if data.classes else int(y.max()) + 1
        top = max(int(s.y.max()) for s in (data.train, data.val, data.test) if s.y is not None and len(s))
        if self.num_classes and top >= self.num_classes:
            raise DataError(f"masks of {data.name!r} hold class id {top} but --num-classes is {self.num_classes}: "
                            f"pass --num-classes {top + 1} or fix the masks (ids 0..{self.num_classes - 1})")
        k = self.num_classes or max(2, k_data)
        if self.class_weights and len(self.class_weights) != k:
            raise ConfigError(f"--class-weights has {len(self.class_weights)} values but the data has {k} classes: "
                              "give one weight per class")
        return dataclasses.replace(self, input_shape=tuple(data.shape), num_classes=k)

    @property
    def classes(self) -> int:
        """The number of output classes (2 while unresolved)."""
        return self.num_classes or 2

    @property
    def multiple(self) -> int:
        return 2 ** self.depth


class UNetCode(NamedTuple):
    """What :meth:`UNet.encode` returns: the bottleneck, the encoder features per level and the input size."""

    bottleneck: torch.Tensor
    skips: tuple[torch.Tensor, ...]  # level 0 (full resolution) first; empty without skip connections
    size: tuple[int, int]  # (H, W) before padding


class Up(nn.Module):
    """×2 upsampling that halves the channels: a 2×2 stride-2 transposed conv, or bilinear then a 1×1 conv."""

    def __init__(self, cin: int, cout: int, mode: str):
        super().__init__()
        self.mode = mode
        self.conv = nn.ConvTranspose2d(cin, cout, 2, stride=2) if mode == "transpose" else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.conv(x)
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


class UNet(Autoencoder):
    supervised: ClassVar[bool] = True  # loss(batch) trains against batch.labels (masks)
    latent_vectors: ClassVar[bool] = False  # decode takes the UNetCode of encode, not code vectors
    units = {"ce": "nats per pixel, averaged over a sample's pixels", "dice_loss": "1 − soft Dice per sample"}

    def __init__(self, config: UNetConfig):
        super().__init__(config)
        c = config
        check(len(c.input_shape) == 3, "UNetConfig.input_shape must be (C, H, W): it is set from the data")
        chans = [c.base_channels * 2 ** i for i in range(c.depth + 1)]
        self.channels = chans
        self.down = nn.ModuleList(DoubleConv(cin, cout) for cin, cout in zip((c.input_shape[0], *chans[:-2]), chans[:-1]))
        self.bottleneck = DoubleConv(chans[-2], chans[-1])
        self.up = nn.ModuleList(Up(chans[i + 1], chans[i], c.upsample) for i in reversed(range(c.depth)))
        self.dec = nn.ModuleList(DoubleConv(chans[i] * (2 if c.skip else 1), chans[i]) for i in reversed(range(c.depth)))
        self.head = nn.Conv2d(chans[0], c.classes, 1)
        weights = torch.tensor(c.class_weights, dtype=torch.float32) if c.class_weights else None
        self._class_weights = weights  # not a buffer: it is config, not state

    # ------------------------------------------------------------------ shapes

    @property
    def num_classes(self) -> int:
        return self.config.classes

    @property
    def latent_dim(self) -> int:
        return self.channels[-1]

    @property
    def size_multiple(self) -> int:
        return self.config.multiple

    def receptive_radius(self) -> int:
        """A bound on how far (pixels) an input pixel can influence an output pixel.

        Per level l (pixel spacing 2^l): the two encoder convs (2·2^l), the pooling (2^l), the upsampling
        (≤ 2·2^l, bilinear) and the two decoder convs (2·2^l); plus the bottleneck's two convs (2·2^depth).
        Overlap-tile inference with at least this margin reproduces whole-image inference exactly.
        """
        d = self.config.depth
        return 7 * (2 ** d - 1) + 2 * 2 ** d

    # ------------------------------------------------------------------ the network

    def encode(self, x: torch.Tensor) -> UNetCode:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        h = self.pad_input(x)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        return UNetCode(self.bottleneck(h), tuple(skips) if self.config.skip else (), size)

    def decode_logits(self, code: UNetCode) -> torch.Tensor:
        if not isinstance(code, UNetCode):
            raise AekitError("a unet decodes only the UNetCode of its own encode (bottleneck + skip features), not "
                             "a latent vector: interpolation and sampling do not apply; use `aekit segment`")
        h = code.bottleneck
        for i, (up, block) in enumerate(zip(self.up, self.dec)):
            h = up(h)
            if self.config.skip:
                h = torch.cat([code.skips[-1 - i], h], dim=1)
            h = block(h)
        out = self.head(h)
        return out[..., : code.size[0], : code.size[1]]

    def decode(self, code: UNetCode) -> torch.Tensor:
        """Per-pixel class probabilities (B, K, H, W): the mean of the categorical p(y | x)."""
        return torch.softmax(self.decode_logits(code), dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised class scores (B, K, H, W), same H × W as ``x``."""
        return self.decode_logits(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck averaged over space: a deterministic code (B, latent_dim)."""
        return self.encode(x).bottleneck.mean(dim=(-2, -1))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class ids (B, H, W), int64."""
        return self.logits(x).argmax(1)

    # ------------------------------------------------------------------ training

    def loss(self, batch: Batch) -> Losses:
        """Segmentation loss (``seg_loss``) against the masks ``batch.labels`` (B, H, W) of class ids.

        Reduction: per-pixel cross-entropy *averaged over a sample's pixels* (nats per pixel) and the soft Dice
        loss 1 − Dice of a sample (in [0, 1]); each is one value per sample, averaged over the batch.
        """
        if batch.labels is None:
            raise ValueError("UNet.loss needs the masks: Batch(x, labels=masks)")
        logits = self.logits(batch.x)
        y = batch.labels.long()
        kind = self.config.seg_loss
        terms: dict[str, torch.Tensor] = {}
        if kind in ("ce", "ce+dice"):
            w = None if self._class_weights is None else self._class_weights.to(logits.device)
            terms["ce"] = L.pixel_cross_entropy(logits, y, w).mean()
        if kind in ("dice", "ce+dice"):
            terms["dice_loss"] = L.soft_dice_loss(logits, y).mean()
        total = sum(terms.values())
        return Losses(total, terms)  # type: ignore[arg-type]

    def batch_transforms(self, data: Dataset) -> list[BatchTransform]:
        """The paired training augmentation (``augment``); none when off."""
        return [PairedAugment(self.config.elastic_sigma)] if self.config.augment else []
