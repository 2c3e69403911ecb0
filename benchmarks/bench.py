"""How fast aekit trains, next to what users would write themselves and to pythae.

Run from the repository root with the venv's python (aekit installed, e.g. ``make setup``)::

    python benchmarks/bench.py SUITE [OPTIONS]        # SUITE: train, levers, stream, iwae, matmul
    python benchmarks/bench.py SUITE --help

It is not part of the installed package (and not an ``aekit`` sub-command): it uses aekit's public API only
(``aekit.train``, ``aekit.MODELS`` / ``aekit.build_model``, ``aekit.train.mean_losses``, ``aekit.data.Batch``
...), as a user's script would.

Suites:

``train``   For each case (MLP VAE 784-400-20, deep AE 784-1000-500-250-30, conv VAE on 28×28, U-Net on
            128×128 cells) train the same model, batch size, learning rate and epochs with (a) aekit's trainer,
            (b) a plain PyTorch loop (DataLoader over a TensorDataset, default Adam, fp32 — the pytorch/examples
            recipe) and (c) pythae 0.1.2 where it has the model (``pip install aekit[bench]``).  Each
            (implementation, repeat) runs in a fresh process (this file, ``_worker``), in rotating order, so global state (denormal
            flushing, thread pools, caches) never leaks from one to the next.  Reported: samples/s (median
            over the epochs after the first and then over repeats), the final test loss, peak RSS, and the
            fraction of the matmul bound reached (the matmul/conv FLOPs of one training step, counted by
            ``torch.utils.flop_counter``, at the fp32 GEMM rate this machine measures).
``levers``  The same loop with aekit's levers added one at a time (resident batches, flushed denormals,
            fused Adam, the loss in fused BCE-with-logits form, torch.compile, bf16, channels_last), next to
            aekit's trainer with and without ``--compile`` / ``--bf16``.
``stream``  Peak RSS of training on a generated ``.npy`` larger than ``--memory-budget`` (streamed) against
            the budget plus the model's own footprint, and against loading it whole.
``iwae``    Time of the IWAE estimate (K importance samples) on the Fashion-MNIST test images.
``matmul``  The GEMM rates the bound is computed from.

Every figure is printed with the command that reproduces it; ``--out FILE.md`` / ``--json FILE`` save them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")

RESULT_TAG = "AEKIT_BENCH_RESULT "
SCRIPT = Path(__file__).resolve()
COMMAND = "python benchmarks/bench.py"  # how the figures' command lines name this script
_clock = time.perf_counter  # epoch timer; --clock cpu: process CPU time (indicative figures on a loaded machine)


# ------------------------------------------------------------------------------------------------- cases


@dataclasses.dataclass(frozen=True)
class Case:
    title: str
    model: str  # aekit registry name
    options: dict[str, Any]  # aekit model options
    data: str
    batch_size: int
    lr: float
    epochs: int  # default epochs of the suite
    data_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    pythae: bool = False  # pythae 0.1.2 has this model (a VAE with our encoder / decoder)


CASES: dict[str, Case] = {
    "mlp-vae": Case("MLP VAE 784-400-20 (Bernoulli, pytorch/examples)", "vae",
                    {"hidden": "400", "latent_dim": 20, "likelihood": "bernoulli"}, "fashion-mnist", 128, 1e-3, 10,
                    pythae=True),
    "deep-ae": Case("deep AE 784-1000-500-250-30 (BCE, Hinton & Salakhutdinov)", "ae",
                    {"hidden": "1000,500,250", "latent_dim": 30, "recon_loss": "bce", "norm": "none"}, "fashion-mnist", 128, 1e-3, 5),
    "conv-vae": Case("conv VAE 28x28 (conv 32-64 stride 2, latent 20)", "vae",
                     {"arch": "conv", "channels": "32,64", "latent_dim": 20, "likelihood": "bernoulli"},
                     "fashion-mnist", 128, 1e-3, 3, pythae=True),
    "unet": Case("U-Net on 128x128 cells (depth 3, 8 base channels, CE + Dice, no augmentation)", "unet",
                 {"augment": False, "depth": 3, "base_channels": 8}, "cells", 16, 2e-3, 3, {"cells_count": 400}),
}

# not in the default suite (no plain-loop twin): the dSprites β-VAE recipe's network (aekit experiment beta-sweep:
# 4 stride-2 convs 32,32,64,64 + FC 256, latent 10, batch 64, lr 5e-4), for its samples/s and bound; run it with
# --cases dsprites-vae --impls aekit,... --subsample N (the recipe trains on 400,000 sprites)
EXTRA_CASES: dict[str, Case] = {
    "dsprites-vae": Case("dSprites β-VAE recipe network (conv 32,32,64,64 + FC 256, latent 10, batch 64)", "vae",
                         {"arch": "conv", "channels": "32,32,64,64", "conv_hidden": "256", "latent_dim": 10,
                          "likelihood": "bernoulli"}, "dsprites", 64, 5e-4, 2),
}

# tiny stand-ins for the test suite: same code paths, seconds instead of minutes
SMOKE: dict[str, Case] = {
    "mlp-vae": dataclasses.replace(CASES["mlp-vae"], options={**CASES["mlp-vae"].options, "hidden": "32", "latent_dim": 4},
                                   data="digits", batch_size=64, epochs=1),
    "deep-ae": dataclasses.replace(CASES["deep-ae"], options={**CASES["deep-ae"].options, "hidden": "32,16", "latent_dim": 4},
                                   data="digits", batch_size=64, epochs=1),
    "conv-vae": dataclasses.replace(CASES["conv-vae"], options={**CASES["conv-vae"].options, "channels": "4,8", "latent_dim": 4},
                                    data="digits", batch_size=64, epochs=1),
    "unet": dataclasses.replace(CASES["unet"], options={**CASES["unet"].options, "depth": 1, "base_channels": 4},
                                data_options={"cells_count": 12, "image_size": 16}, batch_size=4, epochs=1),
}


def get_case(name: str, smoke: bool = False) -> Case:
    from aekit.errors import ConfigError

    table = SMOKE if smoke else {**CASES, **EXTRA_CASES}
    if name not in table:
        raise ConfigError(f"unknown benchmark case {name!r}: choose from {', '.join(CASES)}")
    return table[name]


# ------------------------------------------------------------------------------------------ the machine


def gemm_rate(dtype: str = "float32", n: int = 2048, seconds: float = 1.0, device: str = "cpu") -> float:
    """FLOP/s of an n×n×n matmul on ``device`` (median of repeated runs for about ``seconds``)."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n).to(device, dt), torch.randn(n, n).to(device, dt)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 rate, not TF32's
    torch.mm(a, b)
    sync()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t = time.perf_counter()
        torch.mm(a, b)
        sync()
        times.append(time.perf_counter() - t)
    return 2.0 * n**3 / statistics.median(times)


