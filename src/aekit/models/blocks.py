"""Layers shared by the models: activations, MLP stacks, a tied-weight decoder, conv encoder/decoder."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

Activation = Literal["relu", "gelu", "silu", "elu", "leaky_relu", "tanh", "sigmoid", "linear"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}


def activation(name: str) -> nn.Module:
    return _ACTIVATIONS[name]()


Norm = Literal["none", "batch", "layer"]


def mlp(sizes: list[int], act: str, last_act: bool = False, norm: str = "none") -> nn.Sequential:
    """Linear layers through ``sizes`` with [norm →] ``act`` between them (and after the last if ``last_act``)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_act:
            if norm == "batch":
                layers.append(nn.BatchNorm1d(b))
            elif norm == "layer":
                layers.append(nn.LayerNorm(b))
            layers.append(activation(act))
    return nn.Sequential(*layers)


class TiedDecoder(nn.Module):
    """Decoder whose weights are the encoder's transposed (Wᵀ): one shared parameter per layer.

    Only the biases are its own.  Changing an encoder weight changes the decoder.
    """

    def __init__(self, encoder: nn.Sequential, act: str):
        super().__init__()
        self._linears = [m for m in encoder if isinstance(m, nn.Linear)][::-1]  # plain list: not re-registered
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(m.in_features)) for m in self._linears])
        self.act = activation(act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        last = len(self._linears) - 1
        for i, (lin, b) in enumerate(zip(self._linears, self.biases)):
            h = F.linear(h, lin.weight.t(), b)
            if i < last:
                h = self.act(h)
        return h


def conv_sizes(size: tuple[int, int], n: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 (k=4, p=1) conv: H → ⌊H/2⌋."""
    out = [size]
    for _ in range(n):
        h, w = out[-1]
        out.append((h // 2, w // 2))
    return out


class ConvEncoder(nn.Module):
    """Stride-2 convolutions (k=4, p=1) halving the resolution per layer, then fully connected ``fc`` layers
    (none by default; the β-VAE reference has one of 256) and a linear head to ``out_dim``."""

    def __init__(self, in_shape: tuple[int, ...], channels: tuple[int, ...], out_dim: int, act: str,
                 fc: tuple[int, ...] = ()):
        super().__init__()
        c, h, w = in_shape
        sizes = conv_sizes((h, w), len(channels))
        if min(sizes[-1]) < 1:
            raise ValueError(f"{len(channels)} conv layers are too many for {h}x{w} inputs")
        layers: list[nn.Module] = []
        for cin, cout in zip((c, *channels[:-1]), channels):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), activation(act)]
        self.features = nn.Sequential(*layers)
        self.flat_dim = channels[-1] * sizes[-1][0] * sizes[-1][1]
        self.fc = mlp([self.flat_dim, *fc], act, last_act=True)  # empty (no parameters) when fc is ()
        self.head = nn.Linear(fc[-1] if fc else self.flat_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc(self.features(x).flatten(1)))


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: the ``fc`` layers reversed, a linear layer to the smallest feature map,
    then stride-2 transposed convs back to the exact input size."""

    def __init__(self, out_shape: tuple[int, ...], channels: tuple[int, ...], in_dim: int, act: str,
                 fc: tuple[int, ...] = ()):
        super().__init__()
        c, h, w = out_shape
        sizes = conv_sizes((h, w), len(channels))
        self.start = (channels[-1], *sizes[-1])
        self.hidden = mlp([in_dim, *fc[::-1]], act, last_act=True)  # empty (no parameters) when fc is ()
        self.fc = nn.Sequential(nn.Linear(fc[0] if fc else in_dim, math.prod(self.start)), activation(act))
        layers: list[nn.Module] = []
        rev = channels[::-1]
        outs = (*rev[1:], c)
        for i, (cin, cout) in enumerate(zip(rev, outs)):
            (sh, sw), (th, tw) = sizes[-1 - i], sizes[-2 - i]
            layers.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1, output_padding=(th - 2 * sh, tw - 2 * sw)))
            if i < len(rev) - 1:
                layers.append(activation(act))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(self.hidden(z)).view(-1, *self.start))


