"""bf16 parity: does bf16 autocast train the same model as fp32?  The evidence behind ``--precision auto``.

    python benchmarks/parity.py                         # every bench case, fp32 vs bf16, seed 0
    python benchmarks/parity.py --cases mlp-vae --seeds 0,1 --json parity.json

For each bench case (``benchmarks/bench.py``: MLP VAE, deep AE, conv VAE, U-Net) aekit's trainer trains the
case twice with the same seed, epochs, data and options — once ``--precision fp32``, once ``--precision
bf16`` — each in a fresh process, and the final test losses are compared.  Parity holds when
|bf16 − fp32| ≤ 0.5 nat per test sample (U-Net: 0.02 of its loss per pixel), the tolerance of issue 20.
With several seeds it also prints the fp32 spread between seeds, the size of the noise the difference is
judged against.  This is not a timing: it may run on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (benchmarks/bench.py, next to this script)

TOLERANCE = {"unet": 0.02}  # per pixel; every other case: nats per test sample
DEFAULT_TOLERANCE = 0.5


def measure(case: str, seeds: list[int], epochs: int | None, device: str, smoke: bool,
            inprocess: bool, threads: int | None = None) -> dict[str, Any]:
    c = bench.get_case(case, smoke)
    ep = epochs or c.epochs
    runs: dict[str, list[dict[str, Any]]] = {"fp32": [], "bf16": []}
    for seed in seeds:
        for precision in ("fp32", "bf16"):
            spec = {"case": case, "impl": f"aekit+{precision}", "epochs": ep, "seed": seed, "smoke": smoke,
                    "device": device, "threads": threads}
            t = time.monotonic()
            res = bench._run_worker(spec, inprocess)
            res["wall_s"] = time.monotonic() - t
            runs[precision].append(res)
            print(f"  {case} seed {seed} {precision}: test loss {res['test_loss']:.4f} "
                  f"({res['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    diffs = [b["test_loss"] - f["test_loss"] for f, b in zip(runs["fp32"], runs["bf16"])]
    fp32 = [r["test_loss"] for r in runs["fp32"]]
    tol = TOLERANCE.get(c.model, DEFAULT_TOLERANCE)
    return {"case": case, "title": c.title, "epochs": ep, "seeds": seeds, "tolerance": tol,
            "fp32": fp32, "bf16": [r["test_loss"] for r in runs["bf16"]], "diff": diffs,
            "max_abs_diff": max(abs(d) for d in diffs),
            "fp32_seed_spread": (max(fp32) - min(fp32)) if len(fp32) > 1 else None,
            "parity": all(abs(d) <= tol for d in diffs), "load_avg": bench.load_avg()}


def render(rows: list[dict[str, Any]], command: str) -> str:
    out = [f"`{command}`", "",
           "| case | epochs | seeds | fp32 test loss | bf16 test loss | bf16 − fp32 | tolerance | fp32 spread "
           "over seeds | parity |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spread = f"{r['fp32_seed_spread']:.3f}" if r["fp32_seed_spread"] is not None else "–"
        out.append(f"| {r['title']} | {r['epochs']} | {','.join(map(str, r['seeds']))} | "
                   f"{' / '.join(f'{v:.3f}' for v in r['fp32'])} | {' / '.join(f'{v:.3f}' for v in r['bf16'])} | "
                   f"{' / '.join(f'{d:+.3f}' for d in r['diff'])} | ±{r['tolerance']:g} | {spread} | "
                   f"{'holds' if r['parity'] else 'FAILS'} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(bench.CASES), help=f"comma-separated: {', '.join(bench.CASES)}")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the case's)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per run (1 is fastest on a machine other processes load)")
    ap.add_argument("--smoke", action="store_true", help="tiny stand-ins (tests)")
    ap.add_argument("--inprocess", action="store_true", help="no fresh process per run (tests)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    from aekit.errors import AekitError

    try:
        bench.check_device(args.device)
        cases = [c.strip() for c in args.cases.split(",") if c.strip()]
        for c in cases:
            bench.get_case(c, args.smoke)
        seeds = [int(s) for s in args.seeds.split(",")]
    except (AekitError, ValueError) as e:
        sys.stderr.write(f"python benchmarks/parity.py: error: {e}\n")
        return 2
    t = time.monotonic()
    rows = [measure(c, seeds, args.epochs, args.device, args.smoke, args.inprocess, args.threads) for c in cases]
    command = "python benchmarks/parity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    sys.stdout.write(render(rows, command.strip()) + f"\n\n({time.monotonic() - t:.0f} s)\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "machine": bench.machine(args.device),
                                               "median_load": statistics.median(r["load_avg"] for r in rows)},
                                              indent=1) + "\n")
    return 0 if all(r["parity"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
