"""What the host's memory allocator costs each training step on the CPU: page faults, kernel time and wall time
per step for both frameworks, each in a fresh process: with glibc's defaults (NIN_KEEP_FREED_MEMORY=0), with
shared.runtime.keep_freed_memory (what the backends do), and with the same settings given from outside through
glibc's environment variables (MALLOC_ENV: for other jax programs).

    python -m bench.host_memory [--image-size 96] [--batch-size 64] [--steps 20]

XLA:CPU allocates each step's scratch buffer afresh; glibc hands a block that large out of a new mmap and unmaps
it on free, so with its defaults every step faults the whole buffer in again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from compare.backends import FRAMEWORKS

CHILD = """
import json, resource, sys, time
import numpy as np
from bench.benchmark import bench_config, timed_window
from compare.backends import make_backend
framework, size, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
backend = make_backend(framework, bench_config(size, batch, "fp32", "cpu"))
timed_window(backend, "train", 3, batch)
before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
timed_window(backend, "train", steps, batch)
after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
n = steps + 1  # timed_window takes one untimed step first, inside the counted span
scratch = None
if framework == "flax":  # XLA's one scratch buffer per execution of the compiled step
    data, indices = backend.train_data, backend._place(np.arange(batch, dtype=np.int32))
    lowered = backend._train_step.lower(backend.state, data.images, data.labels, indices, None, None)
    scratch = lowered.compile().memory_analysis().temp_size_in_bytes
print(json.dumps({"faults": (after.ru_minflt - before.ru_minflt) / n, "kernel_ms": (after.ru_stime - before.ru_stime)
                  / n * 1e3, "wall_ms": wall / n * 1e3, "scratch_bytes": scratch}))
"""


# keep_freed_memory's mallopt calls as glibc reads them from the environment at start-up
MALLOC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**36)}
ALLOCATORS = {"glibc defaults": {"NIN_KEEP_FREED_MEMORY": "0"}, "keep_freed_memory": {"NIN_KEEP_FREED_MEMORY": "1"},
              "MALLOC_* variables": {"NIN_KEEP_FREED_MEMORY": "0", **MALLOC_ENV}}


def measure(framework: str, allocator: str, size: int, batch: int, steps: int) -> dict[str, float]:
    env = {**os.environ, **ALLOCATORS[allocator]}
    out = subprocess.run([sys.executable, "-c", CHILD, framework, str(size), str(batch), str(steps)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"per training step on the CPU, {args.image_size} px, batch {args.batch_size}, mean of {args.steps} steps")
    print(f"{'':<8}{'allocator':<22}{'page faults':>12}{'kernel ms':>11}{'wall ms':>9}")
    for framework in FRAMEWORKS:
        for name in ALLOCATORS:
            r = measure(framework, name, args.image_size, args.batch_size, args.steps)
            print(f"{framework:<8}{name:<22}{r['faults']:>12,.0f}{r['kernel_ms']:>11.1f}{r['wall_ms']:>9.1f}")
        if r["scratch_bytes"]:
            print(f"{'':<8}(XLA's scratch buffer per step: {r['scratch_bytes'] / 2**20:,.1f} MiB)")


if __name__ == "__main__":
    main()