def machine(device: str = "cpu") -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "python": platform.python_version(), "device": device}
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def load_avg() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on Linux/macOS
        return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process image, MB.

    Linux: ``VmHWM`` of /proc/self/status — unlike ``ru_maxrss``, it does not carry over the high-water mark
    of the parent a benchmark process was forked from.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1 << 20) if sys.platform == "darwin" else r / 1024


# ------------------------------------------------------------------------------------ aekit's public API


def _aekit_model(case: Case, data: Any) -> Any:
    """aekit's model of a case, built for ``data`` as ``aekit.train`` builds it (registry, config, resolve)."""
    import aekit
    from aekit.train import split_options

    model_options, _, _ = split_options(case.model, case.options)  # the case's training / data options aside
    cfg = aekit.MODELS[case.model].make_config(model_options, name=case.model).resolve(data)
    return aekit.build_model(case.model, cfg)


def _aekit_loss(model: Any, x: Any, y: Any = None) -> Any:
    """The batch-mean loss aekit's trainer minimises (``model.loss(Batch)``; ``y``: labels / masks)."""
    from aekit.data.batch import Batch

    return model.loss(Batch(x, labels=y)).total


# The inductor options aekit's trainer passes to torch.compile (aekit.train.trainer.compile_options, measured
# there), given to the plain loop's ``compile`` lever so that it compiles as the trainer does.
COMPILE_OPTIONS_CPU: dict[str, Any] = {"fallback_random": True, "cpp_wrapper": True}
COMPILE_OPTIONS_CUDA: dict[str, Any] = {"fallback_random": True}


# ---------------------------------------------------------------------------------- reference models


