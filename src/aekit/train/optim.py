"""The optimiser: torch's fused Adam / AdamW, and a step that skips torch.optim's per-call Python.

``torch.optim.Adam(fused=True).step()`` spends about 90 µs per call in Python (grouping the tensors by device
and dtype, building the state lists, the step wrapper) around one ``torch._fused_adam_`` kernel: about 3 % of
an MLP VAE step on this project's CPU (``benchmarks/profile_step.py --variants optstep,base``).
:class:`AdamStep` builds those lists once and calls the same kernel on the same state tensors, so the weights
and ``opt.state_dict()`` (checkpoints) are exactly those of ``opt.step()`` (``tests/test_train.py`` checks it
bit for bit).  Anything it does not cover (several parameter groups or devices, amsgrad, a change in which
parameters have gradients, a torch without the kernel) goes through ``opt.step()``.  Build it after loading
the optimiser's state: it keeps the state tensors it finds at its first call.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

__all__ = ["AdamStep", "make_optimizer"]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0,
                   kind: str = "adam") -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    # fused kernels (CPU, CUDA, MPS since torch 2.4): measured 1.7x the foreach step of a 2.8M-parameter MLP on
    # 2 CPU cores; fall back to foreach where a build lacks them
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return cls(params, lr=lr, weight_decay=weight_decay, foreach=True)


@functools.cache
def _kernel_works(device: str, dtype: torch.dtype) -> bool:
    """Whether this torch has ``_fused_adam_`` / ``_fused_adamw_`` with the call signature used below."""
    try:
        for decoupled in (False, True):
            p, g, m, v = (torch.ones(2, device=device, dtype=dtype) for _ in range(4))
            _fused_call(decoupled, [p], [g], [m], [v], [torch.zeros((), device=device, dtype=torch.float32)],
                        lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8)
        return True
    except (AttributeError, RuntimeError, TypeError):
        return False


def _fused_call(decoupled: bool, params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                exp_avg_sqs: list[torch.Tensor], steps: list[torch.Tensor], **hyper: Any) -> None:
    torch._foreach_add_(steps, 1)
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
    kernel(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, maximize=False, grad_scale=None,
           found_inf=None, **hyper)


class AdamStep:
    """``opt.step()`` for a fused Adam / AdamW with one parameter group, without the per-call Python."""

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt = opt
        group = opt.param_groups[0] if len(opt.param_groups) == 1 else {}
        params = group.get("params", [])
        self.fast = (
            isinstance(opt, torch.optim.Adam)
            and bool(group.get("fused"))
            and not any(group.get(k) for k in ("amsgrad", "maximize", "differentiable", "capturable"))
            and len(params) > 0
            and len({(p.device, p.dtype) for p in params}) == 1
            and _kernel_works(str(params[0].device), params[0].dtype)
        )
        self.decoupled = bool(group.get("decoupled_weight_decay", isinstance(opt, torch.optim.AdamW)))
        self._live: tuple[int, ...] = ()
        self._state: tuple[list[torch.Tensor], ...] | None = None

    def zero_grad(self) -> None:
        """``opt.zero_grad(set_to_none=True)`` without its per-call Python (about 35 µs a call on this CPU)."""
        for group in self.opt.param_groups:
            for p in group["params"]:
                p.grad = None

    def __call__(self) -> None:
        if not self.fast:
            self.opt.step()
            return
        group = self.opt.param_groups[0]
        grads = [p.grad for p in group["params"]]
        live = tuple(i for i, g in enumerate(grads) if g is not None)  # opt.step() skips parameters without one
        if self._state is None or live != self._live:
            self.opt.step()  # the first call creates the state; a new set of gradients is opt.step()'s business
            params = [group["params"][i] for i in live]
            if all(p in self.opt.state for p in params):
                st = [self.opt.state[p] for p in params]
                self._live = live
                self._state = (params, [s["exp_avg"] for s in st], [s["exp_avg_sq"] for s in st],
                               [s["step"] for s in st])
            return
        params, exp_avgs, exp_avg_sqs, steps = self._state
        beta1, beta2 = group["betas"]
        _fused_call(self.decoupled, params, [grads[i] for i in live], exp_avgs, exp_avg_sqs, steps,
                    lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"])
