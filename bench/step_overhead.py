"""Per-step overhead of the trainers' steps: a tiny NiN (widths 8) at batch 2, so that the time is the Python
and dispatch around the step rather than the network. Best of 3 windows of 300 steps, synchronised at the end.

    python -m bench.step_overhead
"""

from __future__ import annotations

import time

import numpy as np

from compare.backends import FRAMEWORKS, make_backend
from shared.presets import preset_config


def per_step_seconds(framework: str, steps: int = 300, windows: int = 3) -> float:
    cfg = preset_config("smoke")
    cfg.data.batch_size, cfg.data.train_limit, cfg.model.widths = 2, 256, (8, 8, 8)
    backend = make_backend(framework, cfg)
    indices = np.arange(2)
    backend.fetch([backend.train_step(indices) for _ in range(20)])  # compile and warm up
    best = float("inf")
    for _ in range(windows):
        start = time.perf_counter()
        out = [backend.train_step(indices) for _ in range(steps)]
        backend.fetch(out[-1:])
        best = min(best, (time.perf_counter() - start) / steps)
    return best


if __name__ == "__main__":
    for framework in FRAMEWORKS:
        print(f"{framework}: {per_step_seconds(framework) * 1e3:.2f} ms per step (batch 2, widths 8)")