def _reference_model(case: Case, data: Any) -> Any:
    """The model as a user would write it in plain PyTorch (the U-Net is aekit's own module)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    shape = data.shape
    d = math.prod(shape)
    o = case.options
    if case.model == "unet":
        return _aekit_model(case, data)

    if case.model == "vae" and o.get("arch") != "conv":
        hidden, latent = int(str(o["hidden"]).split(",")[0]), int(o["latent_dim"])

        class VAE(nn.Module):  # pytorch/examples/vae, with the input size of the data
            def __init__(self) -> None:
                super().__init__()
                self.fc1 = nn.Linear(d, hidden)
                self.fc21 = nn.Linear(hidden, latent)
                self.fc22 = nn.Linear(hidden, latent)
                self.fc3 = nn.Linear(latent, hidden)
                self.fc4 = nn.Linear(hidden, d)

            def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                h = F.relu(self.fc1(x.view(-1, d)))
                return self.fc21(h), self.fc22(h)

            def decode(self, z: torch.Tensor) -> torch.Tensor:
                return self.fc4(F.relu(self.fc3(z)))  # logits

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                mu, logvar = self.encode(x)
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                return self.decode(z), mu, logvar

        return VAE()

    if case.model == "vae":  # conv
        c, h, w = shape
        ch = [int(s) for s in str(o["channels"]).split(",")]
        latent = int(o["latent_dim"])
        hh, ww = h // 2 // 2, w // 2 // 2

        class ConvVAE(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.enc = nn.Sequential(nn.Conv2d(c, ch[0], 4, 2, 1), nn.ReLU(), nn.Conv2d(ch[0], ch[1], 4, 2, 1),
                                         nn.ReLU(), nn.Flatten())
                self.mu = nn.Linear(ch[1] * hh * ww, latent)
                self.logvar = nn.Linear(ch[1] * hh * ww, latent)
                self.fc = nn.Linear(latent, ch[1] * hh * ww)
                self.dec = nn.Sequential(
                    nn.ConvTranspose2d(ch[1], ch[0], 4, 2, 1, output_padding=(h // 2 - 2 * hh, w // 2 - 2 * ww)),
                    nn.ReLU(), nn.ConvTranspose2d(ch[0], c, 4, 2, 1, output_padding=(h - 2 * (h // 2), w - 2 * (w // 2))))

            def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                e = self.enc(x)
                return self.mu(e), self.logvar(e)

            def decode(self, z: torch.Tensor) -> torch.Tensor:
                return self.dec(F.relu(self.fc(z)).view(-1, ch[1], hh, ww))  # logits

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                mu, logvar = self.encode(x)
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                return self.decode(z), mu, logvar

        return ConvVAE()

    sizes = [d, *[int(s) for s in str(o["hidden"]).split(",")], int(o["latent_dim"])]

    def stack(ss: list[int]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(ss[:-1], ss[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(ss) - 2:
                layers.append(nn.ReLU())
        return layers

    class AE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Flatten(), *stack(sizes))
            self.decoder = nn.Sequential(*stack(sizes[::-1]))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return (self.decoder(self.encoder(x)),)  # logits

    return AE()


def _reference_loss(case: Case, model: Any, x: Any, y: Any, logits_form: bool) -> Any:
    """Summed over the batch, as pytorch/examples does (Adam does not care about the scale)."""
    import torch
    import torch.nn.functional as F

    if case.model == "unet":
        return _aekit_loss(model, x, y) * len(x)
    out = model(x)
    xf = x.reshape(len(x), -1)
    logits = out[0].reshape(len(x), -1)
    if logits_form:
        rec = F.binary_cross_entropy_with_logits(logits, xf, reduction="sum")
    else:  # what the examples write: a sigmoid output layer, then BCE
        rec = F.binary_cross_entropy(torch.sigmoid(logits), xf, reduction="sum")
    if len(out) == 1:
        return rec
    mu, logvar = out[1], out[2]
    return rec - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


# ----------------------------------------------------------------------------------------- the loops

Result = dict[str, Any]


def _load(case: Case, subsample: int | None) -> Any:
    import aekit

    return aekit.load_data(_data_config(case, subsample))


def _epoch_rates(times: list[float], n: int) -> list[float]:
    return [n / t for t in times]


def _sync(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously: an epoch's time must include it)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_plain(case: Case, epochs: int, seed: int, levers: frozenset[str], subsample: int | None,
              device: str = "cpu") -> Result:
    """A plain PyTorch loop with some of aekit's levers switched on (none: the reference).  On CUDA the
    DataLoader's batches are copied to the GPU per step (what the examples do); ``resident`` keeps the uint8
    training tensor on the GPU."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from aekit.data import to_float

    torch.set_flush_denormal("flush" in levers)
    data = _load(case, subsample)
    torch.manual_seed(seed)
    model = _reference_model(case, data).to(device)
    supervised = case.model == "unet"
    cl = "channels_last" in levers and len(data.shape) == 3
    if cl:
        model = model.to(memory_format=torch.channels_last)
    kw: dict[str, Any] = {"fused": True} if "fused" in levers else {"foreach": True} if "foreach" in levers else {}
    opt = torch.optim.Adam(model.parameters(), lr=case.lr, **kw)
    loss_fn: Callable[..., Any] = lambda x, y: _reference_loss(case, model, x, y, "logits" in levers)  # noqa: E731
    if "compile" in levers:
        options = COMPILE_OPTIONS_CUDA if device.startswith("cuda") else COMPILE_OPTIONS_CPU  # as aekit's trainer
        loss_fn = torch.compile(loss_fn, options=options)
    dev_type = torch.device(device).type
    autocast = (torch.autocast(dev_type, dtype=torch.bfloat16) if "bf16" in levers else contextlib.nullcontext())
    xtr, ytr = data.train.x, (data.train.y if supervised else None)
    n = len(xtr)
    if "resident" in levers:
        xtr = xtr.to(device)
        ytr = None if ytr is None else ytr.to(device)

    def batches() -> Iterator[tuple[Any, Any]]:
        if "resident" in levers:  # slices of the resident uint8 tensor, one permutation per epoch
            order = torch.randperm(n).to(device)
            for s in range(0, n, case.batch_size):
                idx = order[s:s + case.batch_size]
                yield to_float(xtr[idx]), (None if ytr is None else ytr[idx])
        else:
            for b in loader:
                yield b[0].to(device), (b[1].to(device) if supervised else None)

    if "resident" not in levers:  # what the examples do: float copies in a TensorDataset, a shuffling DataLoader
        tensors = (to_float(xtr),) + ((ytr,) if supervised else ())
        loader = DataLoader(TensorDataset(*tensors), batch_size=case.batch_size, shuffle=True)
    times = []
    for _ in range(epochs):
        model.train()
        t0 = _clock()
        for x, y in batches():
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad()
            with autocast:
                loss = loss_fn(x, y)
            loss.backward()
            opt.step()
        _sync(device)
        times.append(_clock() - t0)
    model.eval()
    total, xt = 0.0, data.test.x
    eval_bs = 16 if supervised else 1000
    with torch.no_grad():
        for s in range(0, len(xt), eval_bs):
            xb = to_float(xt[s:s + eval_bs]).to(device)
            yb = data.test.y[s:s + eval_bs].to(device) if supervised else None
            total += float(_reference_loss(case, model, xb, yb, "logits" in levers))
    return {"epoch_s": times, "n_train": n, "test_loss": total / len(xt)}


AEKIT_LEVERS = frozenset({"compile", "bf16", "fp32", "channels_last", "nchw"})


