"""U-Net bench step, NCHW vs channels_last vs channels_last with the small BatchNorm layers run in NCHW.

    python benchmarks/results/remeasure-session21/unet_bn_ab.py nchw,cl,bnfix8 4

Variants: ``nchw``; ``cl`` (weights and batches channels_last); ``bnfixN`` (channels_last, but every BatchNorm2d
of ≤ N channels converts its input to NCHW and its output back, by forward hooks).  Prints the first 5 losses
of each (the same model and batches: they must agree), then per variant the median ms per step over all rounds,
the variants interleaved step by step (the order reversed every other round).
"""

from __future__ import annotations

import collections
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from bench import _aekit_model, get_case  # noqa: E402

from aekit.data import DataConfig, load_data, to_float  # noqa: E402
from aekit.data.batch import Batch  # noqa: E402

torch.set_flush_denormal(True)
case = get_case("unet")
data = load_data(DataConfig(case.data, val_fraction=0.0, **case.data_options))


def to_nchw(mod, args):
    return (args[0].contiguous(),)


def to_nhwc(mod, args, out):
    return out.contiguous(memory_format=torch.channels_last)


def build(variant: str):
    torch.manual_seed(0)
    m = _aekit_model(case, data)
    cl = variant != "nchw"
    if cl:
        m = m.to(memory_format=torch.channels_last)
    if variant.startswith("bnfix"):
        limit = int(variant[5:])
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d) and mod.num_features <= limit:
                mod.register_forward_pre_hook(to_nchw)
                mod.register_forward_hook(to_nhwc)
    opt = torch.optim.Adam(m.parameters(), lr=case.lr, fused=True)

    def step(idx: torch.Tensor) -> float:
        x = to_float(data.train.x.index_select(0, idx))
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = m.loss(Batch(x, labels=data.train.y.index_select(0, idx)))
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()
        return loss.total.item()

    return step


def main() -> None:
    variants = sys.argv[1].split(",")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    steps = {v: build(v) for v in variants}
    perm = torch.randperm(len(data.train))
    batches = [perm[s:s + 16] for s in range(0, len(data.train) - 15, 16)]
    print({v: [round(steps[v](i), 4) for i in batches[:5]] for v in variants})
    ts: dict[str, list[float]] = collections.defaultdict(list)
    for r in range(rounds):
        for idx in batches:
            for v in variants if r % 2 == 0 else variants[::-1]:
                t = time.perf_counter()
                steps[v](idx)
                ts[v].append(time.perf_counter() - t)
    for v in variants:
        med = statistics.median(ts[v])
        q = statistics.quantiles(ts[v], n=4)
        print(f"{v:12s} median {med * 1e3:7.1f} ms/step (IQR {q[0] * 1e3:.0f}-{q[2] * 1e3:.0f}) "
              f"{16 / med:6.1f} samples/s")


if __name__ == "__main__":
    main()
