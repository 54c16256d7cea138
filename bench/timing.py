"""The timing rule of the layer benchmarks (profile_layers, alternatives)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], reps: int = 7, warmup: int = 2) -> float:
    """Milliseconds of the fastest of `reps` calls of fn, after `warmup` untimed ones (compilation, caches)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000