def run_aekit(case: Case, epochs: int, seed: int, levers: frozenset[str], subsample: int | None,
              device: str = "cpu") -> Result:
    """aekit's own trainer, through the public API (``aekit.train``).  No lever: aekit's defaults (``--precision
    auto``, ``--memory-format auto``); ``+fp32`` / ``+bf16`` force the precision, ``+channels_last`` / ``+nchw``
    the memory format."""
    import torch

    import aekit
    from aekit.train import mean_losses

    data = _load(case, subsample)
    opts = {**case.options, "epochs": epochs, "batch_size": case.batch_size, "lr": case.lr, "seed": seed,
            "schedule": "constant", "progress": False, "device": device}
    opts.update({k: True for k in ("compile", "channels_last") if k in levers})
    if "nchw" in levers:
        opts["memory_format"] = "nchw"
    for p in ("fp32", "bf16"):
        if p in levers:
            opts["precision"] = p
    run = aekit.train(case.model, _data_config(case, subsample), None, report=False, evaluate=False, **opts)
    times = [float(r["time_s"]) for r in run.metrics]
    with torch.random.fork_rng(devices=[device] if device.startswith("cuda") else []):
        test_loss = mean_losses(run.model, data.test, batch_size=16 if case.model == "unet" else 1000)["loss"]
    return {"epoch_s": times, "n_train": len(data.train), "test_loss": test_loss,
            "train_loss": float(run.metrics[-1]["train_loss"]), "precision": run.train_config.precision,
            "memory_format": run.train_config.memory_format}


def _data_config(case: Case, subsample: int | None) -> Any:
    from aekit.data import DataConfig

    opts = {"val_fraction": 0.0, **case.data_options}
    if subsample:
        opts["subsample"] = subsample
    return DataConfig(case.data, **opts)


def run_pythae(case: Case, epochs: int, seed: int, levers: frozenset[str], subsample: int | None) -> Result:
    """pythae 0.1.2's BaseTrainer on a pythae VAE with the reference's encoder / decoder."""
    import torch
    import torch.nn as nn
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE as PVAE
    from pythae.models import VAEConfig as PVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from aekit.data import to_float

    data = _load(case, subsample)
    torch.manual_seed(seed)
    ref = _reference_model(case, data)
    shape = data.shape

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            BaseEncoder.__init__(self)
            self.ref = ref

        def forward(self, x: torch.Tensor) -> Any:
            mu, logvar = self.ref.encode(x)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, owner: nn.Module) -> None:
            BaseDecoder.__init__(self)
            self._owner: list[Any] = [owner]  # not registered twice

        def forward(self, z: torch.Tensor) -> Any:  # pythae's BCE takes probabilities: a sigmoid output
            return ModelOutput(reconstruction=torch.sigmoid(self._owner[0].ref.decode(z)).view(len(z), *shape))

    enc = Encoder()
    model = PVAE(PVAEConfig(input_dim=shape, latent_dim=int(case.options["latent_dim"]), reconstruction_loss="bce"),
                 encoder=enc, decoder=Decoder(enc))
    xtr = to_float(data.train.x)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BaseTrainerConfig(output_dir=tmp, num_epochs=epochs, learning_rate=case.lr,
                                per_device_train_batch_size=case.batch_size, optimizer_cls="Adam", seed=seed,
                                no_cuda=True)
        trainer = BaseTrainer(model, BaseDataset(xtr, torch.zeros(len(xtr))), training_config=cfg)
        trainer.prepare_training()
        times = []
        for epoch in range(1, epochs + 1):
            t0 = _clock()
            trainer.train_step(epoch)
            times.append(_clock() - t0)
    model.eval()
    total, xt = 0.0, data.test.x
    with torch.no_grad():
        for s in range(0, len(xt), 1000):
            xb = to_float(xt[s:s + 1000])
            total += float(model({"data": xb}).loss) * len(xb)
    return {"epoch_s": times, "n_train": len(xtr), "test_loss": total / len(xt)}


REFERENCE_LEVERS = frozenset({"resident", "flush", "fused", "foreach", "logits", "compile", "bf16", "channels_last"})


def parse_impl(impl: str) -> tuple[str, frozenset[str]]:
    """``aekit``, ``aekit+compile``, ``aekit+fp32``, ``reference``, ``reference+resident+flush``, ``pythae``."""
    base, *levers = impl.split("+")
    from aekit.errors import ConfigError

    if base not in ("aekit", "reference", "pythae"):
        raise ConfigError(f"unknown implementation {impl!r}: aekit[+LEVER...], reference[+LEVER...] or pythae")
    known = {"aekit": AEKIT_LEVERS, "reference": REFERENCE_LEVERS, "pythae": frozenset()}[base]
    bad = [lv for lv in levers if lv not in known]
    if bad or (base == "aekit" and ({"fp32", "bf16"} <= set(levers) or {"nchw", "channels_last"} <= set(levers))):
        raise ConfigError(f"{impl!r}: {base}'s levers are {', '.join(sorted(known)) or 'none'}"
                          + (" (fp32 or bf16, nchw or channels_last, not both)" if base == "aekit" else ""))
    return base, frozenset(levers)


def check_device(device: str) -> None:
    """``--device cuda`` needs a GPU that torch sees: a one-line error otherwise (before any run)."""
    import torch

    from aekit.errors import ConfigError

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is visible to PyTorch; use --device cpu")


def matmul_flops_per_sample(case: Case, subsample: int | None = None, data: Any = None) -> float:
    """Matmul + conv FLOPs (forward and backward) of one training sample of aekit's model."""
    from torch.utils.flop_counter import FlopCounterMode

    from aekit.data import to_float

    data = data if data is not None else _load(case, subsample)
    model = _aekit_model(case, data)
    b = min(case.batch_size, len(data.train))
    x = to_float(data.train.x[:b])
    y = data.train.y[:b] if model.supervised else None
    with FlopCounterMode(display=False) as fc:
        _aekit_loss(model, x, y).backward()
    return fc.get_total_flops() / b


