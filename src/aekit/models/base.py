"""The model contract: :class:`Autoencoder` (verbs + declared capabilities), :class:`Losses`, the config bases.

Every registered model is one file in ``models/`` and one registry line.  What the rest of aekit may do with a
model follows from the capabilities it *declares* here, never from its class:

=================  ==============================================================================================
``generative``     ``sample(n, generator, temperature=1.0)`` decodes draws from a prior (``aekit sample``, report
                   samples); ``temperature`` τ scales the draw (:func:`checked_temperature`): τ = 1 is the prior,
                   τ < 1 draws nearer its mode (a Gaussian prior: the prior draw scaled by τ; an autoregressive
                   categorical one: each code from softmax(logits/τ)), τ = 0 the Gaussian's mode (z = 0) or the
                   greedy code grid (the most probable code at each position given the earlier ones)
``posterior``      ``encode`` returns a :class:`Posterior` (``sample()``, ``mode()``, ``kl()``, ``log_prob``),
                   and ``decode_logits`` + ``nll(out, x)`` give −log p(x|z) (ELBO, IWAE, ``--score elbo``)
``supervised``     ``loss`` trains against ``batch.labels`` (segmentation masks); ``predict(x)`` gives class ids,
                   ``num_classes``, ``receptive_radius()`` and ``size_multiple`` serve tiled inference
``conditional``    ``batch.labels`` (class ids) reach ``loss`` for an unsupervised model (a conditional VAE); the
                   verbs take a ``labels=`` keyword (class ids (B,) or one int): ``encode(x, labels=…)``,
                   ``embed``, ``reconstruct``, ``decode(z, labels=…)``, ``decode_logits``, ``sample(n, generator,
                   labels=…)``; without it they raise a one-line ConfigError.  :attr:`label_names` is the
                   run's label set; callers pass ``**model.label_kwargs(labels)`` (empty for other models,
                   whose verbs keep their signatures) and :meth:`label_index` parses a ``--label``
``latent_vectors`` ``decode(z)`` takes code vectors (B, latent_dim): interpolation, traversals, sliders
``closed_form``    fitted in one pass by ``fit(x)``, not by gradient descent
``staged``         ``stages(data)`` yields its own training stages, run before the main fit (greedy pretraining),
                   or after it (``Stage.after``: a VQ-VAE's prior over its codes)
``discrete``       ``encode(x)`` gives a grid of codebook indices (B, h, w) int64 of ``codebook_size`` codes;
                   ``decode`` also takes such indices; ``code_nll(codes)`` is −log p(codes) under the model's
                   learned prior, nats per sample (``aekit encode`` writes the indices; evaluate reports codebook
                   usage, perplexity, dead codes and the prior's NLL)
=================  ==============================================================================================

Training: ``param_groups()`` names the model's parameter groups, each with its own optimiser (default: one
group ``"model"`` of every trainable parameter, trained with the run's optimiser settings), and
``train_step(batch, optimizers)`` takes one training step with them (default: ``loss(batch)`` and one step of
the one group).  A model with a second group (FactorVAE's discriminator) overrides both; the trainer stays one
loop that calls ``train_step`` and never asks what the model is.

A command that needs a capability the model lacks calls :meth:`Autoencoder.require`, which raises a one-line
error naming the command and the capability.  ``tests/test_conformance.py`` runs every registered model through
build, train step, save/load, evaluate, export, the explorer and resume.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, TypeVar

import numpy as np
import torch
import torch.nn as nn

from ..config import check, opt
from ..data.batch import Batch, BatchTransform
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..data import Dataset, DataShape

C = TypeVar("C", bound="ModelConfig")

CAPABILITIES = ("generative", "posterior", "supervised", "conditional", "latent_vectors", "closed_form", "staged",
                "discrete")


class Losses(NamedTuple):
    """``total`` is what the optimiser minimises (batch mean); ``terms`` are its named parts (batch means).

    Units: every term is a per-sample quantity averaged over the batch (sums over a sample's elements, in
    nats for likelihood terms) unless its unit says it is a batch statistic; each model lists its terms and
    their units in ``Autoencoder.units``.  A model returns the same term names at every step (the trainer sums
    them per epoch).  ``loss`` must also work with autograd off: validation and evaluation call it under
    ``torch.no_grad()``.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class Posterior(Protocol):
    """What ``encode`` returns for a model with ``posterior = True`` (e.g. :class:`~aekit.models.vae.DiagonalGaussian`)."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor: ...

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def mode(self) -> torch.Tensor: ...

    def kl(self) -> torch.Tensor: ...

    def log_prob(self, z: torch.Tensor) -> torch.Tensor: ...


@dataclasses.dataclass(frozen=True)
class Stage:
    """One of a model's own training stages (``staged`` models): train ``model`` on ``data`` for ``epochs``.

    ``model`` shares its parameters with the staged model, so training it trains the staged model in place.
    ``after``: the stage runs after the main fit (a VQ-VAE's prior, trained on the codes of the fitted encoder);
    it trains exactly ``model.parameters()``, which the staged model may keep frozen (``requires_grad`` False)
    in its main fit: the train layer unfreezes them for the stage's fit and freezes them again after.
    """

    name: str
    model: Autoencoder
    data: Dataset
    epochs: int
    transforms: tuple[BatchTransform, ...] = ()
    after: bool = False


DEFAULT_GROUP = "model"  # the one parameter group of a model that does not override ``param_groups``


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """One named group of a model's parameters with its own optimiser (``Autoencoder.param_groups``).

    ``lr`` (None: the run's ``--lr``), ``betas`` (None: Adam's (0.9, 0.999)) and ``weight_decay`` (None: the
    run's ``--weight-decay``) override the run's optimiser settings for this group; the run's learning-rate
    schedule (warm-up, cosine) scales every group's rate by the same factor.  ``params`` whose
    ``requires_grad`` is False are left out.
    """

    name: str
    params: tuple[nn.Parameter, ...]
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None


class Optimizers(Protocol):
    """What ``Autoencoder.train_step`` gets from the trainer: the run's optimisers, one per parameter group."""

    def forward(self, fn: Callable[..., Losses], *args: Any) -> Losses:
        """``fn(*args)`` (a method of the model returning :class:`Losses`, e.g. ``model.loss``) under the run's
        precision (autocast) and, under torchrun, through DistributedDataParallel's forward (gradients averaged
        over the processes)."""
        ...

    def step(self, group: str, loss: torch.Tensor) -> None:
        """One optimiser step of parameter group ``group`` on ``loss``: its gradients zeroed, ``loss``
        backpropagated, clipped (``--grad-clip``, the group's parameters) and stepped.  Only that group's
        parameters change; gradients reaching other groups are zeroed before their own step.  Every stepped loss
        is checked for NaN / inf by the divergence guard."""
        ...


# ------------------------------------------------------------------------------------------------ configs


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of every model config: the data-dependent ``input_shape`` and the :meth:`resolve` step."""

    input_shape: tuple[int, ...] = opt((), "shape of one sample; set from the data at train time")

    def resolve(self: C, data: Dataset | DataShape) -> C:
        """A copy with the data-dependent fields filled in (the config itself is never mutated).  ``data`` is
        the dataset, or a :class:`~aekit.data.DataShape` to build a model without one.  Subclasses that
        override it call :meth:`check_shape` first."""
        self.check_shape(data)
        return dataclasses.replace(self, input_shape=tuple(data.shape))

    def check_shape(self, data: Dataset | DataShape) -> None:
        """A config that already has an ``input_shape`` (a run's config.json given as ``--config``) must be for
        this data: the one-line error otherwise."""
        if self.input_shape and tuple(self.input_shape) != tuple(data.shape):
            raise ConfigError(f"input_shape {list(self.input_shape)} is not the shape of the data "
                              f"({list(data.shape)}): drop input_shape, or use the data the config was written for")

    def train_overrides(self: C) -> tuple[C, dict[str, Any]]:
        """Trainer options this config sets (stacked-ae's ``finetune_epochs`` is ``epochs``), and the config
        with them taken out; most configs set none."""
        return self, {}


@dataclasses.dataclass(frozen=True)
class NetConfig(ModelConfig):
    """Fields shared by the encoder/decoder networks of the AE and the VAE."""

    arch: str = opt("mlp", "network: mlp (any data) or conv (images: stride-2 convolutions)")
    hidden: tuple[int, ...] = opt((512, 256), "MLP widths of the encoder; the decoder mirrors them",
                                  scope="--arch mlp")
    channels: tuple[int, ...] = opt((32, 64), "conv channels of the encoder, one stride-2 layer each",
                                    scope="--arch conv")
    conv_hidden: tuple[int, ...] = opt((), "fully connected widths between the conv features and the code "
                                           "(the β-VAE reference has 256)", scope="--arch conv")
    latent_dim: int = opt(16, "size of the code z")
    activation: str = opt("relu", "activation of the hidden layers: relu, gelu, silu, elu, leaky_relu, tanh, "
                                  "sigmoid, linear")

    def __post_init__(self) -> None:
        check(self.arch in ("mlp", "conv"), f"--arch {self.arch!r}: choose mlp or conv")
        check(self.latent_dim >= 1, "--latent-dim must be at least 1")
        check(all(h >= 1 for h in self.hidden), "--hidden widths must be positive, e.g. --hidden 512,256")
        check(all(h >= 1 for h in self.conv_hidden), "--conv-hidden widths must be positive, e.g. --conv-hidden 256")
        check(len(self.channels) >= 1 and all(c >= 1 for c in self.channels),
              "--channels must be positive, e.g. --channels 32,64")


# ------------------------------------------------------------------------------------------------ the contract


ID_FORM = re.compile(r"id:\s*(-?\d+)", re.IGNORECASE)  # "id:N" (or "ID:N"): always class id N
INTEGER = re.compile(r"-?\d+")


def names_are_other_numbers(names: Sequence[str]) -> bool:
    """Whether some class names are integers other than their ids ("-1", "3", "7" for ids 0, 1, 2): then a bare
    integer that names no class is ambiguous (an id, or a value?) and is refused; ``id:N`` says which."""
    return any(INTEGER.fullmatch(n) and n != str(i) for i, n in enumerate(names))


def _case_matches(text: str, names: Sequence[str]) -> list[int]:
    key = text.strip().casefold()
    return [i for i, n in enumerate(names) if n.strip().casefold() == key]


def class_named(text: str, names: Sequence[str]) -> int | None:
    """The id of the class named ``text``: the name exactly (also one with spaces around it, as an image
    folder's or an npz's may have), else the one name equal to it without surrounding spaces, else the one name
    equal to it in any letter case (``sandal`` for "Sandal"); None when no name matches, or several match only
    so (ambiguous)."""
    names = list(names)
    if text in names:
        return names.index(text)
    for same in ([i for i, n in enumerate(names) if n.strip() == text.strip()], _case_matches(text, names)):
        if same:
            return same[0] if len(same) == 1 else None
    return None


def label_id(text: str, names: Sequence[str], what: str = "--label", of: str = "this run") -> int:
    """The class id of the string ``text`` among the class ``names`` (ids 0 … K−1) by the one rule (rules 2–4
    of :meth:`Autoencoder.label_index`): a class name (:func:`class_named`), ``id:N``, or a bare integer id —
    refused when some names are other numbers.  Anything else is a one-line ConfigError naming the valid labels
    (``what`` and ``of`` word it: ``--normal-labels 'x' is not a class of this data: …``)."""
    named = class_named(text, names)
    if named is not None:
        return named
    numeric = names_are_other_numbers(names)
    stripped = text.strip()
    m = ID_FORM.fullmatch(stripped)
    as_id = m.group(1) if m else (stripped if INTEGER.fullmatch(stripped) and not numeric else None)
    if as_id is not None and 0 <= int(as_id) < len(names):
        return int(as_id)
    raise ConfigError(not_a_class(text, names, what, of))


def not_a_class(text: str, names: Sequence[str], what: str, of: str = "this run") -> str:
    """The one-line error for a label ``text`` that is none of the classes ``names``, with the valid labels and
    why when it is not plain (numeric names; a name matching several classes only in another letter case)."""
    shown = ", ".join(f"{i} ({n})" if n != str(i) else n for i, n in enumerate(names)) or "none (no classes)"
    several = _case_matches(text, names)
    if len(several) > 1:
        hint = (f" ({text.strip()!r} matches {' and '.join(repr(names[i]) for i in several)} only in another letter "
                "case: give the exact name)")
    elif names_are_other_numbers(names):
        hint = " (a class name, or its id; the names are numbers, so write id:N for class id N)"
    else:
        hint = ""
    return f"{what} {text.strip()!r} is not a class of {of}: valid labels are {shown}{hint}"


def integer_label(v: Any) -> int | None:
    """``v`` as a class id when it is an integer — a Python or NumPy int, or a 0-d integer array / tensor (what
    ``split.y[i]`` gives) — else None (strings, floats, bools: a bool is not a class id)."""
    if isinstance(v, (bool, np.bool_, str, bytes)):
        return None
    if isinstance(v, (torch.Tensor, np.ndarray)) and v.dtype in (torch.bool, np.bool_):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def checked_temperature(temperature: Any) -> float:
    """The sampling temperature τ of :meth:`Autoencoder.sample` as a float, or a one-line ConfigError.

    τ = 1 draws from the model's prior; 0 ≤ τ < 1 draws nearer its mode, trading variety for typical samples (the
    "temperature" of Kingma & Dhariwal 2018's Glow; akin to the truncation trick of Brock et al. 2019's BigGAN);
    τ = 0 is a Gaussian prior's mode (z = 0), or for an autoregressive prior over codes the greedy grid (the
    most probable code at each position given the earlier ones); τ > 1 spreads the draws wider than the prior."""
    hint = "e.g. 0.7 (1 draws from the prior, 0 its mode; on the command line --temperature 0.7)"
    if isinstance(temperature, (bool, str, bytes)) or not isinstance(temperature, (int, float, np.number)):
        raise ConfigError(f"the sampling temperature must be a number ≥ 0, not a {type(temperature).__name__}: {hint}")
    try:
        t = float(temperature)
    except OverflowError:
        t = math.inf
    if not (math.isfinite(t) and t >= 0):
        raise ConfigError(f"the sampling temperature must be a finite number ≥ 0, not {t!r}: {hint}")
    return t


class Autoencoder(nn.Module, metaclass=abc.ABCMeta):
    """Base of every model: one frozen config as the only constructor argument, the verbs and the capabilities.

    Verbs (abstract: a model must define them):

    - ``encode(x)``: the code (a tensor; a :class:`Posterior` for ``posterior`` models; a model-specific
      structure for models without ``latent_vectors``, e.g. the U-Net's bottleneck + skips)
    - ``decode(code)``: data-space output (the mean of p(x|z)), shaped like the input
    - ``loss(batch) -> Losses``: per-sample sums averaged over the batch, in the units of :attr:`units`

    Given: ``embed(x)`` (a deterministic (B, latent_dim) code: the posterior mean for ``posterior`` models),
    ``forward(x)`` = ``reconstruct(x)`` = ``decode(embed(x))``, ``batch_transforms(data)`` (none) and
    :meth:`require`.
    """

    # capabilities (see the module docstring); a model declares what it has
    generative: ClassVar[bool] = False
    posterior: ClassVar[bool] = False
    supervised: ClassVar[bool] = False
    conditional: ClassVar[bool] = False
    latent_vectors: ClassVar[bool] = True
    closed_form: ClassVar[bool] = False
    staged: ClassVar[bool] = False
    discrete: ClassVar[bool] = False
    # a staged model's main fit: the ``stage`` of its rows in metrics.csv (stacked-ae: fine-tuning after the greedy
    # stages)
    main_stage: ClassVar[str] = "finetune"
    # what ``sample`` draws from, in words (captions of the report's samples, ``generative`` models)
    prior_name: ClassVar[str] = "the prior p(z) = N(0, I)"
    # the loss terms and their units: the conformance suite checks every term a model returns is listed here
    units: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.registry_name: str | None = None  # set by ``build_model``: the name that rebuilds this model

    # -------------------------------------------------------------------------------------------- verbs
    @abc.abstractmethod
    def encode(self, x: torch.Tensor) -> Any: ...

    @abc.abstractmethod
    def decode(self, z: Any) -> torch.Tensor: ...

    @abc.abstractmethod
    def loss(self, batch: Batch) -> Losses: ...

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.embed(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    # -------------------------------------------------------------------------------- capability verbs
    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float = 1.0) -> torch.Tensor:
        self.require("generative", "sampling")
        raise NotImplementedError  # pragma: no cover - a generative model overrides it

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class ids per pixel (B, H, W) (``supervised`` models)."""
        self.require("supervised", "segmentation")
        raise NotImplementedError  # pragma: no cover

    @property
    def num_classes(self) -> int:
        """Classes of the per-pixel output (``supervised`` models)."""
        self.require("supervised", "a class count")
        raise NotImplementedError  # pragma: no cover

    def receptive_radius(self) -> int:
        """A bound (pixels) on how far an input pixel influences an output pixel (``supervised`` models): the
        overlap tiled inference needs to reproduce whole-image inference."""
        self.require("supervised", "tiled inference")
        raise NotImplementedError  # pragma: no cover

    @property
    def size_multiple(self) -> int:
        """Inputs are padded to a multiple of this (tiles start on multiples of it); 1 for most models."""
        return 1

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (…, H, W) reflect-padded at the bottom / right to a multiple of :attr:`size_multiple` (replicate
        where the image is too small to reflect); tiled inference cuts its tiles from this."""
        m = self.size_multiple
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        if ph == 0 and pw == 0:
            return x
        mode = "reflect" if ph < h and pw < w else "replicate"
        return torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised per-pixel class scores (B, K, H, W), same H × W as ``x`` (``supervised`` models)."""
        self.require("supervised", "per-pixel class scores")
        raise NotImplementedError  # pragma: no cover

    def decode_logits(self, z: Any) -> torch.Tensor:
        """The decoder's output before its output activation (logits for a Bernoulli likelihood)."""
        self.require("posterior", "the likelihood p(x|z)")
        raise NotImplementedError  # pragma: no cover

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) per sample (B,), nats, of decoder output ``out`` (``posterior`` models)."""
        self.require("posterior", "the likelihood p(x|z)")
        raise NotImplementedError  # pragma: no cover

    @property
    def needs_labels(self) -> bool:
        """Whether batches must carry ``labels``: masks for ``supervised``, class ids for ``conditional`` models."""
        return self.supervised or self.conditional

    @property
    def label_names(self) -> tuple[str, ...]:
        """The classes a ``conditional`` model is conditioned on, in id order (from its config)."""
        self.require("conditional", "a label")
        raise NotImplementedError  # pragma: no cover

    def label_kwargs(self, labels: Any) -> dict[str, Any]:
        """``{"labels": labels}`` for a ``conditional`` model, ``{}`` for any other: the keyword arguments of
        its verbs (``model.decode(z, **model.label_kwargs(y))``)."""
        return {"labels": labels} if self.conditional else {}

    def label_index(self, label: str | int, what: str = "--label") -> int:
        """The class id of ``label`` for a ``conditional`` model, by one rule (class names may be numbers, e.g. a
        table's label column with values −1, 3, 7 gives ids 0, 1, 2 named "-1", "3", "7"):

        1. an integer (a Python or NumPy int, a 0-d integer array or tensor, the explorer's JSON numbers) is a
           class id (:func:`integer_label`; a bool is not);
        2. a string equal to a class name is that class — also when it is an integer naming a class with a
           different id ("3" above is id 1, the class named "3"); a name in another letter case is that class
           when exactly one name matches it so (``--label sandal`` for "Sandal": :func:`class_named`);
        3. ``id:N`` is class id N whatever the names (``--label id:0`` above is the class named "-1");
        4. a bare integer string that names no class is an id — unless some class names are integers other
           than their ids (above, "0" is an error: it could mean id 0 or a value; write ``id:0``).

        Anything else, or an id outside 0 … K−1, is a one-line error naming the valid labels (also for a model
        that is not conditional)."""
        self.require("conditional", what)
        names = self.label_names
        as_int = integer_label(label)
        if as_int is None:
            return label_id(str(label), names, what)
        if 0 <= as_int < len(names):
            return as_int
        raise ConfigError(not_a_class(str(as_int), names, what))

    def fit(self, x: torch.Tensor) -> None:
        self.require("closed_form", "a closed-form fit")
        raise NotImplementedError  # pragma: no cover

    def stages(self, data: Dataset) -> Iterator[Stage]:
        """The model's own training stages, each trained before the next is made (``staged`` models); the
        ``after`` ones come last and run after the main fit."""
        return iter(())

    @property
    def codebook_size(self) -> int:
        """The number of codes of a ``discrete`` model's codebook."""
        self.require("discrete", "a codebook")
        raise NotImplementedError  # pragma: no cover

    def code_nll(self, codes: torch.Tensor) -> torch.Tensor:
        """−log p(codes) per sample (B,), nats, of index grids ``codes`` (B, h, w) under the learned prior
        (``discrete`` models)."""
        self.require("discrete", "the prior over codes")
        raise NotImplementedError  # pragma: no cover

    def param_groups(self) -> list[ParamGroup]:
        """The parameter groups, each trained by its own optimiser (:class:`ParamGroup`); names are unique.
        Default: one group, :data:`DEFAULT_GROUP`, of every parameter, with the run's optimiser settings."""
        return [ParamGroup(DEFAULT_GROUP, tuple(self.parameters()))]

    def train_step(self, batch: Batch, optimizers: Optimizers) -> Losses:
        """One training step on ``batch``; returns the step's :class:`Losses` (logged and summed per epoch, the
        same term names at every step).  Default: ``loss(batch)`` and one step of the one group."""
        losses = optimizers.forward(self.loss, batch)
        optimizers.step(DEFAULT_GROUP, losses.total)
        return losses

    def batch_transforms(self, data: Dataset) -> list[BatchTransform]:
        """Transforms the trainer applies to this model's training batches (corruption, augmentation)."""
        return []

    def train_corruption(self) -> str | None:
        """The corruption this model trains with (a denoising AE's ``mask:0.25``), or None."""
        return None

    # ------------------------------------------------------------------------------------------ helpers
    @classmethod
    def capabilities(cls) -> dict[str, bool]:
        return {name: bool(getattr(cls, name)) for name in CAPABILITIES}

    def require(self, capability: str, what: str) -> None:
        """Raise a one-line ConfigError unless this model has ``capability`` (``what`` names the command)."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}")  # a programming error
        if not getattr(self, capability):
            name = self.registry_name or type(self).__name__
            need = {"generative": "a generative model (e.g. --model vae)",
                    "posterior": "a model with a posterior and a likelihood (e.g. --model vae)",
                    "supervised": "a segmentation model (--model unet)",
                    "conditional": "a conditional model (trained with labels)",
                    "latent_vectors": "a model that decodes code vectors (not a unet)",
                    "closed_form": "a closed-form model (--model pca)",
                    "staged": "a model with training stages (--model stacked-ae)",
                    "discrete": "a model with a discrete code (--model vqvae)"}[capability]
            raise ConfigError(f"{what} needs {need}; this run's model ({name}) has no {capability} capability")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.config.input_shape)

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")
