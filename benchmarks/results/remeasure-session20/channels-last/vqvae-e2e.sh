#!/bin/bash
# end-to-end vqvae training, nchw vs channels_last, per-stage epoch seconds from metrics.csv
cd /tmp/vqe
for rep in 1 2; do
 for fmt in nchw channels_last; do
  rm -rf r-$fmt-$rep
  /work/main/.venv/bin/python -m aekit train --model vqvae --data fashion-mnist --subsample 20000 --epochs 2 --prior-epochs 2 \
     --memory-format $fmt --no-report --no-progress -q --out r-$fmt-$rep
  python3 - "$fmt" "$rep" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(f"r-{sys.argv[1]}-{sys.argv[2]}/metrics.csv")))
by = {}
for r in rows:
    by.setdefault(r.get("stage", ""), []).append(float(r["time_s"]))
print(sys.argv[1], sys.argv[2], {k: [round(v, 1) for v in vs] for k, vs in by.items()}, flush=True)
PY
 done
done
