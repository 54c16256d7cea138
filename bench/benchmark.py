"""`python -m bench.benchmark`: training and evaluation speed of both frameworks, measured in one run.

Each framework runs its real trainer step (index gather, on-device resize, forward, backward, update).
Warm-up and compilation are excluded; then timed windows alternate torch, flax, torch, flax ... and the
median window counts. Achieved FLOP/s come from the analytic FLOPs (training = 3x forward) and are set
against this device's peak, measured in the same run (a large matmul: fp32 on the CPU, bf16 and fp32 on a
GPU). Peak memory: the device's peak allocation on a GPU; on the CPU the peak resident memory of a separate
process that builds the same trainer and takes a few steps.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from compare.backends import FRAMEWORKS, make_backend
from shared.arch import check_image_size, nin_spec
from shared.config import ArgumentParser, Config
from shared.errors import run_cli
from shared.files import atomic_write, check_writable, json_text
from shared.summary import layer_table, totals


def bench_config(size: int, batch: int, precision: str, device: str) -> Config:
    cfg = Config()
    cfg.data.image_size, cfg.data.batch_size = size, batch
    cfg.data.train_limit = cfg.data.test_limit = max(batch * 8, 1024)
    cfg.run.precision, cfg.run.device = precision, device
    cfg.train.optimizer, cfg.train.lr = "momentum", 0.01  # a real update; the rate does not change the cost
    return cfg


def matmul_peak(device: str) -> dict[str, float]:
    """FLOP/s of a large square matmul (torch, which uses MKL on the CPU and cuBLAS on a GPU)."""
    import torch

    from nin_torch.runtime import select_device, set_precision

    dev = select_device(device)
    set_precision("fp32")
    n = 4096 if dev.type == "cpu" else 8192
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dev.type == "cpu" and name == "bf16":
            continue
        a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
        reps = 3 if dev.type == "cpu" else 20
        times = []
        for _ in range(3):
            (a @ b).sum().item()
            start = time.perf_counter()
            for _ in range(reps):
                c = a @ b
            c.sum().item()
            times.append((time.perf_counter() - start) / reps)
        peaks[name] = 2 * n**3 / min(times)
    return peaks


def timed_window(backend, kind: str, steps: int, batch: int) -> float:
    """Seconds for `steps` steps, synchronised at both ends."""
    order = np.arange(backend.n_train if kind == "train" else backend.n_test)
    run = backend.train_step if kind == "train" else backend.eval_batch
    backend.fetch([run(order[:batch])])
    start = time.perf_counter()
    out = [run(order[(i * batch) % (len(order) - batch):][:batch]) for i in range(steps)]
    backend.fetch(out[-1:])
    return time.perf_counter() - start


def device_peak_memory(framework: str, backend) -> int | None:
    if framework == "torch" and backend.device.type == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(backend.device))
    if framework == "flax" and backend.device.platform == "gpu":
        return int((backend.device.memory_stats() or {}).get("peak_bytes_in_use", 0)) or None
    return None


def cpu_peak_rss(framework: str, size: int, batch: int, precision: str) -> int:
    """Peak resident memory (bytes) of a fresh process that builds this trainer and takes 3 steps."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its parent's peak
    code = (f"import numpy as np; from compare.backends import make_backend; "
            f"from bench.benchmark import bench_config; "
            f"b = make_backend('{framework}', bench_config({size}, {batch}, '{precision}', 'cpu')); "
            f"[b.fetch([b.train_step(np.arange({batch}))]) for _ in range(3)]; "
            f"print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def run_benchmark(size: int, batch: int, steps: int, windows: int, precision: str, device: str,
                  peak_tflops: float | None = None) -> dict:
    """`peak_tflops`: the chip's nominal peak (its data sheet) for the MFU; the measured matmul peak is
    reported beside it either way."""
    cfg = bench_config(size, batch, precision, device)
    forward_flops = totals(layer_table(nin_spec(cfg.model, size), size))["flops"]
    backends = {fw: make_backend(fw, cfg) for fw in FRAMEWORKS}
    for backend in backends.values():  # warm-up: compilation, allocator, caches
        timed_window(backend, "train", 3, batch)
        timed_window(backend, "eval", 3, batch)
    times: dict[str, dict[str, list[float]]] = {fw: {"train": [], "eval": []} for fw in FRAMEWORKS}
    for _ in range(windows):
        for kind in ("train", "eval"):
            for fw, backend in backends.items():
                times[fw][kind].append(timed_window(backend, kind, steps, batch))
    peak = matmul_peak(device)
    precision_peak = peak.get("bf16" if precision == "bf16" else "fp32", peak["fp32"])
    results = {}
    for fw, backend in backends.items():
        train = batch * steps / statistics.median(times[fw]["train"])
        evaluate = batch * steps / statistics.median(times[fw]["eval"])
        memory = device_peak_memory(fw, backend)
        if memory is None:
            memory = cpu_peak_rss(fw, size, batch, precision)
        results[fw] = {
            "device": backend.device_name, "train_examples_per_sec": train, "eval_examples_per_sec": evaluate,
            "train_flops_per_sec": 3 * forward_flops * train, "eval_flops_per_sec": forward_flops * evaluate,
            "fraction_of_peak": 3 * forward_flops * train / precision_peak, "peak_memory_bytes": memory,
            "mfu": 3 * forward_flops * train / (peak_tflops * 1e12) if peak_tflops else None,
            "train_window_seconds": times[fw]["train"], "eval_window_seconds": times[fw]["eval"],
        }
    return {"config": {"image_size": size, "batch_size": batch, "steps": steps, "windows": windows,
                       "precision": precision, "device": device, "forward_flops_per_example": forward_flops,
                       "nominal_peak_tflops": peak_tflops},
            "peak_matmul_flops_per_sec": peak, **results,
            "ratio_flax_over_torch": results["flax"]["train_examples_per_sec"]
            / results["torch"]["train_examples_per_sec"]}


