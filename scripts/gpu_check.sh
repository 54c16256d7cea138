#!/usr/bin/env bash
# The one device run (one H200; Python 3.12 with torch, jax[cuda], flax, optax, orbax, safetensors; no
# tensorflow-datasets, no internet). At most 8 minutes; everything under $OUT: 7 JSON files and one log.
#   1. versions.json     torch / jax / flax / optax versions and the devices they see
#   2. parity.json       compare.parity at 224 px in full fp32 (train check in float64; TF32 diff as info)
#   3-5. bench_*.json    bench.benchmark at 224 px: bf16 batch 128 and 512, fp32 batch 128; MFU against the
#                        H200's data-sheet dense peak (bf16 989 TFLOP/s, fp32 67 TFLOP/s)
#   6. d2l.json          the book's run: d2l preset, 10 epochs, bf16, both frameworks (summary + metrics)
#   gpu_check.log        everything printed
# Each step has its own timeout and writes its file before the next starts: a late failure loses nothing.
#
#   bash scripts/gpu_check.sh --dry-run   every step on the CPU at tiny sizes (< 3 min): run it before a device call
# Device call (data/ is git-ignored, so it is carried): mkdir -p data/fashion-mnist &&
#   cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/; then the device tool with command
#   "bash scripts/gpu_check.sh", carry ["data/fashion-mnist"], timeout_s 540.
set -u
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
export PYTHONPATH=$PWD NIN_CACHE_DIR=${NIN_CACHE_DIR:-/tmp/nin-cache} PYTHONUNBUFFERED=1
[ -d "$PWD/data/fashion-mnist" ] && export NIN_DATA_DIR=$PWD/data/fashion-mnist
if [ -z "${PY:-}" ]; then
  PY=python3
  [ -x .venv/bin/python ] && [ $DRY = 1 ] && PY=.venv/bin/python
fi
RUNS=$(mktemp -d /tmp/nin-gpu-runs.XXXX)

if [ $DRY = 1 ]; then  # the same steps, on the CPU, at tiny sizes
  DEVICE=cpu SIZE=67 BATCHES="8 16" FP32_BATCH=8 BENCH="--steps 2 --windows 1" PARITY="--batch 2 --steps 2"
  TRAIN="--image-size 67 --batch-size 32 --train-limit 256 --test-limit 128 --epochs 1" T_PARITY=90 T_BENCH=90 T_TRAIN=90
else
  DEVICE=gpu SIZE=224 BATCHES="128 512" FP32_BATCH=128 BENCH="--steps 20 --windows 5" PARITY="--batch 8 --steps 20"
  TRAIN="--epochs 10" T_PARITY=60 T_BENCH=60 T_TRAIN=100  # 30 + 60 + 3 x 60 + 2 x 100 = 470 s at most
fi

step() { echo; echo "=== $(date +%T) $*"; } >> "$LOG"
run() {  # run TIMEOUT CMD...: output to the log, exit code noted
  local limit=$1; shift
  timeout "$limit" "$@" >> "$LOG" 2>&1
  local code=$?
  echo "--- exit $code" >> "$LOG"
  return $code
}

step versions
run 30 $PY - "$OUT/versions.json" <<'PY'
import json, sys
import flax, jax, optax, torch
info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "torch_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "jax": jax.__version__, "jax_devices": [str(d) for d in jax.devices()], "flax": flax.__version__,
        "optax": optax.__version__, "python": sys.version.split()[0]}
print(json.dumps(info))
open(sys.argv[1], "w").write(json.dumps(info, indent=2))
PY

step "parity at $SIZE px (full fp32; training check in float64)"
run $T_PARITY $PY -m compare.parity --device $DEVICE --image-size $SIZE $PARITY --json "$OUT/parity.json"

for spec in $(for b in $BATCHES; do echo "bf16:$b"; done) "fp32:$FP32_BATCH"; do
  precision=${spec%:*} batch=${spec#*:}
  peak=$([ "$precision" = bf16 ] && echo 989 || echo 67)
  step "benchmark $SIZE px, $precision, batch $batch"
  run $T_BENCH $PY -m bench.benchmark --device $DEVICE --image-size $SIZE --batch-size "$batch" \
    --precision "$precision" $BENCH --peak-tflops "$peak" --json "$OUT/bench_${precision}_${batch}.json"
done

for fw in torch flax; do
  step "the book's run: nin_$fw.train --preset d2l $TRAIN, bf16"
  run $T_TRAIN $PY -m nin_$fw.train --preset d2l --device $DEVICE --precision bf16 $TRAIN --no-progress \
    --out "$RUNS/$fw"
  $PY - "$OUT/d2l.json" "$RUNS" <<'PY' >> "$LOG" 2>&1
import json, pathlib, sys
out, runs = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
result = {}
for fw in ("torch", "flax"):
    summary, metrics = runs / fw / "summary.json", runs / fw / "metrics.jsonl"
    if summary.exists():
        result[fw] = {"summary": json.loads(summary.read_text()),
                      "metrics": [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]}
out.write_text(json.dumps(result, indent=2))
PY
done

step "files"
ls -l "$OUT" >> "$LOG"
rm -rf "$RUNS"
missing=0
for f in versions parity bench_bf16_${BATCHES%% *} bench_bf16_${BATCHES##* } bench_fp32_$FP32_BATCH d2l; do
  [ -s "$OUT/$f.json" ] || { echo "missing: $OUT/$f.json" | tee -a "$LOG"; missing=1; }
done
tail -n 40 "$LOG"
exit $missing
