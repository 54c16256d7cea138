#!/usr/bin/env bash
# make demo: parity of the cpu preset, then the cpu preset in both frameworks from ONE init draw, then the
# side-by-side report. A second run reuses finished trainings and resumes interrupted ones.
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=runs/demo
mkdir -p $OUT
$PY -m compare.parity --preset cpu --batch 8 --steps 20 --json $OUT/parity.json
[ -e $OUT/init.safetensors ] || $PY -m compare.init_weights --preset cpu $OUT/init.safetensors
for fw in torch flax; do
  if grep -qs '"status": "ok"' $OUT/$fw/summary.json; then
    echo "$OUT/$fw already finished (rm -r $OUT/$fw to train again)"
  elif [ -e $OUT/$fw/checkpoint.pt ] || [ -e $OUT/$fw/checkpoint ]; then
    $PY -m nin_$fw.train --preset cpu --init-from $OUT/init.safetensors --out $OUT/$fw --resume
  else
    $PY -m nin_$fw.train --preset cpu --init-from $OUT/init.safetensors --out $OUT/$fw
  fi
done
$PY -m compare.report $OUT/torch $OUT/flax --out $OUT/report.png
