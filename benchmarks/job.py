"""The whole job, start to finish: ``aekit train`` of the MLP VAE against ``plain_loop.py``, process to process.

    python benchmarks/job.py compare --epochs 5 --repeats 3      # wall time of each process, alternating
    python benchmarks/job.py breakdown --epochs 5                # where aekit train's time goes

``compare`` runs ``aekit train --model vae --data fashion-mnist --hidden 400 --latent-dim 20 --likelihood
bernoulli --epochs E --out DIR`` (default options: validation every epoch, checkpoint, evaluation, report)
and ``python benchmarks/plain_loop.py --epochs E`` alternately, each a fresh process timed from before its
start to its exit, and prints the median of each and their ratio.  ``--aekit-args "--precision fp32"`` adds
options to the aekit command.

``breakdown`` runs the same ``aekit train`` in one process with timers around its phases (interpreter start
and imports, data loading, each epoch's training — the ``time_s`` of metrics.csv — its validation, its
checkpoint, the final weights, the evaluation, the report) and prints them; the rest (metrics CSV, logging,
the summary) is "other".
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TAG = "AEKIT_JOB_BREAKDOWN "


def aekit_argv(epochs: int, out: str, extra: str = "") -> list[str]:
    return ["-m", "aekit", "-q", "train", "--model", "vae", "--data", "fashion-mnist", "--hidden", "400",
            "--latent-dim", "20", "--likelihood", "bernoulli", "--epochs", str(epochs), "--out", out,
            *shlex.split(extra)]


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds of ``cmd`` from before its start to its exit, and its stdout."""
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-1500:]}")
    return dt, r.stdout


def plain_epochs(stdout: str) -> float:
    """The plain loop's training-epoch seconds (its ``epoch_s`` lines; validation excluded, as aekit's ``time_s``)."""
    total = 0.0
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict):
                total += float(row.get("epoch_s", 0.0))
    return total


