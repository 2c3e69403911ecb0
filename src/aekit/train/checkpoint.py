"""Atomic, pickle-free checkpoints: tensors in one safetensors file, everything else as JSON metadata.

A checkpoint holds the model, the optimiser (tensors + param groups), the data-order generator and the loop
state (counters and every callback's state).  A model with several parameter groups (FactorVAE) has one
optimiser per group: each is stored under ``optim.<group>.<id>.<name>`` and its metadata under its group's name;
a model with the one default group keeps the single-optimiser layout (``optim.<id>.<name>``).  Sampling noise needs no saved state: the trainer reseeds every
device's generator from (seed, epoch, rank) at each epoch start, so a resume is exact on a GPU too.  Files go
through :func:`aekit.fileio.atomic_path`: a kill at any moment leaves the old or the new checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import RunError, TrainingDiverged
from ..fileio import atomic_path, atomic_write_text
from ..models.base import DEFAULT_GROUP
from .optim import NamedOptimizers

__all__ = ["atomic_save_tensors", "atomic_write_text", "load_checkpoint", "load_state", "non_finite",
           "read_tensors", "save_checkpoint"]


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating tensors holding NaN or ±inf (one device sync for all of them)."""
    named = [(k, t) for k, t in tensors.items() if torch.is_tensor(t) and t.is_floating_point() and t.numel()]
    if not named:
        return []
    ok = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu()
    return [k for (k, _), good in zip(named, ok.tolist()) if not good]


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` as safetensors through the atomic-write helper; refuses non-finite values, so a
    diverged model or optimiser state is never saved."""
    bad = non_finite(tensors)
    if bad:
        raise TrainingDiverged(f"not saving {Path(path).name}: {bad[0]} holds NaN or inf values (training "
                               "diverged): lower --lr or add --grad-clip 1.0")
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as e:
        raise RunError(f"{path} is not a readable safetensors file ({e}): delete it, or retrain the run") from None


def pack_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unpack_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def _plain(opt: torch.optim.Optimizer | NamedOptimizers) -> torch.optim.Optimizer | None:
    """The one optimiser of a single-optimiser checkpoint, else None (one per parameter group)."""
    if isinstance(opt, NamedOptimizers):
        return opt[DEFAULT_GROUP] if opt.single else None
    return opt


def pack_optimizers(opt: torch.optim.Optimizer | NamedOptimizers) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    plain = _plain(opt)
    if plain is not None:
        return pack_optimizer(plain)
    assert isinstance(opt, NamedOptimizers)
    tensors: dict[str, torch.Tensor] = {}
    metas: dict[str, Any] = {}
    for name, o in opt.items():
        t, metas[name] = pack_optimizer(o)
        tensors.update({f"optim.{name}.{k[len('optim.'):]}": v for k, v in t.items()})
    return tensors, {"optimizers": metas}


def load_optimizers(opt: torch.optim.Optimizer | NamedOptimizers, tensors: dict[str, torch.Tensor],
                    meta: dict[str, Any]) -> None:
    plain = _plain(opt)
    if plain is not None:
        if "optimizers" in meta:
            raise ValueError(f"the checkpoint has one optimiser per parameter group {sorted(meta['optimizers'])}, "
                             "this model has one")
        plain.load_state_dict(unpack_optimizer(tensors, meta))
        return
    assert isinstance(opt, NamedOptimizers)
    saved = meta.get("optimizers")
    if not isinstance(saved, dict) or sorted(saved) != sorted(opt):
        raise ValueError(f"the checkpoint's optimisers are {sorted(saved) if isinstance(saved, dict) else 'one'}, "
                         f"this model's parameter groups are {sorted(opt)}")
    for name, o in opt.items():
        prefix = f"optim.{name}."
        own = {"optim." + k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        o.load_state_dict(unpack_optimizer(own, saved[name]))


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer | NamedOptimizers,
    data_gen: torch.Generator,
    loop: dict[str, Any],
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = pack_optimizers(opt)
    tensors.update(opt_tensors)
    tensors["rng.data"] = data_gen.get_state()  # the data order; sampling noise is reseeded per epoch
    meta = {"loop": json.dumps(loop), "optimizer": json.dumps(opt_meta)}
    atomic_save_tensors(tensors, path, meta)


def checkpoint_epoch(path: Path) -> int | None:
    """The finished epochs a checkpoint holds (its loop metadata), without reading its tensors; None when it
    cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return int(json.loads((f.metadata() or {})["loop"])["epoch"])
    except Exception:  # noqa: BLE001 - any unreadable file: the caller only words a message with it
        return None


def load_checkpoint(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer | NamedOptimizers, data_gen: torch.Generator
) -> dict[str, Any]:
    tensors, meta = read_tensors(path)
    try:
        loop = json.loads(meta["loop"])
        opt_meta = json.loads(meta["optimizer"])
    except (KeyError, json.JSONDecodeError):
        raise RunError(f"{path} has no training state: it is not an aekit checkpoint; start a new run") from None
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state(model, model_sd, str(path))
    try:
        load_optimizers(opt, tensors, opt_meta)
        data_gen.set_state(tensors["rng.data"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise RunError(f"{path} holds an optimiser or random state that does not fit this run ({e}): "
                       "start a new run") from None
    return loop


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` strictly: names, shapes and dtypes must match and every value be finite; a mismatch
    becomes a one-line RunError."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    bad = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or extra or bad:
        detail = (
            f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
            else f"shape of {bad[0]} is {tuple(state[bad[0]].shape)}, config needs {tuple(own[bad[0]].shape)}"
        )
        raise RunError(
            f"weights in {where} do not fit the model in config.json ({detail}): "
            "use the config.json that was saved with these weights, or retrain"
        )
    dtype = [k for k in own if state[k].dtype != own[k].dtype]  # never cast silently
    if dtype:
        k = dtype[0]
        raise RunError(f"weights in {where} have the wrong type: {k} is {str(state[k].dtype).replace('torch.', '')}, "
                       f"the model needs {str(own[k].dtype).replace('torch.', '')}; restore the file, or retrain")
    bad = non_finite(state)
    if bad:
        raise RunError(f"weights in {where} hold NaN or inf values ({bad[0]}): the file is corrupted or the "
                       "training diverged; restore it, or retrain")
    model.load_state_dict(state)
