#!/usr/bin/env bash
# The GPU check, for the device machine (one H200: torch, jax[cuda], flax, optax, orbax, safetensors there;
# no tensorflow-datasets, no internet). One run, about 6-8 minutes, everything under $OUT as JSON:
#   parity at full fp32 (and the default-precision diff as information), the benchmark at 224 px in bf16 and
#   fp32 at batch 128 and 512, one epoch of each trainer in bf16 with its test accuracy.
# Before calling the device tool, here in the repo root (data/ is git-ignored, so it must be carried):
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
# Device tool: command "bash scripts/gpu_check.sh", carry ["data/fashion-mnist"], timeout_s 540.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD NIN_DATA_DIR=$PWD/data/fashion-mnist NIN_CACHE_DIR=/tmp/nin-cache PYTHONUNBUFFERED=1
PY=${PY:-python3}
step() { echo; echo "=== $*"; }

step versions
$PY - <<'PY' | tee "$OUT/versions.txt"
import jax, torch, flax, optax
print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda")
print("jax", jax.__version__, jax.devices(), "flax", flax.__version__, "optax", optax.__version__)
PY

step "parity, 224 px, batch 8, 20 steps, full fp32"
timeout 150 $PY -m compare.parity --device gpu --image-size 224 --batch 8 --steps 20 --json "$OUT/parity.json"

for precision in bf16 fp32; do
  for batch in 128 512; do
    step "benchmark 224 px, $precision, batch $batch"
    timeout 120 $PY -m compare.benchmark --device gpu --image-size 224 --batch-size $batch \
      --precision $precision --steps 20 --windows 5 --json "$OUT/bench_${precision}_${batch}.json"
  done
done

for fw in torch flax; do
  step "one epoch of nin_$fw.train, d2l preset, bf16"
  rm -rf "/tmp/nin-runs/$fw"
  timeout 150 $PY -m nin_$fw.train --preset d2l --device gpu --precision bf16 --epochs 1 --no-progress \
    --out "/tmp/nin-runs/$fw" && cp "/tmp/nin-runs/$fw/summary.json" "$OUT/train_${fw}_bf16.json"
done
ls -l "$OUT"