def aekit_epochs(run_dir: str) -> float:
    """aekit's training-epoch seconds: the ``time_s`` column of the run's metrics.csv."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return sum(float(r["time_s"]) for r in csv.DictReader(f))


def compare(args: argparse.Namespace) -> dict[str, Any]:
    aekit_s: list[float] = []
    plain_s: list[float] = []
    aekit_ep: list[float] = []
    plain_ep: list[float] = []
    with tempfile.TemporaryDirectory(prefix="aekit-job-") as d:
        for rep in range(args.repeats):
            order = ("aekit", "plain") if rep % 2 == 0 else ("plain", "aekit")
            for which in order:
                if which == "aekit":
                    dt, _ = timed([sys.executable, *aekit_argv(args.epochs, f"{d}/run{rep}", args.aekit_args)])
                    aekit_s.append(dt)
                    aekit_ep.append(aekit_epochs(f"{d}/run{rep}"))
                else:
                    dt, out = timed([sys.executable, str(HERE / "plain_loop.py"), "--epochs", str(args.epochs)])
                    plain_s.append(dt)
                    plain_ep.append(plain_epochs(out))
                print(f"  repeat {rep + 1} {which}: {dt:.1f} s (training epochs "
                      f"{(aekit_ep if which == 'aekit' else plain_ep)[-1]:.1f} s)", file=sys.stderr, flush=True)
    a, p = statistics.median(aekit_s), statistics.median(plain_s)
    ae, pe = statistics.median(aekit_ep), statistics.median(plain_ep)
    return {"epochs": args.epochs, "aekit_s": aekit_s, "plain_s": plain_s, "aekit_median_s": a, "plain_median_s": p,
            "ratio": p / a, "aekit_epochs_s": aekit_ep, "plain_epochs_s": plain_ep, "aekit_epochs_median_s": ae,
            "plain_epochs_median_s": pe, "epochs_ratio": pe / ae if ae else float("nan"),
            # the rest of each process: start, imports, data, validation, evaluation, report, saving
            "aekit_rest_s": a - ae, "plain_rest_s": p - pe,
            # what aekit's whole job may take for 1.8x, and what is left of it after its own training epochs
            "budget_1_8x_s": p / 1.8, "budget_rest_1_8x_s": p / 1.8 - ae,
            "aekit_args": args.aekit_args, "load_avg": os.getloadavg()[0]}


def _since_process_start() -> float:
    """Seconds since this process started (Linux: /proc), else since this module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _breakdown_child(epochs: int, out: str, extra: str) -> None:
    """In this process: aekit's CLI with timers around its phases (monkeypatched wrappers, benchmark only)."""
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    started = _since_process_start()
    import importlib

    import aekit.cli
    import aekit.evaluate
    import aekit.pipeline  # noqa: F401

    # (``aekit.train`` the attribute is the pipeline's function, which hides the package in ``import a.b as c``)
    cb, run_mod, tr, report = (importlib.import_module(f"aekit.{m}") for m in (
        "train.callbacks", "train.run", "train.trainer", "viz.report"))

    phases["start + imports"] = started + time.perf_counter() - t0

    def wrap(owner: Any, name: str, phase: str) -> None:
        fn = getattr(owner, name)

        def timed_fn(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t
        setattr(owner, name, timed_fn)

    wrap(run_mod, "load_data", "data load")
    wrap(run_mod, "build_model", "model build")
    # torch's first optimiser imports torch._dynamo (Optimizer.add_param_group is wrapped by torch._disable_dynamo):
    # about a second that the plain loop pays too
    wrap(tr, "make_optimizers", "optimiser (torch imports torch._dynamo)")
    wrap(tr.Trainer, "_epoch_row", "validation")
    wrap(cb, "save_checkpoint", "checkpoint")
    wrap(run_mod, "atomic_save_tensors", "final weights")
    wrap(aekit.evaluate, "evaluate", "evaluation")
    wrap(report, "write_report", "report")
    t = time.perf_counter()
    rc = aekit.cli.main(aekit_argv(epochs, out, extra)[2:])
    total_main = time.perf_counter() - t
    rows = cb.read_metrics(Path(out) / "metrics.csv")
    epoch_s = [float(r["time_s"]) for r in rows]
    phases["training epochs"] = sum(epoch_s)
    accounted = sum(v for k, v in phases.items() if k != "start + imports")
    phases["other (metrics csv, logging, summary)"] = total_main - accounted
    sys.stdout.write(TAG + json.dumps({"rc": rc, "phases": phases, "epoch_s": epoch_s,
                                       "total_s": phases["start + imports"] + total_main}) + "\n")


def breakdown(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aekit-job-") as d:
        t = time.monotonic()
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_child", str(args.epochs), f"{d}/run",
                            args.aekit_args], capture_output=True, text=True)
        wall = time.monotonic() - t
    line = next((x for x in r.stdout.splitlines() if x.startswith(TAG)), None)
    if line is None:
        raise SystemExit(f"breakdown child failed: {r.stderr.strip()[-1500:]}")
    res = json.loads(line[len(TAG):])
    res["wall_s"] = wall
    res["load_avg"] = os.getloadavg()[0]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("compare", "breakdown"):
        p = sub.add_parser(name)
        p.add_argument("--epochs", type=int, default=5)
        p.add_argument("--aekit-args", default="", help='extra options of aekit train, e.g. "--precision fp32"')
        p.add_argument("--json", help="also write the result to this JSON file")
        if name == "compare":
            p.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    res = compare(args) if args.what == "compare" else breakdown(args)
    cmd = "python benchmarks/job.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.what == "compare":
        print(f"`{cmd}` (load average {res['load_avg']:.2f}): aekit train {res['aekit_median_s']:.1f} s "
              f"({', '.join(f'{v:.1f}' for v in res['aekit_s'])}), plain_loop.py {res['plain_median_s']:.1f} s "
              f"({', '.join(f'{v:.1f}' for v in res['plain_s'])}): {res['ratio']:.2f}x")
        print(f"training epochs alone (medians): aekit {res['aekit_epochs_median_s']:.1f} s, plain "
              f"{res['plain_epochs_median_s']:.1f} s ({res['epochs_ratio']:.2f}x); the rest of each process: aekit "
              f"{res['aekit_rest_s']:.1f} s, plain {res['plain_rest_s']:.1f} s. For 1.8x aekit's whole job may take "
              f"{res['budget_1_8x_s']:.1f} s, which leaves {res['budget_rest_1_8x_s']:.1f} s beside its training "
              "epochs.")
    else:
        print(f"`{cmd}` (load average {res['load_avg']:.2f}; wall {res['wall_s']:.1f} s)")
        print("| phase | seconds |\n|---|---|")
        for k, v in res["phases"].items():
            print(f"| {k} | {v:.2f} |")
        print(f"| **total** | {res['total_s']:.2f} |")
        print("epochs (s): " + ", ".join(f"{v:.2f}" for v in res["epoch_s"]))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_child"]:
        _breakdown_child(int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
    else:
        sys.exit(main())