def print_table(r: dict) -> None:
    c = r["config"]
    print(f"NiN at {c['image_size']} px, batch {c['batch_size']}, {c['precision']}, median of {c['windows']} "
          f"windows of {c['steps']} steps; peak matmul " +
          ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in r["peak_matmul_flops_per_sec"].items()))
    print(f"{'':<8}{'train ex/s':>12}{'eval ex/s':>12}{'train GFLOP/s':>15}{'of peak':>9}{'peak memory':>14}")
    for fw in FRAMEWORKS:
        x = r[fw]
        print(f"{fw:<8}{x['train_examples_per_sec']:>12,.1f}{x['eval_examples_per_sec']:>12,.1f}"
              f"{x['train_flops_per_sec'] / 1e9:>15,.1f}{x['fraction_of_peak']:>9.0%}"
              f"{x['peak_memory_bytes'] / 2**20:>11,.0f} MiB"
              + (f"   MFU {x['mfu']:.1%} of {c['nominal_peak_tflops']:g} TFLOP/s" if x["mfu"] is not None else ""))
    print(f"flax / torch (training): {r['ratio_flax_over_torch']:.2f}")


@run_cli
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m bench.benchmark", description=__doc__)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per framework (median counts)")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--peak-tflops", type=float, metavar="X",
                        help="the chip's nominal peak for this precision (data sheet), to report MFU against it")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    check_image_size(args.image_size)
    if min(args.batch_size, args.steps, args.windows) < 1:
        parser.error("--batch-size, --steps and --windows must be >= 1")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        parser.error("--peak-tflops must be > 0")
    if args.json:
        check_writable(Path(args.json))
    result = run_benchmark(args.image_size, args.batch_size, args.steps, args.windows, args.precision, args.device,
                           args.peak_tflops)
    print_table(result)
    if args.json:
        atomic_write(Path(args.json), json_text(result, indent=2))


if __name__ == "__main__":
    main()
