"""fp32 convolution levers on this CPU, one training step each: oneDNN on / off × channels_last off / on.

    python benchmarks/conv_levers.py [--steps 20]

Times ``loss(batch).total``, backward and a fused Adam step (fp32) for the bench's conv VAE (28×28, conv 32-64,
latent 20, batch 128) and the dSprites β-VAE recipe network (64×64, conv 32,32,64,64 + FC 256, latent 10,
batch 64) after three warm-up steps, with ``torch.backends.mkldnn.enabled`` on (oneDNN convolutions) or off
(the im2col path), and with weights and batch in NCHW or channels_last. One process, so the figures are a
per-step comparison, not the end-to-end rate of ``bench.py train``.
"""

from __future__ import annotations

import argparse

import torch
from bf16_step import step_ms  # the same step timing (this script's folder is on sys.path)

import aekit
from aekit.data.batch import DataShape
from aekit.models import MODELS

CASES = {
    "conv-vae 28x28": ({"arch": "conv", "channels": (32, 64), "latent_dim": 20, "likelihood": "bernoulli"},
                       (1, 28, 28), 128),
    "dsprites conv vae": ({"arch": "conv", "channels": (32, 32, 64, 64), "conv_hidden": (256,), "latent_dim": 10,
                           "likelihood": "bernoulli"}, (1, 64, 64), 64),
}


def case_step_ms(over: dict, shape: tuple[int, ...], bs: int, channels_last: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = aekit.build_model("vae", MODELS["vae"].make_config(over).resolve(DataShape(shape)))
    x = torch.rand(bs, *shape).round()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return step_ms(model, x, False, steps, fused=True, warmup=3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per setting (default 20)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    enabled = torch.backends.mkldnn.enabled
    try:
        for name, (over, shape, bs) in CASES.items():
            for mkldnn in (True, False):
                for cl in (False, True):
                    torch.backends.mkldnn.enabled = mkldnn
                    ms = case_step_ms(over, shape, bs, cl, args.steps)
                    print(f"{name}: oneDNN {'on' if mkldnn else 'off'}, channels_last {'on' if cl else 'off'}: "
                          f"{ms:.1f} ms/step, {bs / ms * 1000:.0f} samples/s", flush=True)
    finally:
        torch.backends.mkldnn.enabled = enabled


if __name__ == "__main__":
    main()