def worker(spec: dict[str, Any]) -> Result:
    """One (case, implementation) measurement; run in a fresh process by the driver."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    case = get_case(spec["case"], spec.get("smoke", False))
    base, levers = parse_impl(spec["impl"])
    load0 = load_avg()
    device = spec.get("device", "cpu")
    with _cpu_clock(spec.get("clock") == "cpu"):
        if base == "pythae":  # pythae's trainer runs on the CPU here (no_cuda)
            res = run_pythae(case, int(spec["epochs"]), int(spec.get("seed", 0)), levers, spec.get("subsample"))
        else:
            fn = run_aekit if base == "aekit" else run_plain
            res = fn(case, int(spec["epochs"]), int(spec.get("seed", 0)), levers, spec.get("subsample"), device)
    res.update(case=spec["case"], impl=spec["impl"], peak_rss_mb=peak_rss_mb(), load_avg=[load0, load_avg()],
               threads=torch.get_num_threads(), clock=spec.get("clock", "wall"))
    return res


@contextlib.contextmanager
def _cpu_clock(enabled: bool) -> Iterator[None]:
    """Time epochs by process CPU time instead of wall time, aekit's trainer included: ``time.perf_counter``
    itself is replaced while the measurement runs (each one has a process of its own)."""
    global _clock
    if not enabled:
        yield
        return
    saved = time.perf_counter, _clock
    time.perf_counter = time.process_time  # type: ignore[assignment]
    _clock = time.process_time
    try:
        yield
    finally:
        time.perf_counter, _clock = saved  # type: ignore[assignment]


def _cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have used (``/proc/stat``), None where unavailable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    busy = sum(int(f) for i, f in enumerate(fields[:8]) if i not in (3, 4))  # not idle, iowait (nor guest: in user)
    return busy / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def foreign_load(seconds: float = 2.0) -> float | None:
    """CPU cores busy with other processes, averaged over ``seconds``."""
    a = _cpu_seconds()
    time.sleep(seconds)
    b = _cpu_seconds()
    return None if a is None or b is None else (b - a) / seconds


def wait_quiet(max_cores: float, timeout: float) -> float | None:
    """Wait until other processes use less than ``max_cores`` cores (or ``timeout`` seconds pass)."""
    end = time.monotonic() + timeout
    while True:
        busy = foreign_load()
        if busy is None or busy < max_cores or time.monotonic() > end:
            return busy
        log.info("waiting for a quiet machine: %.2f cores busy with other processes", busy)
        time.sleep(10)


def _run_worker(spec: dict[str, Any], inprocess: bool) -> Result:
    if inprocess:
        import torch

        torch.set_flush_denormal(False)  # the reference must not inherit aekit's setting
        return worker(spec)
    cmd = [sys.executable, str(SCRIPT), "_worker", json.dumps(spec)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cpu0, own0, t0 = _cpu_seconds(), _children_cpu(), time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    cpu1, own1, wall = _cpu_seconds(), _children_cpu(), time.monotonic() - t0
    for line in r.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            res = json.loads(line[len(RESULT_TAG):])
            # cores other processes kept busy while this run ran (its own CPU time subtracted)
            res["foreign_cores"] = None if cpu0 is None or cpu1 is None else max(
                0.0, ((cpu1 - cpu0) - (own1 - own0)) / max(wall, 1e-9))
            return res
    raise RuntimeError(f"benchmark worker {spec} failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")


def measured(spec: dict[str, Any], args: argparse.Namespace) -> Result:
    """One run; with ``--quiet-cores X`` it waits for a quiet machine first and repeats a run during which
    other processes used more than X cores (at most 3 tries, the least disturbed one is kept)."""
    limit = getattr(args, "quiet_cores", None)
    if args.inprocess or limit is None:
        return _run_worker(spec, args.inprocess)
    best: Result | None = None
    for _ in range(3):
        wait_quiet(limit, getattr(args, "quiet_timeout", 1800))
        res = _run_worker(spec, False)
        if best is None or (res["foreign_cores"] or 0) < (best["foreign_cores"] or 0):
            best = res
        if res["foreign_cores"] is None or res["foreign_cores"] <= limit:
            break
        log.info("%s disturbed (%.2f cores of other load): again", spec["impl"], res["foreign_cores"])
    return best  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- the suite


def _median_rate(res: Result) -> float:
    rates = _epoch_rates(res["epoch_s"], res["n_train"])
    steady = rates[1:] if len(rates) > 1 else rates
    return statistics.median(steady)


def pythae_available() -> bool:
    try:
        import pythae  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means: skip it, with a note
        return False
    return True


def summarise(case_name: str, results: list[Result], flops: float, gemm: float) -> list[dict[str, Any]]:
    rows = []
    impls = list(dict.fromkeys(r["impl"] for r in results))
    ref = [_median_rate(r) for r in results if r["impl"] == "reference"]
    ref_rate = statistics.median(ref) if ref else float("nan")
    for impl in impls:
        rs = [r for r in results if r["impl"] == impl]
        rates = [_median_rate(r) for r in rs]
        rate = statistics.median(rates)
        rows.append({
            "case": case_name, "impl": impl, "samples_per_s": rate, "min": min(rates), "max": max(rates),
            "vs_reference": rate / ref_rate if ref_rate == ref_rate else float("nan"),
            "test_loss": statistics.median(r["test_loss"] for r in rs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
            "bound_fraction": rate * flops / gemm if gemm and flops else float("nan"),
            "first_epoch_s": statistics.median(r["epoch_s"][0] for r in rs), "repeats": len(rs),
            "load_avg": [min(r["load_avg"][0] for r in rs), max(r["load_avg"][1] for r in rs)],
            "foreign_cores": max((r.get("foreign_cores") or 0.0) for r in rs),
        })
    return rows


_NAMES = {"aekit": "aekit trainer", "reference": "plain PyTorch loop (reference)", "pythae": "pythae 0.1.2"}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    out = ["| implementation | samples/s (median; min–max) | × reference | test loss | peak RSS (MB) | "
           "of matmul bound | 1st epoch (s) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = _NAMES.get(r["impl"], r["impl"])
        out.append(f"| {name} | {r['samples_per_s']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f}) | {r['vs_reference']:.2f} | "
                   f"{r['test_loss']:.2f} | {r['peak_rss_mb']:.0f} | {100 * r['bound_fraction']:.0f}% | "
                   f"{r['first_epoch_s']:.1f} |")
    return "\n".join(out)


def suite_train(args: argparse.Namespace, impls_default: list[str]) -> dict[str, Any]:
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    impls = [i.strip() for i in args.impls.split(",")] if args.impls else list(impls_default)
    notes: list[str] = []
    check_device(args.device)
    if "pythae" in impls and args.device != "cpu":
        impls.remove("pythae")
        notes.append(f"pythae runs on the CPU in this suite: no pythae column on {args.device}.")
    if "pythae" in impls and not pythae_available():
        impls.remove("pythae")
        notes.append("pythae is not installed (`pip install -c constraints.txt pythae==0.1.2`, or "
                      "`pip install aekit[bench]`): its column is skipped.")
    for i in impls:
        parse_impl(i)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the GEMM rate of the bound, at the runs' thread count
    def gemm_now() -> float:
        if getattr(args, "quiet_cores", None) is not None and not args.inprocess:
            wait_quiet(args.quiet_cores, getattr(args, "quiet_timeout", 1800))
        return gemm_rate("float32", 2048 if not args.smoke else 256, 1.0 if not args.smoke else 0.05, args.device)

    gemm = gemm_now()
    if args.clock == "cpu":
        notes.append("epochs timed by process CPU time (--clock cpu), not wall time: indicative ratios only")
    report: dict[str, Any] = {"machine": machine(args.device), "gemm_fp32_flops": gemm, "cases": {}, "notes": notes,
                              "command": " ".join([COMMAND, *getattr(args, "argv", [])])}
    for name in cases:
        case = get_case(name, args.smoke)
        if name == "unet":
            import aekit

            if "unet" not in aekit.MODELS:
                notes.append("unet: the U-Net model is not in this aekit build: skipped")
                continue
        epochs = args.epochs or case.epochs
        case_impls = [i for i in impls if not (i.startswith("pythae") and not case.pythae)]
        if len(case_impls) < len(impls):
            notes.append(f"{name}: pythae has no such model (only its VAE takes our encoder/decoder): no pythae row")
        flops = matmul_flops_per_sample(case, args.subsample)
        results = []
        for rep in range(args.repeats):
            k = rep % len(case_impls)
            for impl in case_impls[k:] + case_impls[:k]:  # rotate the order between repeats
                spec = {"case": name, "impl": impl, "epochs": epochs, "seed": rep, "subsample": args.subsample,
                        "smoke": args.smoke, "threads": args.threads, "clock": args.clock, "device": args.device}
                res = measured(spec, args)
                log.info("%s %-40s %8.0f samples/s  test loss %.3f  (repeat %d, load %s, other load %s cores)",
                         name, impl, _median_rate(res), res["test_loss"], rep + 1, res["load_avg"],
                         res.get("foreign_cores"))
                results.append(res)
        gemm = max(gemm, gemm_now())  # the best of the measurements: a disturbed one only reads low
        report["gemm_fp32_flops"] = gemm
        rows = summarise(name, results, flops, gemm)
        report["cases"][name] = {"title": case.title, "epochs": epochs, "batch_size": case.batch_size,
                                 "flops_per_sample": flops, "matmul_bound_samples_per_s": gemm / flops,
                                 "rows": rows, "raw": results}
    return report


def render_train(report: dict[str, Any], command: str) -> str:
    m = report["machine"]
    where = f"GPU {m['gpu']} ({m['device']}) with " if m.get("gpu") else ""
    out = [f"Machine: {where}{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['threads']} threads); fp32 GEMM "
           f"2048³ on {m.get('device', 'cpu')}: {report['gemm_fp32_flops'] / 1e9:.0f} GFLOP/s.", ""]
    for name, c in report["cases"].items():
        loads = [x for r in c["rows"] for x in r["load_avg"]]
        foreign = max(r.get("foreign_cores", 0.0) for r in c["rows"])
        out += [f"#### {c['title']}", "",
                f"`{command} --cases {name}` — batch {c['batch_size']}, {c['epochs']} epochs, "
                f"{c['rows'][0]['repeats']} repeats; load average {min(loads):.2f}–{max(loads):.2f}, other "
                f"processes ≤ {foreign:.2f} cores during the runs; "
                f"matmul bound {c['matmul_bound_samples_per_s']:,.0f} samples/s "
                f"({c['flops_per_sample'] / 1e6:.2f} MFLOP per sample per step)", "", markdown_table(c["rows"]), ""]
    out += [f"- {n}" for n in report["notes"]]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- stream


def suite_stream(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of streamed training vs. the budget + the model's footprint, and vs. loading whole."""
    import numpy as np

    from aekit.data.stream import parse_size

    size, budget = parse_size(args.size), parse_size(args.budget)
    tmp = tempfile.TemporaryDirectory() if not args.path else None
    path = Path(args.path) if args.path else Path(tmp.name) / "big.npy"  # type: ignore[union-attr]
    rows = size // 784
    if not path.exists():
        log.info("writing %s: %d random 28x28 uint8 images (%.0f MB)", path, rows, rows * 784 / 1e6)
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, 28, 28))
        rng = np.random.default_rng(0)
        for a in range(0, rows, 65536):
            arr[a:a + 65536] = rng.integers(0, 256, size=arr[a:a + 65536].shape, dtype=np.uint8)
        arr.flush()
        del arr
    small = path.with_name("small.npy")
    np.save(small, np.load(path, mmap_mode="r")[:4096])
    common = ["--model", "vae", "--hidden", "400", "--latent-dim", "20", "--batch-size", "128", "--epochs",
              str(args.epochs), "--no-progress", "--no-report", "--val-fraction", "0.01", "--max-val", "1000"]

    def child(data: str, *extra: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="aekit-bench-") as d:  # the child's run, removed afterwards
            run = Path(d) / "r"
            r = subprocess.run([sys.executable, str(SCRIPT), "_cli", "-q", "train", "--data", data, *common,
                                "--out", str(run), *extra], capture_output=True, text=True)
            res = next((json.loads(line[len(RESULT_TAG):]) for line in r.stdout.splitlines()
                        if line.startswith(RESULT_TAG)), None)
            if res is None or res["rc"] != 0:
                raise RuntimeError(f"stream benchmark child failed: {r.stderr.strip()[-2000:]}")
            metrics = (run / "metrics.csv").read_text().splitlines()
        head, last = metrics[0].split(","), metrics[-1].split(",")
        res["epoch_s"] = float(dict(zip(head, last))["time_s"])
        return res

    footprint = child(f"npy:{small}")
    streamed = child(f"npy:{path}", "--memory-budget", args.budget)
    whole = child(f"npy:{path}") if not args.skip_whole else None
    n_train = int(rows * 0.8) - min(1000, int(round(0.01 * int(rows * 0.8))))
    report = {"file_mb": rows * 784 / 1e6, "budget_mb": budget / 1e6, "footprint_rss_mb": footprint["rss"],
              "streamed_rss_mb": streamed["rss"], "streamed_samples_per_s": n_train / streamed["epoch_s"],
              "whole_rss_mb": whole["rss"] if whole else None,
              "whole_samples_per_s": n_train / whole["epoch_s"] if whole else None,
              "within": streamed["rss"] <= budget / 1e6 + footprint["rss"], "load_avg": load_avg()}
    if tmp is not None:
        tmp.cleanup()
    return report


