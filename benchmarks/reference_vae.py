"""The plain PyTorch reference: pytorch/examples' VAE recipe (784-400-20, BCE + KL, Adam 1e-3, batch 128,
DataLoader over a TensorDataset), on the same Fashion-MNIST files aekit reads.

    python benchmarks/reference_vae.py --epochs 10            # prints the test ELBO per epoch (nats/sample)

Training uses the full 60,000 training images, as the example does; the test ELBO is one posterior sample per
test image, like the example's test loss.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from plain_loop import (  # the same pytorch/examples model and loss (benchmarks/ is on sys.path)
    VAE,
    loss_function,
)
from torch.utils.data import DataLoader, TensorDataset

from aekit.data import DataConfig
from aekit.data.idx import load_named


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    # all 60,000 training images: no validation hold-out, as in pytorch/examples
    data = load_named("fashion-mnist", DataConfig("fashion-mnist", val_fraction=0.0))
    train = TensorDataset(data.train.x.float().div(255))
    test = data.test.x.float().div(255)
    loader = DataLoader(train, batch_size=128, shuffle=True)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        for (x,) in loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            opt.step()
        model.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(test), 1000):
                recon, mu, logvar = model(test[i:i + 1000])
                total += loss_function(recon, test[i:i + 1000], mu, logvar).item()
        print(json.dumps({"epoch": epoch, "test_elbo": -total / len(test), "epoch_s": round(time.perf_counter() - t0, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
