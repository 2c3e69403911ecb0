"""The optimisers: torch's public fused Adam / AdamW (``foreach`` where a build lacks the fused kernels), one per
parameter group of the model (:meth:`~aekit.models.base.Autoencoder.param_groups`).

An earlier version called torch's private fused-Adam kernel directly to skip ``opt.step()``'s per-call
Python (about 90 µs a step, ≈ 3 % of an MLP VAE step on this project's CPU: ``benchmarks/profile_step.py``).
That is far below the 10 % end-to-end gain that would justify a private API, so the public ``opt.step()`` is
used (BENCHMARKS.md has the re-measured throughput).

:class:`NamedOptimizers` holds a model's optimisers by group name.  A model with the one default group gets one
optimiser built exactly as before (same arguments, same checkpoint layout); a model with several groups
(FactorVAE: the VAE and its discriminator) gets one per group with the group's own settings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..errors import ConfigError
from ..models.base import DEFAULT_GROUP, Autoencoder, ParamGroup

__all__ = ["NamedOptimizers", "make_optimizer", "make_optimizers"]


def _adam(params: Sequence[torch.nn.Parameter], lr: float, weight_decay: float, kind: str,
          betas: tuple[float, float] | None = None) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    extra: dict[str, Any] = {} if betas is None else {"betas": tuple(betas)}
    # fused kernels (CPU, CUDA, MPS since torch 2.4): measured 1.7x the foreach step of a 2.8M-parameter MLP on
    # 2 CPU cores; fall back to foreach where a build lacks them
    try:
        return cls(list(params), lr=lr, weight_decay=weight_decay, fused=True, **extra)
    except (RuntimeError, TypeError):
        return cls(list(params), lr=lr, weight_decay=weight_decay, foreach=True, **extra)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0,
                   kind: str = "adam") -> torch.optim.Optimizer:
    """One optimiser over every trainable parameter of ``model``."""
    return _adam([p for p in model.parameters() if p.requires_grad], lr, weight_decay, kind)


class NamedOptimizers:
    """A model's optimisers by parameter-group name, in the model's group order.

    ``state_dict()["state"]`` is the one optimiser's state for a single group (its keys are parameter ids, as
    torch's) and ``"<group>.<id>"`` keys over all optimisers otherwise: the divergence guard checks every one.
    """

    def __init__(self, groups: Sequence[tuple[ParamGroup, torch.optim.Optimizer, list[torch.nn.Parameter]]],
                 base_lr: float):
        self.groups = {g.name: g for g, _, _ in groups}
        self.optimizers = {g.name: opt for g, opt, _ in groups}
        self.params = {g.name: params for g, _, params in groups}
        self.base_lr = base_lr

    @property
    def single(self) -> bool:
        """One optimiser of the default group: the checkpoint layout of a plain optimiser."""
        return list(self.optimizers) == [DEFAULT_GROUP]

    def __iter__(self) -> Iterator[str]:
        return iter(self.optimizers)

    def __len__(self) -> int:
        return len(self.optimizers)

    def __getitem__(self, name: str) -> torch.optim.Optimizer:
        return self.optimizers[name]

    def items(self) -> Iterator[tuple[str, torch.optim.Optimizer]]:
        return iter(self.optimizers.items())

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """torch's param groups of every optimiser, in order (``param_groups[0]["lr"]`` is the first group's rate)."""
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def set_lr(self, lr: float) -> None:
        """The schedule's rate ``lr`` for the run's ``--lr``: groups without their own rate get ``lr`` itself,
        the others their own rate scaled by ``lr / --lr``."""
        for name, opt in self.optimizers.items():
            own = self.groups[name].lr
            value = lr if own is None else own * (lr / self.base_lr)
            for g in opt.param_groups:
                g["lr"] = value

    def state_dict(self) -> dict[str, Any]:
        if self.single:
            return self.optimizers[DEFAULT_GROUP].state_dict()
        state: dict[str, Any] = {}
        groups: list[Any] = []
        for name, opt in self.optimizers.items():
            sd = opt.state_dict()
            state.update({f"{name}.{pid}": st for pid, st in sd["state"].items()})
            groups += sd["param_groups"]
        return {"state": state, "param_groups": groups}


def make_optimizers(model: Autoencoder, lr: float, weight_decay: float = 0.0, kind: str = "adam") -> NamedOptimizers:
    """One optimiser per parameter group of ``model`` (its trainable parameters), with the group's own settings
    where it sets them.  Groups must have unique names and share no parameter (a programming error otherwise)."""
    out: list[tuple[ParamGroup, torch.optim.Optimizer, list[torch.nn.Parameter]]] = []
    seen: set[int] = set()
    for g in model.param_groups():
        params = [p for p in g.params if p.requires_grad]
        if not g.name.isidentifier():
            raise ValueError(f"{type(model).__name__}.param_groups: {g.name!r} is not an identifier (checkpoint keys)")
        if g.name in {x.name for x, _, _ in out}:
            raise ValueError(f"{type(model).__name__}.param_groups names {g.name!r} twice")
        if any(id(p) in seen for p in params):
            raise ValueError(f"{type(model).__name__}.param_groups: group {g.name!r} shares parameters with another")
        seen.update(id(p) for p in params)
        if not params and g.name != DEFAULT_GROUP:
            raise ConfigError(f"parameter group {g.name!r} has no trainable parameters: nothing to optimise")
        group_lr = lr if g.lr is None else g.lr
        wd = weight_decay if g.weight_decay is None else g.weight_decay
        out.append((g, _adam(params, group_lr, wd, kind, g.betas), params))
    return NamedOptimizers(out, lr)