class DoubleConv(nn.Sequential):
    """U-Net block: (3×3 conv, padding 1 → batch norm → ReLU) × 2; keeps the spatial size.

    Batch norm (not group/instance norm) on purpose: in eval mode it is a per-pixel affine map, so the
    network stays exactly translation-equivariant and overlap-tile inference reproduces whole-image inference.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


def conv_down(cin: int, channels: tuple[int, ...], act: str) -> nn.Sequential:
    """The feature stack of :class:`ConvEncoder` without its head: stride-2 convs (k=4, p=1), each followed by
    ``act``; a (C, H, W) input becomes (channels[-1], ⌊H/2^n⌋, ⌊W/2^n⌋) (a grid, not a vector)."""
    layers: list[nn.Module] = []
    for a, b in zip((cin, *channels[:-1]), channels):
        layers += [nn.Conv2d(a, b, 4, 2, 1), activation(act)]
    return nn.Sequential(*layers)


def conv_up(size: tuple[int, ...], channels: tuple[int, ...], cout: int, act: str) -> nn.Sequential:
    """The transposed-conv stack of :class:`ConvDecoder`: from (channels[-1], grid) back to (cout, *size)
    exactly, ``size`` = (H, W) (``output_padding`` restores odd sizes), ``act`` between layers, none after the
    last."""
    sizes = conv_sizes((size[0], size[1]), len(channels))
    rev = channels[::-1]
    outs = (*rev[1:], cout)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(rev, outs)):
        (sh, sw), (th, tw) = sizes[-1 - i], sizes[-2 - i]
        layers.append(nn.ConvTranspose2d(a, b, 4, 2, 1, output_padding=(th - 2 * sh, tw - 2 * sw)))
        if i < len(rev) - 1:
            layers.append(activation(act))
    return nn.Sequential(*layers)


class MaskedConv2d(nn.Conv2d):
    """A PixelCNN convolution (van den Oord et al. 2016) over one categorical variable per position, raster
    order: mask ``"A"`` (first layer) sees only the positions before the centre, ``"B"`` also the centre.  A
    stack of one A layer and any number of B layers is causal: output (i, j) depends only on inputs before
    (i, j) in raster order."""

    mask: torch.Tensor

    def __init__(self, cin: int, cout: int, kernel: int, mask: str):
        if kernel % 2 != 1 or mask not in ("A", "B"):
            raise ValueError(f"MaskedConv2d needs an odd kernel and mask A or B, not {kernel}, {mask!r}")
        super().__init__(cin, cout, kernel, padding=kernel // 2)
        m = torch.ones(kernel, kernel)
        c = kernel // 2
        m[c, c + (1 if mask == "B" else 0):] = 0
        m[c + 1:] = 0
        self.register_buffer("mask", m[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class PixelCNN(nn.Module):
    """A small PixelCNN prior over a (H, W) grid of ``classes``-way categorical indices: an embedding, one
    mask-A convolution of kernel k + 2, ``layers`` residual mask-B blocks (ReLU → masked k×k conv → ReLU → 1×1
    conv), a 1×1 head to ``classes`` logits per position (k = ``kernel``).  ``forward(idx)`` takes int64
    (B, H, W) indices (or a float (B, classes, H, W) one-hot, for gradient checks) and returns (B, classes, H, W)
    logits; position p's logits depend only on the indices before p in raster order (no gated units, so it keeps
    the original PixelCNN's blind spot)."""

    def __init__(self, classes: int, channels: int = 64, layers: int = 4, kernel: int = 3):
        super().__init__()
        self.classes = classes
        self.embed = nn.Conv2d(classes, channels, 1, bias=False)  # = an embedding table on one-hot inputs
        self.first = MaskedConv2d(channels, channels, kernel + 2, "A")
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), MaskedConv2d(channels, channels, kernel, "B"), nn.ReLU(),
                          nn.Conv2d(channels, channels, 1)) for _ in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, classes, 1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        onehot = idx if idx.is_floating_point() else F.one_hot(idx, self.classes).permute(0, 3, 1, 2).float()
        h = self.first(self.embed(onehot))
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)




class _GatedLayer(nn.Module):
    """One layer of the gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
    Decoders"): a vertical stack (a k//2+1 × k convolution over this row and the k//2 rows above of the
    vertical features; with ``first``, over the rows above only: its kernel's last row is masked) and a
    horizontal stack (a 1 × k//2+1 convolution over this position and the k//2 before it on the row; with
    ``first``, the ones before only), each through the gate tanh(a) ⊙ σ(b); the vertical features feed the
    horizontal ones (1×1), and the horizontal output is residual after the first layer.  Causal by induction
    from the first layer: vertical features at row r depend only on input rows above r, so the vertical-to-
    horizontal link carries nothing of the current row or to its right."""

    vmask: torch.Tensor
    hmask: torch.Tensor

    def __init__(self, channels: int, kernel: int, first: bool):
        super().__init__()
        half = kernel // 2
        self.first = first
        self.vertical = nn.Conv2d(channels, 2 * channels, (half + 1, kernel), padding=(half, half))
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, half + 1), padding=(0, half))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        vmask, hmask = torch.ones(half + 1, kernel), torch.ones(1, half + 1)
        if first:  # the first layer must not see the current position: its row (vertical), itself (horizontal)
            vmask[-1] = 0
            hmask[0, -1] = 0
        self.register_buffer("vmask", vmask[None, None], persistent=False)
        self.register_buffer("hmask", hmask[None, None], persistent=False)

    @staticmethod
    def gate(x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = v.shape[-2:]
        # padded output row r sees input rows r − k//2 … r: cropping to the first `rows` keeps rows ≤ r
        hv = F.conv2d(v, self.vertical.weight * self.vmask, self.vertical.bias, padding=self.vertical.padding)
        hv = hv[:, :, :rows]
        hh = F.conv2d(h, self.horizontal.weight * self.hmask, self.horizontal.bias, padding=self.horizontal.padding)
        hh = hh[:, :, :, :cols]
        out = self.h_out(self.gate(hh + self.v_to_h(hv)))
        return self.gate(hv), out if self.first else out + h


class GatedPixelCNN(nn.Module):
    """The gated PixelCNN prior (van den Oord et al. 2016) over a (H, W) grid of ``classes``-way categorical
    indices, with :class:`PixelCNN`'s interface: an embedding, a first layer that does not see the current
    position, ``layers`` more gated layers (vertical + horizontal stacks, no blind spot: position p sees every
    earlier position within its receptive field), a 1×1 head to ``classes`` logits per position.  The first
    layer's kernel is ``kernel + 2``, as PixelCNN's mask-A convolution."""

    def __init__(self, classes: int, channels: int = 64, layers: int = 4, kernel: int = 3):
        super().__init__()
        self.classes = classes
        self.embed = nn.Conv2d(classes, channels, 1, bias=False)  # = an embedding table on one-hot inputs
        self.first = _GatedLayer(channels, kernel + 2, first=True)
        self.blocks = nn.ModuleList(_GatedLayer(channels, kernel, first=False) for _ in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, classes, 1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        onehot = idx if idx.is_floating_point() else F.one_hot(idx, self.classes).permute(0, 3, 1, 2).float()
        x = self.embed(onehot)
        v, h = self.first(x, x)
        for block in self.blocks:
            v, h = block(v, h)
        return self.head(h)
