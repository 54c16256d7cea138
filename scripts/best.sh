#!/usr/bin/env bash
# The recipe behind weights/: one init draw, both trainers from it with --preset best, each run's weights
# evaluated in both frameworks, the torch run's weights shipped (as safetensors and as ONNX; either run's load
# and predict the same in both). Resumable: finished steps are skipped, an interrupted run resumes. About
# 35 min (torch) + 60 min (flax) on 2 cores.
#   bash scripts/best.sh [PYTHON]
set -euo pipefail
PY=${1:-python}
OUT=${OUT:-results/recipe}
SHIPPED=weights/nin-fashion-mnist-best.safetensors
mkdir -p "$OUT"
[ -e "$OUT/init.safetensors" ] || $PY -m compare.init_weights --preset best "$OUT/init.safetensors"
for fw in torch flax; do
    run="$OUT/$fw"
    if [ ! -e "$run/summary.json" ]; then
        resume=""
        if [ -e "$run/config.json" ]; then resume="--resume"; fi
        mkdir -p "$run"
        command="$PY -m nin_$fw.train --preset best --init-from $OUT/init.safetensors --out $run --no-progress $resume"
        echo "$command" > "$run/command.txt"
        start=$(date +%s)
        $command 2>&1 | tee -a "$run/train.log"
        echo "process wall time: $(( $(date +%s) - start )) s" | tee -a "$run/train.log"
    fi
    [ -e "$run/evaluate.json" ] || $PY -m compare.evaluate "$run/weights.safetensors" --json "$run/evaluate.json" --out "$run"
done
mkdir -p weights
cp "$OUT/torch/weights.safetensors" "$SHIPPED"
$PY -m compare.convert "$SHIPPED" "${SHIPPED%.safetensors}.onnx"
echo "shipped the torch run's weights as $SHIPPED and ${SHIPPED%.safetensors}.onnx"
