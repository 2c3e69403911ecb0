"""BatchNorm2d (+ ReLU) forward and forward + backward, NCHW vs channels_last, at the U-Net bench case's shapes.

    python benchmarks/bn_layout.py

Batch 16, the four levels of the bench U-Net (depth 3, 8 base channels, 128×128 cells): 8×128², 16×64², 32×32²,
64×16².  Each line: the median of 20 timed calls after 3 warm-up calls, in ms, of ``bn(x)`` (training mode) and
of ``relu(bn(x)).backward(g)``; for channels_last also the same BatchNorm written as a (N·H·W, C) matrix
reduction (``var_mean`` + ``addcmul``), to see whether a composite beats the native kernel, with its largest
difference from the native output.  Run it with nothing else on the machine: the kernels are memory-bound.
"""

from __future__ import annotations

import time
from functools import partial

import torch
import torch.nn.functional as F


def median_ms(fn, n: int = 20) -> float:
    for _ in range(3):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2] * 1e3


def matrix_bn(x, w, b, rm, rv, eps: float = 1e-5, mom: float = 0.1):
    """Training-mode batch norm of a channels_last x as a (N·H·W, C) matrix (a view, no copy)."""
    c = x.shape[1]
    v = x.permute(0, 2, 3, 1).reshape(-1, c)
    var, mean = torch.var_mean(v, dim=0, unbiased=False)
    scale = w * torch.rsqrt(var + eps)
    shift = b - mean * scale
    with torch.no_grad():
        n = v.shape[0]
        rm.lerp_(mean, mom)
        rv.lerp_(var * n / (n - 1), mom)
    return torch.addcmul(shift, v, scale).view(x.shape[0], x.shape[2], x.shape[3], c).permute(0, 3, 1, 2)


def bn_forward(bn, x) -> None:
    bn(x)


def bn_relu_backward(bn, x, g) -> None:
    F.relu(bn(x)).backward(g)


def composite_relu_backward(bn, x, g) -> None:
    F.relu(matrix_bn(x, bn.weight, bn.bias, bn.running_mean, bn.running_var)).backward(g)


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for n, c, h in [(16, 8, 128), (16, 16, 64), (16, 32, 32), (16, 64, 16)]:
        for fmt in ("nchw", "channels_last"):
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            x = torch.randn(n, c, h, h).contiguous(memory_format=mf).requires_grad_(True)
            g = torch.randn(n, c, h, h).contiguous(memory_format=mf)
            bn = torch.nn.BatchNorm2d(c)

            fwd = partial(bn_forward, bn, x)
            fwd_bwd = partial(bn_relu_backward, bn, x, g)
            line = f"{n}x{c}x{h}x{h} {fmt:13s}: native fwd {median_ms(fwd):6.2f}  fwd+bwd+relu {median_ms(fwd_bwd):6.2f} ms"
            if fmt == "channels_last":
                composite = partial(composite_relu_backward, bn, x, g)
                y1 = bn(x)
                y2 = matrix_bn(x, bn.weight, bn.bias, bn.running_mean.clone(), bn.running_var.clone())
                line += (f"  composite fwd+bwd+relu {median_ms(composite):6.2f} ms "
                         f"(max diff {(y1 - y2).abs().max().item():.1e})")
            print(line, flush=True)


if __name__ == "__main__":
    main()
