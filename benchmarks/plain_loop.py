"""The whole job as a user writes it in plain PyTorch, to time against ``aekit train`` process to process.

    time python benchmarks/plain_loop.py --epochs 5
    time aekit train --model vae --data fashion-mnist --hidden 400 --latent-dim 20 --likelihood bernoulli \\
        --epochs 5 --out runs/job

The same job as that ``aekit train``: pytorch/examples' VAE 784-400-20 (BCE on a sigmoid output + KL, default
Adam, lr 1e-3, batch 128, fp32), trained on the 55,000 training images aekit trains on (5,000 of the 60,000
held out as aekit holds them out: ``--val 5000``), validated on them after every epoch, then the test loss on
the 10,000 test images, and the weights saved.  It imports no aekit: it reads the gzip IDX files itself
(``--data-dir``; default: where aekit looks, ``$AEKIT_DATA/fashion-mnist``, ``~/.cache/aekit/fashion-mnist``,
``/usr/share/datasets/fashion-mnist``).  The held-out images are a random 5,000 (seeded), not aekit's exact
split: the work per epoch is the same, which is what the timing compares.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def find_data(given: str | None) -> Path:
    env = os.environ.get("AEKIT_DATA")
    options = [Path(given)] if given else [
        *([Path(env) / "fashion-mnist", Path(env)] if env else []),
        Path.home() / ".cache" / "aekit" / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist")]
    for d in options:
        if (d / "train-images-idx3-ubyte.gz").exists() or (d / "train-images-idx3-ubyte").exists():
            return d
    sys.exit(f"plain_loop.py: error: no Fashion-MNIST IDX files in {', '.join(map(str, options))}")


def read_idx(path: Path) -> np.ndarray:
    p = path if path.exists() else path.with_name(path.name + ".gz")
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class VAE(nn.Module):  # pytorch/examples/vae
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def loss_function(recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def evaluate(model: nn.Module, x: torch.Tensor) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            recon, mu, logvar = model(x[i:i + 1000])
            total += loss_function(recon, x[i:i + 1000], mu, logvar).item()
    return total / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", type=int, default=5000, help="training images held out for validation (0: none)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="save the final weights here (default: a temporary file)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    torch.manual_seed(args.seed)
    d = find_data(args.data_dir)
    x_all = torch.from_numpy(read_idx(d / "train-images-idx3-ubyte").copy()).float().div(255)
    test = torch.from_numpy(read_idx(d / "t10k-images-idx3-ubyte").copy()).float().div(255)
    perm = torch.randperm(len(x_all))
    val, train = x_all[perm[:args.val]], x_all[perm[args.val:]]
    loader = DataLoader(TensorDataset(train), batch_size=128, shuffle=True)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total = 0.0
        for (x,) in loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            total += loss.item()
            opt.step()
        t1 = time.perf_counter()
        val_loss = evaluate(model, val) if len(val) else float("nan")
        print(json.dumps({"epoch": epoch, "train_loss": round(total / len(train), 3), "val_loss": round(val_loss, 3),
                          "epoch_s": round(t1 - t0, 2), "val_s": round(time.perf_counter() - t1, 2)}), flush=True)
    test_loss = evaluate(model, test)
    out = Path(args.out) if args.out else Path(os.environ.get("TMPDIR", "/tmp")) / f"plain_loop_{os.getpid()}.pt"
    torch.save(model.state_dict(), out)
    if not args.out:
        out.unlink()
    print(json.dumps({"test_loss": round(test_loss, 3), "after_import_s": round(time.perf_counter() - t_start, 2)}))


if __name__ == "__main__":
    main()
