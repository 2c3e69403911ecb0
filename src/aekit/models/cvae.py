"""Conditional variational autoencoder (Sohn, Lee & Yan 2015): q(z|x, y) and p(x|z, y) given a class label y.

The label is a class id 0 … K−1 of the data (a dataset's class labels, or a table's ``--label-column``); K and the
class names are set from the data at train time and recorded in the run's config (``num_classes``,
``class_names``), so a loaded run knows its labels.  The prior is p(z) = N(0, I), independent of y (the
paper's "CVAE" baseline with a fixed prior; its Gaussian stochastic neural network variant is not built here).

Conditioning, the standard one-hot form: the MLP encoder reads [x, onehot(y)], the conv encoder reads the
image with K constant one-hot channels broadcast over its pixels (channel k is 1 for class k), and both
decoders read [z, onehot(y)].  Everything else is the VAE's (:mod:`aekit.models.vae`): the diagonal Gaussian
posterior, the closed-form KL, the likelihoods (bernoulli / gaussian / laplace) and the networks of
:mod:`aekit.models.blocks`.

``loss`` = −ELBO(x | y) = E_q[−log p(x|z, y)] + β·KL(q(z|x, y) ‖ N(0, I)), nats per sample (one draw), batch mean.
Every verb takes ``labels=``: (B,) class ids (an int or a sequence is accepted too; ``sample`` broadcasts one
label to all n draws); a missing or unknown label is a one-line :class:`~aekit.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn as nn

from .. import losses as L
from ..config import check, opt
from ..data import Batch, Dataset, DataShape
from ..errors import ConfigError
from .base import Autoencoder, Losses, NetConfig, checked_temperature, integer_label
from .blocks import Activation, ConvDecoder, ConvEncoder, mlp
from .vae import DiagonalGaussian

LabelsLike = torch.Tensor | int | str | Sequence[int] | Sequence[str] | None


@dataclasses.dataclass(frozen=True)
class CVAEConfig(NetConfig):
    arch: Literal["mlp", "conv"] = opt("mlp", "network: mlp (any data) or conv (images: stride-2 convolutions)")
    activation: Activation = opt("relu", "activation of the hidden layers")
    beta: float = opt(1.0, "weight of the KL term: loss = recon + β·KL (β = 1: the conditional ELBO)")
    likelihood: Literal["auto", "bernoulli", "gaussian", "laplace"] = opt(
        "auto", "p(x|z,y): bernoulli (images in [0, 1]), gaussian or laplace; auto: bernoulli for images, "
                "gaussian for tables")
    scale: float = opt(1.0, "σ (gaussian) or b (laplace) of p(x|z,y) when not learned",
                       scope="--likelihood gaussian|laplace")
    learn_scale: bool = opt(False, "learn one shared log-scale of p(x|z,y)", scope="--likelihood gaussian|laplace")
    num_classes: int = opt(0, "number of label classes K; set from the data at train time")
    class_names: tuple[str, ...] = opt((), "names of the classes 0 … K−1 (recorded from the data; --label NAME)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.beta >= 0, "--beta must be ≥ 0")
        check(self.scale > 0, "--scale must be > 0")
        check(self.num_classes >= 0, f"--num-classes {self.num_classes}: must be ≥ 0 (0: from the data)")
        check(not self.class_names or len(self.class_names) == self.num_classes,
              f"class_names has {len(self.class_names)} names for {self.num_classes} classes: give one per class")
        check(not (self.learn_scale and self.likelihood == "bernoulli"),
              "--learn-scale needs --likelihood gaussian or laplace: a Bernoulli likelihood has no scale")

    def resolve(self, data: Dataset | DataShape) -> CVAEConfig:
        self.check_shape(data)
        lik = self.likelihood if self.likelihood != "auto" else ("bernoulli" if data.in_unit_interval else "gaussian")
        check(not (self.learn_scale and lik == "bernoulli"),
              "--learn-scale needs --likelihood gaussian or laplace: these images get a Bernoulli likelihood")
        if isinstance(data, DataShape):
            k = self.num_classes or data.num_classes or 0
            check(k >= 1, "--model cvae needs the number of label classes: give --num-classes K to build it "
                          "without data")
            names = self.class_names or tuple(str(i) for i in range(k))
        else:
            y = data.train.y
            if y is None or y.ndim != 1:
                raise ConfigError(f"--model cvae needs class labels, and {data.name!r} has none: use labelled data "
                                  "(e.g. --data fashion-mnist) or a table's --label-column")
            top = max(int(s.y.max()) for s in (data.train, data.val, data.test) if s.y is not None and len(s))
            k = len(data.classes) if data.classes else top + 1
            k = max(k, top + 1)
            names = tuple(data.classes) if data.classes and len(data.classes) == k else tuple(str(i) for i in range(k))
            check(not self.num_classes or self.num_classes == k,
                  f"--num-classes {self.num_classes}: {data.name!r} has {k} classes; drop --num-classes")
        return dataclasses.replace(self, input_shape=tuple(data.shape), likelihood=lik, num_classes=k,
                                   class_names=names)


class CVAE(Autoencoder):
    generative = True
    posterior = True
    conditional = True
    units = {"recon": "nats per sample (−log p(x|z,y), one posterior draw)", "kl": "nats per sample "
             "(KL(q(z|x,y) ‖ N(0, I)))", "elbo": "nats per sample (−(recon + kl), the conditional ELBO of log p(x|y))"}
    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, config: CVAEConfig):
        super().__init__(config)
        c = config
        check(len(c.input_shape) >= 1, "CVAEConfig.input_shape is empty: it is set from the data at train time")
        check(c.num_classes >= 1, "CVAEConfig.num_classes is 0: it is set from the data at train time")
        k = c.num_classes
        if c.arch == "conv":
            check(len(c.input_shape) == 3, "--arch conv needs image data (C, H, W): use --arch mlp for tables")
            ch, h, w = c.input_shape
            self.encoder = ConvEncoder((ch + k, h, w), c.channels, 2 * c.latent_dim, c.activation, c.conv_hidden)
            self.decoder = ConvDecoder(c.input_shape, c.channels, c.latent_dim + k, c.activation, c.conv_hidden)
        else:
            self.encoder = nn.Sequential(
                mlp([self.input_dim + k, *c.hidden], c.activation, last_act=True),
                nn.Linear(c.hidden[-1] if c.hidden else self.input_dim + k, 2 * c.latent_dim),
            )
            self.decoder = mlp([c.latent_dim + k, *c.hidden[::-1], self.input_dim], c.activation)
        self.log_scale = nn.Parameter(torch.tensor(math.log(c.scale)), requires_grad=c.learn_scale)

    # ------------------------------------------------------------------------------------------ labels
    @property
    def label_names(self) -> tuple[str, ...]:
        """The run's classes in id order (``class_names`` of the config; the ids themselves when unnamed)."""
        return tuple(self.config.class_names) or tuple(str(i) for i in range(self.config.num_classes))

    def label_ids(self, labels: LabelsLike, n: int, what: str = "this model") -> torch.Tensor:
        """``labels`` as (n,) int64 class ids on the model's device: a tensor / sequence of ids or class names,
        or one id / name for all n; a one-line ConfigError when missing or outside the run's classes."""
        k = self.config.num_classes
        if isinstance(labels, torch.Tensor) and (torch.compiler.is_compiling() or torch.jit.is_tracing()):
            return labels.long().flatten()  # an exported graph's labels input: no data-dependent checks
        if labels is None:
            raise ConfigError(f"{what} with a conditional model needs labels= (class ids 0 … {k - 1}; on the "
                              "command line --label NAME, or id:N)")
        if isinstance(labels, torch.Tensor):
            if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
                raise ConfigError(f"labels must be integer class ids, not a {labels.dtype} tensor: e.g. "
                                  "torch.tensor([0, 3])")
            ids = labels.to(self.device).long().flatten()
        else:  # integers are ids, strings are class names (or ids written out): label_index's rule
            single = isinstance(labels, str) or np.ndim(labels) == 0
            items: list[Any] = [labels] if single else list(cast(Iterable[Any], labels))
            as_ints = [integer_label(v) for v in items]
            ids = torch.tensor([i if i is not None else self.label_index(v, "label") for i, v in zip(as_ints, items)],
                               dtype=torch.long, device=self.device)
        if ids.numel() == 1 and n != 1:
            ids = ids.expand(n)
        if ids.numel() != n:
            raise ConfigError(f"{ids.numel()} labels for {n} inputs: give one label per input (or one for all)")
        # checked in eager mode; an exported graph (ONNX) cannot branch on the values of its inputs
        if n and not torch.compiler.is_exporting() and (int(ids.min()) < 0 or int(ids.max()) >= k):
            self.label_index(int(ids.min()) if int(ids.min()) < 0 else int(ids.max()), "label")  # raises
        return ids

    def onehot(self, labels: LabelsLike, n: int) -> torch.Tensor:
        ids = self.label_ids(labels, n)  # one-hot by comparison (exports to ONNX without a OneHot op)
        return (ids[:, None] == torch.arange(self.config.num_classes, device=ids.device)).to(self.log_scale.dtype)

    # -------------------------------------------------------------------------------------------- verbs
    @property
    def likelihood(self) -> str:
        return "bernoulli" if self.config.likelihood == "auto" else self.config.likelihood

    def encode(self, x: torch.Tensor, labels: LabelsLike = None) -> DiagonalGaussian:
        y = self.onehot(labels, x.shape[0]).to(x.dtype)
        if self.config.arch == "conv":
            h = self.encoder(torch.cat([x, y[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1))
        else:
            h = self.encoder(torch.cat([x.flatten(1), y], 1))
        mean, logvar = h.chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def embed(self, x: torch.Tensor, labels: LabelsLike = None) -> torch.Tensor:
        return self.encode(x, labels=labels).mode()

    def decode_logits(self, z: torch.Tensor, labels: LabelsLike = None) -> torch.Tensor:
        y = self.onehot(labels, z.shape[0]).to(z.dtype)
        return self.decoder(torch.cat([z, y], 1)).view(-1, *self.input_shape)

    def decode(self, z: torch.Tensor, labels: LabelsLike = None) -> torch.Tensor:
        out = self.decode_logits(z, labels=labels)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def forward(self, x: torch.Tensor, labels: LabelsLike = None) -> torch.Tensor:
        ids = self.label_ids(labels, x.shape[0], "reconstruction")
        return self.decode(self.embed(x, labels=ids), labels=ids)

    def reconstruct(self, x: torch.Tensor, labels: LabelsLike = None) -> torch.Tensor:
        return self.forward(x, labels=labels)

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−log p(x|z,y) per sample (B,), nats; ``out`` are decoder logits (bernoulli) or means."""
        return L.likelihood_nll(self.likelihood, out, x, None if self.likelihood == "bernoulli" else self.log_scale)

    def loss(self, batch: Batch) -> Losses:
        """−ELBO(x|y) with the KL weighted by β·anneal; one draw z ~ q(z|x,y) from the global generator."""
        if batch.labels is None:
            raise ConfigError("--model cvae trains on class labels and this batch has none: use labelled data "
                              "(e.g. --data fashion-mnist) or a table's --label-column")
        ids = self.label_ids(batch.labels, len(batch.x), "training")
        q = self.encode(batch.x, labels=ids)
        z = q.sample()
        recon = self.nll(self.decode_logits(z, labels=ids), batch.clean).mean()
        kl = q.kl().mean()
        total = recon + (self.config.beta * batch.anneal) * kl
        return Losses(total, {"recon": recon, "kl": kl, "elbo": -(recon + kl)})

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: LabelsLike = None, *,
               temperature: float = 1.0) -> torch.Tensor:
        """``n`` draws z = τ·ε, ε ~ N(0, I) (τ = ``temperature``), decoded given ``labels`` (one label for all n, or
        one per draw)."""
        t = checked_temperature(temperature)
        ids = self.label_ids(labels, n, "sampling")
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device) * t
        return self.decode(z, labels=ids)
