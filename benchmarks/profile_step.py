"""Where the time of one aekit training step goes, and per-step A/B timings of the levers.

    python benchmarks/profile_step.py --profile                     # torch.profiler table of aekit's MLP VAE step
    python benchmarks/profile_step.py --variants base,bf16,compile  # ms/step of each variant, interleaved
    python benchmarks/profile_step.py --case conv-vae --variants base,bf16,channels_last

The step is exactly the trainer's (batch slice of the resident uint8 tensor → float, ``model.loss``,
backward, torch's fused Adam ``opt.step()``, flushed denormals, loss sums kept on the device).
Variants, combinable with ``+``: ``base``; ``bf16`` (autocast); ``compile`` (torch.compile of ``model.loss``
with ATen's random ops), with ``+philox`` (inductor's own random ops instead), ``+autotune`` (what mode
max-autotune-no-cudagraphs sets) or ``+cppwrapper`` (inductor's C++ wrapper; ``compile+cppwrapper`` is what
the trainer's ``--compile`` does on CPU); ``optcompile``
(torch.compile of ``opt.step``); ``channels_last`` (conv models); ``foreach`` / ``forloop`` (the other Adam implementations); ``noflush``
(denormals kept).
Timings are medians of 60-step windows, best of ``--rounds`` interleaved rounds (robust to other load).
``--clock cpu --threads 1`` times the thread's CPU time instead of wall time: indicative A/B ratios on a
machine other processes are loading (not figures to report).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any

import torch
from bench import _aekit_model, get_case  # benchmarks/bench.py, next to this script

from aekit.data import DataConfig, load_data, to_float
from aekit.data.batch import Batch


def make_step(case, data, variant: set[str]):
    torch.manual_seed(0)
    model = _aekit_model(case, data)
    cl = "channels_last" in variant and len(data.shape) == 3
    if cl:
        model = model.to(memory_format=torch.channels_last)
    kind: dict[str, dict[str, Any]] = {"foreach": {"foreach": True}, "forloop": {"foreach": False}}
    opt_kw = next((kind[k] for k in kind if k in variant), {"fused": True})
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=case.lr, **opt_kw)
    options: dict[str, Any] = {} if "philox" in variant else {"fallback_random": True}  # philox: inductor's own randn
    if "cppwrapper" in variant:  # the compiled graph's call() in C++ instead of Python
        options["cpp_wrapper"] = True
    if "autotune" in variant:  # what mode="max-autotune-no-cudagraphs" sets (mode and options exclude each other)
        options.update(max_autotune=True, coordinate_descent_tuning=True)
    fn = torch.compile(model.loss, options=options) if "compile" in variant else model.loss
    opt_step: Any = torch.compile(opt.step) if "optcompile" in variant else opt.step

    def zero_grad() -> None:
        opt.zero_grad(set_to_none=True)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if "bf16" in variant else contextlib.nullcontext
    sup = model.supervised
    x_all, y_all = data.train.x, data.train.y
    sums: dict[str, torch.Tensor] = {}

    def step(idx: torch.Tensor) -> None:
        torch.set_flush_denormal("noflush" not in variant)
        x = to_float(x_all.index_select(0, idx))
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            losses = fn(Batch(x, labels=y_all.index_select(0, idx) if sup else None))
        zero_grad()
        losses.total.backward()
        opt_step()
        for k, v in {"loss": losses.total, **losses.terms}.items():
            sums[k] = sums.get(k, 0.0) + v.detach().float() * len(idx)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="mlp-vae")
    ap.add_argument("--variants", default="base")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of the first variant")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--subsample", type=int, default=None,
                    help="train on a deterministic subset of N samples (dsprites-vae: e.g. 20000)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    case = get_case(args.case)
    sub = {"subsample": args.subsample} if args.subsample else {}
    data = load_data(DataConfig(case.data, val_fraction=0.0, **case.data_options, **sub))
    n, b = len(data.train), case.batch_size
    variants = [v.strip() for v in args.variants.split(",")]
    steps = {v: make_step(case, data, set(v.split("+"))) for v in variants}
    perm = torch.randperm(n)
    batches = [perm[s:s + b] for s in range(0, n - b + 1, b)]
    for v in variants:  # warm-up (and compilation)
        for idx in batches[:20]:
            steps[v](idx)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as p:
            for idx in batches[:50]:
                steps[variants[0]](idx)
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    best: dict[str, float] = {}
    k = 0
    for _ in range(args.rounds):
        for v in variants:
            ts = []
            for _ in range(60):
                idx = batches[k % len(batches)]
                k += 1
                t = clock()
                steps[v](idx)
                ts.append(clock() - t)
            best[v] = min(best.get(v, float("inf")), statistics.median(ts))
    base = best[variants[0]]
    for v in variants:
        print(f"{v:32s} {best[v] * 1e3:7.2f} ms/step  {b / best[v]:9,.0f} samples/s  {base / best[v]:5.2f}x")


if __name__ == "__main__":
    main()
