"""shared.runtime.keep_freed_memory: a large block freed by a worker thread is reused without page faults."""

import json
import os
import subprocess
import sys

import pytest

# in a fresh process (the setting is process-wide and must precede the threads): a worker thread allocates a
# 150 MiB block twice, as XLA:CPU does its scratch buffer every step, and counts the page faults of the second
CHILD = """
import ctypes, json, resource, threading
from shared.runtime import keep_freed_memory
applied = keep_freed_memory()
libc, size, faults = ctypes.CDLL(None), 150 * 2**20, []
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def step():
    block = libc.malloc(size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ctypes.memset(block, 1, size)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    libc.free(block)
def worker():
    step()
    step()
thread = threading.Thread(target=worker)
thread.start()
thread.join()
print(json.dumps({"applied": applied, "second_step_faults": faults[1]}))
"""


def run_child(keep: str) -> dict:
    env = {**os.environ, "NIN_KEEP_FREED_MEMORY": keep}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_keep_freed_memory_stops_the_per_step_page_faults():
    pages = 150 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    defaults, kept = run_child("0"), run_child("1")
    assert not defaults["applied"] and defaults["second_step_faults"] > pages // 2  # glibc: a new mmap each time
    assert kept["applied"] and kept["second_step_faults"] < pages // 100  # the freed block, reused
