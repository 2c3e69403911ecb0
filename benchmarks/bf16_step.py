"""One training step in fp32 against bf16 autocast, on this CPU: is bf16 a fast path here?

    python benchmarks/bf16_step.py [--steps 10]

Times ``loss(batch).total``, backward and an Adam step for the MLP VAE 784-400-20 (batch 128) and the dSprites
β-VAE recipe network (conv 32,32,64,64 + FC 256, latent 10, 64×64, batch 64) after two warm-up steps, and prints
ms per step and the bf16 / fp32 ratio with the CPU's bf16 support as aekit reads it (``bf16_native``). On a CPU
without AMX or AVX-512 BF16 bf16 is emulated: ``--precision auto`` picks fp32 there, and forcing bf16 warns.
"""

from __future__ import annotations

import argparse
import time

import torch

import aekit
from aekit.data.batch import Batch, DataShape
from aekit.models import MODELS
from aekit.train.precision import bf16_native

CASES = {
    "mlp-vae 784-400-20": ({"hidden": (400,), "latent_dim": 20, "likelihood": "bernoulli"}, (1, 28, 28), 128),
    "dsprites conv vae": ({"arch": "conv", "channels": (32, 32, 64, 64), "conv_hidden": (256,), "latent_dim": 10,
                           "likelihood": "bernoulli"}, (1, 64, 64), 64),
}


def step_ms(model: aekit.Autoencoder, x: torch.Tensor, bf16: bool, steps: int, *, fused: bool = False,
            warmup: int = 2) -> float:
    """Milliseconds per training step (loss, backward, Adam) of ``model`` on the batch ``x``, after ``warmup``
    steps; bf16 autocast when ``bf16`` (also used by benchmarks/conv_levers.py)."""
    opt = torch.optim.Adam(model.parameters(), fused=fused)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(Batch(x)).total
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per case and precision (default 10)")
    args = p.parse_args()
    native, why = bf16_native(torch.device("cpu"))
    print(f"bf16 native: {native} ({why}); torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (over, shape, bs) in CASES.items():
        torch.manual_seed(0)
        model = aekit.build_model("vae", MODELS["vae"].make_config(over).resolve(DataShape(shape)))
        x = torch.rand(bs, *shape).round()
        fp32, bf16 = step_ms(model, x, False, args.steps), step_ms(model, x, True, args.steps)
        print(f"{name}: fp32 {fp32:.1f} ms/step, bf16 {bf16:.1f} ms/step, bf16/fp32 {bf16 / fp32:.1f}×")


if __name__ == "__main__":
    main()
