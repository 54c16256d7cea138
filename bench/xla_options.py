"""The flax training step compiled with other XLA:CPU options, all in one process, timed in interleaved windows
(median of --windows windows of --steps steps, ms per step), with torch's step beside them. It is how
nin_flax.runtime.CPU_COMPILER_OPTIONS was chosen; on another CPU another row may win.

    python -m bench.xla_options [--image-size 96] [--batch-size 64]
    python -m bench.xla_options --float64 --image-size 224 --batch-size 8 --steps 2 --windows 3

--float64 times compare.parity's float64 step instead (XLA's defaults against nin_flax's options only).
"""

from __future__ import annotations

import argparse
import statistics

from bench.benchmark import bench_config, timed_window
from compare.backends import make_backend
from nin_flax.runtime import CPU_COMPILER_OPTIONS
from nin_flax.steps import make_train_step

YNN = "xla_cpu_experimental_ynn_fusion_type"
LIBRARY = "LIBRARY_FUSION_TYPE_"
VARIANTS = {
    "XLA defaults": None,
    "YNNPACK off": {YNN: ""},
    "YNNPACK for dots": {YNN: f"{LIBRARY}INDIVIDUAL_DOT"},
    "YNNPACK for dots, reductions": {YNN: f"{LIBRARY}INDIVIDUAL_DOT,{LIBRARY}REDUCE"},
    "YNNPACK for reductions (ours)": CPU_COMPILER_OPTIONS,
    "ours + oneDNN for dots": {**CPU_COMPILER_OPTIONS, "xla_cpu_experimental_onednn_fusion_type": f"{LIBRARY}DOT"},
    "ours + 512-bit vectors": {**CPU_COMPILER_OPTIONS, "xla_cpu_prefer_vector_width": 512},
    "ours + fast min/max": {**CPU_COMPILER_OPTIONS, "xla_cpu_enable_fast_min_max": True},
}
FLOAT64_VARIANTS = ("XLA defaults", "YNNPACK for reductions (ours)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--float64", action="store_true", help="compare.parity's float64 step")
    args = parser.parse_args()
    cfg = bench_config(args.image_size, args.batch_size, "fp32", "cpu")
    names = FLOAT64_VARIANTS if args.float64 else tuple(VARIANTS)
    backends = {}
    for name in names:
        backend = make_backend("flax", cfg, args.float64)
        backend._train_step = make_train_step(cfg, backend.graphdef, backend.dtype, VARIANTS[name])
        backends[name] = backend
    if not args.float64:
        backends["torch (reference)"] = make_backend("torch", cfg)
    for backend in backends.values():  # compile and warm up
        timed_window(backend, "train", 2, args.batch_size)
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(args.windows):
        for name, backend in backends.items():
            times[name].append(timed_window(backend, "train", args.steps, args.batch_size))
    kind = "float64" if args.float64 else "fp32"
    print(f"training step, {kind}, {args.image_size} px, batch {args.batch_size}, ms (median of {args.windows} "
          f"windows of {args.steps} steps)")
    for name, windows in times.items():
        print(f"  {name:<32}{statistics.median(windows) / args.steps * 1000:>8.1f}")


if __name__ == "__main__":
    main()
