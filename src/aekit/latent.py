"""Working in latent space: batch encoding, interpolation (linear / spherical), sampling and traversals."""

from __future__ import annotations

import torch

from .data import iterate_batches, to_float
from .errors import ConfigError
from .models.base import Autoencoder


@torch.no_grad()
def encode_all(model: Autoencoder, x: torch.Tensor, batch_size: int = 1000,
               labels: torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic codes (``model.embed``) of every row of ``x`` (uint8 or float), shape (N, latent_dim);
    ``labels`` (N,): the class ids of a ``conditional`` model's q(z|x, y)."""
    model.eval()
    out = [model.embed(to_float(x[idx]).to(model.device),
                       **model.label_kwargs(None if labels is None else labels[idx.to(labels.device)])).float().cpu()
           for idx in iterate_batches(len(x), batch_size, shuffle=False)]
    return torch.cat(out) if out else torch.zeros(0, model.latent_dim)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a[None] * (1 - t[:, None]) + b[None] * t[:, None]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (norm-aware; falls back to lerp for near-parallel codes)."""
    na, nb = a.norm(), b.norm()
    cos = torch.dot(a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)).clamp(-1, 1)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        return lerp(a, b, t)
    so = torch.sin(omega)
    wa = torch.sin((1 - t) * omega) / so
    wb = torch.sin(t * omega) / so
    return wa[:, None] * a[None] + wb[:, None] * b[None]


def interpolation_labels(own: tuple[int, int] | None, label: int | None) -> tuple[tuple[int, int], int]:
    """The classes a ``conditional`` model interpolates with, one rule for ``aekit interpolate --label`` and the
    explorer's ``/api/interpolate`` ``label``: each input is encoded with its **own** label (``own`` = the labels
    of a and b: q(z|x, y) is trained with an input's true class, so the code is its style), and the path is
    decoded with ``label`` (default: a's own label) — "a's and b's style, drawn as class ``label``".  Without
    own labels (an unlabelled split) ``label`` encodes both inputs too, and is then required.
    Returns ((class a is encoded with, class b is encoded with), class the path is decoded with)."""
    if own is None:
        if label is None:
            raise ConfigError("interpolating with a conditional model needs the inputs' class labels: the split "
                              "has none, so give a label (--label CLASS)")
        return (label, label), label
    return (int(own[0]), int(own[1])), int(own[0]) if label is None else label


@torch.no_grad()
def interpolation_path(model: Autoencoder, xa: torch.Tensor, xb: torch.Tensor, steps: int = 10,
                       spherical: bool = False, labels: tuple[int, int] | int | None = None,
                       path_label: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The codes (steps, latent_dim) on the path between the codes of two inputs (float, shape like one sample)
    and their decodings (steps, *input_shape).

    ``labels`` (``conditional`` models): the class ids (a, b) the two inputs are encoded with, or one id for
    both; the path is decoded with ``path_label`` (default: the class of ``a``; one class along the whole path).
    :func:`interpolation_labels` gives both from the inputs' own labels and a requested class."""
    model.require("latent_vectors", "interpolation")
    model.eval()
    la, lb = labels if isinstance(labels, tuple) else (labels, labels)
    za = model.embed(xa[None].to(model.device), **model.label_kwargs(la))[0]
    zb = model.embed(xb[None].to(model.device), **model.label_kwargs(lb))[0]
    t = torch.linspace(0, 1, steps, device=za.device)
    z = slerp(za, zb, t) if spherical else lerp(za, zb, t)
    return z, model.decode(z, **model.label_kwargs(la if path_label is None else path_label))


def interpolate(model: Autoencoder, xa: torch.Tensor, xb: torch.Tensor, steps: int = 10,
                spherical: bool = False, labels: tuple[int, int] | int | None = None,
                path_label: int | None = None) -> torch.Tensor:
    """Decode ``steps`` points on the path between the codes of two inputs (float, shape like one sample):
    :func:`interpolation_path`'s images.

    ``labels`` (``conditional`` models): the class ids (a, b) the two inputs are encoded with, or one id for
    both; the path is decoded with ``path_label``, default the class of ``a`` (one class along the whole path)."""
    return interpolation_path(model, xa, xb, steps, spherical, labels, path_label)[1]


def traversal_labels(own: int | None, label: int | None) -> tuple[int, int]:
    """The classes a ``conditional`` model traverses a datum's code with, one rule for ``aekit traverse --label``
    and the explorer's sliders (that of :func:`interpolation_labels`): the datum is encoded with its **own**
    label ``own`` (its code is its style), the traversal decoded with ``label`` (default: ``own``).  Without an
    own label (an unlabelled split) ``label`` encodes the datum too, and is then required.
    Returns (class the datum is encoded with, class the traversal is decoded with)."""
    if own is None:
        if label is None:
            raise ConfigError("a traversal with a conditional model needs the datum's class label: the split has "
                              "none, so give a label (--label CLASS)")
        return label, label
    return int(own), int(own) if label is None else label


@torch.no_grad()
def traverse(model: Autoencoder, x: torch.Tensor, dims: list[int] | None = None, steps: int = 9,
             span: float = 3.0, label: int | None = None, path_label: int | None = None) -> torch.Tensor:
    """Sweep each latent dim from −span to +span around the code of ``x``: (len(dims)·steps, *input_shape);
    ``label``: the class id a ``conditional`` model encodes ``x`` with, ``path_label`` the one it decodes the
    traversal with (default ``label``); :func:`traversal_labels` gives both."""
    model.require("latent_vectors", "a latent traversal")
    model.eval()
    z0 = model.embed(x[None].to(model.device), **model.label_kwargs(label))[0]
    dims = list(range(model.latent_dim)) if dims is None else dims
    values = torch.linspace(-span, span, steps, device=z0.device)
    z = z0.repeat(len(dims) * steps, 1)
    for r, d in enumerate(dims):
        z[r * steps:(r + 1) * steps, d] = values
    return model.decode(z, **model.label_kwargs(label if path_label is None else path_label))


@torch.no_grad()
def sample(model: Autoencoder, n: int, seed: int = 0, labels: torch.Tensor | int | None = None, *,
           temperature: float = 1.0) -> torch.Tensor:
    """n draws from the prior decoded (generative models only), reproducible by ``seed``; ``labels`` (n,) or one
    int: the classes a ``conditional`` model decodes them with (default: the classes in turn, 0, 1, …, K-1, 0, …);
    ``temperature``: see :meth:`Autoencoder.sample` (1: the prior; nearer 0: nearer its mode)."""
    model.require("generative", "sampling")
    g = torch.Generator(device=model.device).manual_seed(seed)
    model.eval()
    if model.conditional and labels is None:
        labels = torch.arange(n) % len(model.label_names)
    return model.sample(n, generator=g, **model.label_kwargs(labels), temperature=temperature)
