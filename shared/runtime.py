"""What both runtimes ask of the host."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8


def host_available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process for the next allocation instead of handing it back to the
    kernel (one arena, no mmap, no trimming); True where it applied. Why: XLA:CPU allocates each training
    step's scratch buffer afresh (133 MiB at 96 px, batch 64), and glibc serves a block that large with a new
    mmap, so every step faulted its pages in again: 34k page faults and about 55 ms of kernel time per flax
    step, a few thousand for torch (python -m bench.host_memory). It must run before the framework starts its
    worker threads (a thread keeps the arena it first allocated from). The resident memory stays at the run's
    peak; NIN_KEEP_FREED_MEMORY=0 leaves glibc's defaults."""
    if os.environ.get("NIN_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    # -1: never trim the heap's free top
    return all(libc.mallopt(param, value) == 1 for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0),
                                                                     (M_TRIM_THRESHOLD, -1)))