def render_stream(r: dict[str, Any], command: str) -> str:
    lines = [f"`{command}` (load average {r['load_avg']:.2f})", "",
             "| | peak RSS (MB) | samples/s |", "|---|---|---|",
             f"| model footprint (same training on 4,096 in-memory rows) | {r['footprint_rss_mb']:.0f} | |",
             f"| streamed, `--memory-budget {r['budget_mb']:.0f}MB` (file {r['file_mb']:.0f} MB) | "
             f"{r['streamed_rss_mb']:.0f} | {r['streamed_samples_per_s']:,.0f} |"]
    if r["whole_rss_mb"] is not None:
        lines.append(f"| loaded whole (no budget) | {r['whole_rss_mb']:.0f} | {r['whole_samples_per_s']:,.0f} |")
    lines += ["", f"Streamed peak RSS {'≤' if r['within'] else '>'} budget + footprint "
              f"({r['budget_mb'] + r['footprint_rss_mb']:.0f} MB)."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ iwae


def suite_iwae(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import aekit
    from aekit.evaluate.likelihood import iwae_nll

    if args.run:
        model = aekit.load(args.run)
    else:
        model = aekit.train("vae", "fashion-mnist", None, hidden="400", latent_dim=20, likelihood="bernoulli",
                            epochs=args.train_epochs, progress=False, report=False, evaluate=False).model
    data = aekit.load_data(aekit.DataConfig("fashion-mnist"))
    x = data.test.x[: args.n] if args.n else data.test.x
    load0 = load_avg()
    t = time.perf_counter()
    nll = iwae_nll(model, x, args.k)
    dt = time.perf_counter() - t
    return {"k": args.k, "n": len(x), "seconds": dt, "nll": float(nll.mean()), "load_avg": [load0, load_avg()],
            "threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------------------------- cli


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="also write the Markdown to this file")
    p.add_argument("--json", help="also write the raw results to this JSON file")


def build_parser() -> argparse.ArgumentParser:
    b = argparse.ArgumentParser(prog=COMMAND, description="aekit's benchmarks: aekit vs a plain PyTorch loop vs "
                                "pythae; levers; streaming; IWAE; GEMM rates")
    b.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    b.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    bs = b.add_subparsers(dest="suite", required=True)
    for name, hlp in (("train", "samples/s, test loss, peak RSS and matmul-bound fraction per case"),
                      ("levers", "aekit's levers added one at a time to the plain loop")):
        t = bs.add_parser(name, help=hlp)
        t.add_argument("--cases", default=",".join(CASES) if name == "train" else "mlp-vae,conv-vae",
                       help=f"comma-separated: {', '.join(CASES)}")
        t.add_argument("--impls", default=None, help="comma-separated implementations: aekit[+compile][+bf16|+fp32][+channels_last|+nchw], "
                       "reference[+resident][+flush][+fused][+logits][+compile][+bf16][+channels_last], pythae")
        t.add_argument("--epochs", type=int, default=None, help="epochs per run (default: per case)")
        t.add_argument("--repeats", type=int, default=3)
        t.add_argument("--subsample", type=int, default=None, help="train on N samples (quick runs)")
        t.add_argument("--threads", type=int, default=None, help="torch threads in each run (default: torch's)")
        t.add_argument("--inprocess", action="store_true", help="no fresh process per run (tests; RSS not isolated)")
        t.add_argument("--quiet-cores", type=float, default=None, metavar="X",
                       help="wait until other processes use < X cores before each run, and redo runs they disturbed "
                            "more (e.g. 0.2 on a shared machine)")
        t.add_argument("--quiet-timeout", type=float, default=1800, help="seconds to wait for quiet (default 1800)")
        t.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                       help="cpu: time epochs by process CPU time (with --threads 1: indicative ratios on a "
                            "machine other processes are loading; not figures to report)")
        t.add_argument("--smoke", action="store_true", help="tiny models on tiny data: checks the suite works")
        t.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                       help="where every implementation trains (pythae: CPU only); the bound uses this device's "
                            "fp32 GEMM rate")
        _common(t)
        t.set_defaults(func=cmd_bench)
    s = bs.add_parser("stream", help="peak RSS of training on an .npy larger than --memory-budget")
    s.add_argument("--size", default="400MB", help="size of the generated .npy (default 400MB)")
    s.add_argument("--budget", default="100MB", help="--memory-budget of the streamed run (default 100MB)")
    s.add_argument("--path", help="where to write / reuse the generated .npy (default: a temporary folder)")
    s.add_argument("--epochs", type=int, default=1)
    s.add_argument("--skip-whole", action="store_true", help="skip the run that loads the file whole")
    _common(s)
    s.set_defaults(func=cmd_bench)
    i = bs.add_parser("iwae", help="time of the IWAE estimate on the Fashion-MNIST test images")
    i.add_argument("--k", type=int, default=5000)
    i.add_argument("--n", type=int, default=None, help="only the first N test images")
    i.add_argument("--run", help="a trained VAE run on fashion-mnist (default: train the MLP VAE briefly)")
    i.add_argument("--train-epochs", type=int, default=2)
    _common(i)
    i.set_defaults(func=cmd_bench)
    m = bs.add_parser("matmul", help="the GEMM rates of this machine (fp32, bf16)")
    _common(m)
    m.set_defaults(func=cmd_bench)
    return b


