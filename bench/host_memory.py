"""What the host's memory allocator costs each training step on the CPU: page faults, kernel time and wall time
per step for both frameworks, each in a fresh process, with glibc's defaults (NIN_KEEP_FREED_MEMORY=0) and with
shared.runtime.keep_freed_memory (what the backends do).

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
print(json.dumps({"faults": (after.ru_minflt - before.ru_minflt) / n, "kernel_ms": (after.ru_stime - before.ru_stime)
                  / n * 1e3, "wall_ms": wall / n * 1e3}))
"""


def measure(framework: str, keep: bool, size: int, batch: int, steps: int) -> dict[str, float]:
    env = {**os.environ, "NIN_KEEP_FREED_MEMORY": "1" if keep else "0"}
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
        for keep in (False, True):
            r = measure(framework, keep, args.image_size, args.batch_size, args.steps)
            name = "keep_freed_memory" if keep else "glibc defaults"
            print(f"{framework:<8}{name:<22}{r['faults']:>12,.0f}{r['kernel_ms']:>11.1f}{r['wall_ms']:>9.1f}")


if __name__ == "__main__":
    main()
