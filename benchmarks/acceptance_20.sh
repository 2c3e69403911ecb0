#!/usr/bin/env bash
# Issue 20's acceptance table, measured in one go on a QUIET machine (nothing else running).
#
#   bash benchmarks/acceptance_20.sh [OUT_DIR]        # from the repository root; default OUT_DIR benchmarks/results/acceptance-20
#
# About 20 minutes on the project's 2-core CPU (steps 1-2 about 11 min, step 3 about 5 min, step 4 about 3 min,
# step 5 about 2 min plus a one-time dSprites generation when it is not cached; SKIP_DSPRITES=1 skips it).
# It prints, and writes to OUT_DIR/acceptance.md (raw JSON beside it):
#   1. every bench case with NO precision or compile flags (aekit's defaults: --precision auto) against the
#      plain PyTorch reference loop: samples/s ratio, test-loss difference (target ≥ 1.5×, within 0.5 nat;
#      U-Net within 0.02 per pixel);
#   2. the best options per case (ratio, fraction of the fp32 matmul/conv bound; target ≥ 3×);
#   3. --compile: its first-epoch cost against its per-epoch gain (the epochs after which it pays);
#   4. the whole 5-epoch MLP VAE job, `aekit train` against `python benchmarks/plain_loop.py`, process to
#      process (target ≥ 1.8× with default options);
#   5. the dSprites β-VAE recipe network: samples/s and its bound (target ≥ 2× the 1,778 samples/s of
#      "3.75 min per epoch of 400,000 sprites").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-benchmarks/results/acceptance-20}
mkdir -p "$OUT"
QUIET=(--quiet-cores 0.3 --quiet-timeout 120)
JOB=(--epochs 5)
REPS=3
if [ "${SMOKE:-0}" = 1 ]; then  # SMOKE=1: tiny stand-ins, to check the script itself (figures meaningless)
  QUIET=(--smoke); JOB=(--epochs 1); REPS=1; SKIP_DSPRITES=1
fi
start=$(date +%s)
echo "== 1-2. bench cases: reference, aekit defaults, best options ($(date -u +%H:%M:%S))" >&2
"$PY" benchmarks/bench.py train --cases mlp-vae,deep-ae,conv-vae,unet \
  --impls reference,aekit,aekit+channels_last,aekit+fp32 --repeats 1 "${QUIET[@]}" \
  --json "$OUT/train.json" --out "$OUT/train.md" >/dev/null
echo "== 3. --compile ($(date -u +%H:%M:%S))" >&2
"$PY" benchmarks/bench.py train --cases mlp-vae,conv-vae,deep-ae,unet --impls aekit,aekit+compile --repeats 1 \
  $([ "${SMOKE:-0}" = 1 ] || echo --epochs 3) "${QUIET[@]}" --json "$OUT/compile.json" --out "$OUT/compile.md" >/dev/null
echo "== 4. the whole job ($(date -u +%H:%M:%S))" >&2
"$PY" benchmarks/job.py compare "${JOB[@]}" --repeats "$REPS" --json "$OUT/job.json" > "$OUT/job.md"
"$PY" benchmarks/job.py breakdown "${JOB[@]}" --json "$OUT/job-breakdown.json" > "$OUT/job-breakdown.md"
if [ "${SKIP_DSPRITES:-0}" != 1 ]; then
  echo "== 5. dSprites recipe network ($(date -u +%H:%M:%S))" >&2
  "$PY" benchmarks/bench.py train --cases dsprites-vae --impls aekit,aekit+channels_last --subsample 40000 \
    --epochs 2 --repeats 1 "${QUIET[@]}" --json "$OUT/dsprites.json" --out "$OUT/dsprites.md" >/dev/null
fi
"$PY" - "$OUT" "$start" <<'EOF'
import json, sys, time
from pathlib import Path

out, start = Path(sys.argv[1]), int(sys.argv[2])
lines = []
train = json.loads((out / "train.json").read_text())
m = train["machine"]
lines += [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['threads']} threads); fp32 GEMM "
          f"{train['gemm_fp32_flops'] / 1e9:.0f} GFLOP/s", "",
          "| case | reference samples/s | aekit defaults (precision) | × ref | Δ test loss | best option | × ref | "
          "of bound | Δ test loss | aekit --precision fp32 × ref | defaults − fp32 test loss |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