LEVER_LADDER = ["reference", "reference+resident", "reference+resident+flush", "reference+resident+flush+fused",
                "reference+resident+flush+fused+logits", "reference+resident+flush+fused+logits+compile",
                "reference+resident+flush+fused+logits+bf16", "aekit", "aekit+compile", "aekit+bf16"]


def cmd_bench(args: argparse.Namespace) -> int:
    command = f"{COMMAND} {args.suite}"
    if args.suite in ("train", "levers"):
        default = (["reference", "aekit", "pythae"] if args.suite == "train" else LEVER_LADDER)
        report = suite_train(args, default)
        text = render_train(report, command + (" --smoke" if args.smoke else ""))
    elif args.suite == "stream":
        report = suite_stream(args)
        text = render_stream(report, f"{command} --size {args.size} --budget {args.budget}")
    elif args.suite == "iwae":
        report = suite_iwae(args)
        text = (f"`{command} --k {args.k}" + (f" --n {args.n}" if args.n else "") + f"`: IWAE K={report['k']} on "
                f"{report['n']:,} test images in {report['seconds']:.1f} s ({report['n'] * report['k'] / report['seconds']:,.0f} "
                f"decoded samples/s; nll {report['nll']:.2f} nats; load average {report['load_avg']})")
    else:
        report = {"fp32": gemm_rate("float32"), "bf16": gemm_rate("bfloat16"), "load_avg": load_avg(), **machine()}
        text = (f"`{command}`: 2048³ GEMM fp32 {report['fp32'] / 1e9:.0f} GFLOP/s, bf16 {report['bf16'] / 1e9:.0f} "
                f"GFLOP/s ({report['threads']} threads, load average {report['load_avg']})")
    sys.stdout.write(text + "\n")
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/bench.py [-q|-v] SUITE ...``; a user error is one line on stderr and exit code 2."""
    from aekit.errors import AekitError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = [a for a in argv if a not in ("-q", "--quiet", "-v", "--verbose")]
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    try:
        return args.func(args)
    except AekitError as e:
        sys.stderr.write(f"{COMMAND}: error: {e}\n")
        return e.exit_code


def _child_cli(argv: list[str]) -> int:
    """A streamed-training child of the ``stream`` suite: ``aekit`` ARGS, then its time and peak RSS."""
    from aekit.cli import main as aekit_main

    t = time.perf_counter()
    rc = aekit_main(argv)
    sys.stdout.write(RESULT_TAG + json.dumps({"rc": rc, "s": time.perf_counter() - t, "rss": peak_rss_mb()}) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_worker":  # one measurement, in a fresh process: _worker SPEC
        logging.basicConfig(level=logging.WARNING)
        result = worker(json.loads(sys.argv[2]))
        sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
    elif sys.argv[1:2] == ["_cli"]:
        sys.exit(_child_cli(sys.argv[2:]))
    else:
        sys.exit(main())