ok = {"defaults": True, "best": True}
for name, c in train["cases"].items():
    rows = {r["impl"]: r for r in c["rows"]}
    raw = {r["impl"]: r for r in c["raw"]}
    ref, de = rows["reference"], rows["aekit"]
    best = max((r for k, r in rows.items() if k.startswith("aekit") and k != "aekit+fp32"),
               key=lambda r: r["samples_per_s"])
    tol = 0.02 if name == "unet" else 0.5
    d_def, d_best = de["test_loss"] - ref["test_loss"], best["test_loss"] - ref["test_loss"]
    ok["defaults"] &= de["vs_reference"] >= 1.5 and abs(d_def) <= tol
    ok["best"] &= best["vs_reference"] >= 3.0
    lines.append(f"| {name} | {ref['samples_per_s']:,.0f} | {de['samples_per_s']:,.0f} ({raw['aekit'].get('precision')}) | "
                 f"{de['vs_reference']:.2f} | {d_def:+.3f} | {best['impl']} | {best['vs_reference']:.2f} | "
                 f"{100 * best['bound_fraction']:.0f}% | {d_best:+.3f} | {rows['aekit+fp32']['vs_reference']:.2f} | "
                 f"{de['test_loss'] - rows['aekit+fp32']['test_loss']:+.3f} (parity: ±{tol:g}) |")
lines += ["", f"- defaults ≥ 1.5× and within tolerance in every case: {'MET' if ok['defaults'] else 'NOT met'}",
          f"- best options ≥ 3× in every case: {'MET' if ok['best'] else 'NOT met'}", ""]
comp = json.loads((out / "compile.json").read_text())
lines += ["| --compile | first epoch eager / compiled (s) | steady samples/s eager / compiled | pays after (epochs) |",
          "|---|---|---|---|"]
for name, c in comp["cases"].items():
    rows = {r["impl"]: r for r in c["rows"]}
    e, k = rows["aekit"], rows["aekit+compile"]
    n = c["raw"][0]["n_train"]
    saving = n / e["samples_per_s"] - n / k["samples_per_s"]  # seconds per epoch
    extra = (k["first_epoch_s"] - n / k["samples_per_s"]) - (e["first_epoch_s"] - n / e["samples_per_s"])
    pays = f"{extra / saving:.1f}" if saving > 0 else "never (slower per epoch)"
    lines.append(f"| {name} | {e['first_epoch_s']:.1f} / {k['first_epoch_s']:.1f} | {e['samples_per_s']:,.0f} / "
                 f"{k['samples_per_s']:,.0f} | {pays} |")
job = json.loads((out / "job.json").read_text())
lines += ["", f"Whole {job['epochs']}-epoch MLP VAE job: aekit train {job['aekit_median_s']:.1f} s, plain_loop.py "
          f"{job['plain_median_s']:.1f} s: {job['ratio']:.2f}× (target ≥ 1.8×: {'MET' if job['ratio'] >= 1.8 else 'NOT met'})",
          "", (out / "job-breakdown.md").read_text().strip()]
if (out / "dsprites.json").exists():
    ds = json.loads((out / "dsprites.json").read_text())["cases"]["dsprites-vae"]
    lines += ["", "dSprites recipe network (target ≥ 2 × 1,778 = 3,556 samples/s; 1,778 is the issue's \"3.75 min per "
              "epoch of 400,000 sprites\", a one-thread figure):"]
    for r in ds["rows"]:
        lines.append(f"- {r['impl']}: {r['samples_per_s']:,.0f} samples/s, {100 * r['bound_fraction']:.0f}% of the "
                     f"fp32 bound ({ds['matmul_bound_samples_per_s']:,.0f} samples/s) — "
                     f"{'MET' if r['samples_per_s'] >= 3556 else 'not met'}")
lines += ["", f"(acceptance_20.sh took {(time.time() - start) / 60:.1f} min)"]
text = "\n".join(lines) + "\n"
(out / "acceptance.md").write_text(text)
print(text)
EOF
