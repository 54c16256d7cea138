"""Shared test helpers. Tests run on the real Fashion-MNIST (make test installs it) on the CPU."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# `make test` runs the suite on two pytest-xdist workers: most of its time is single-threaded (interpreter
# start-up, imports, XLA compiles). Each worker, and the trainers and notebook kernel it starts, gets its share of
# the cores for torch's threads; two threads per process on two busy cores make every torch op wait for the other.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))
# The longest tests start first, so that neither worker is left with one of them at the end.
LONGEST = ("test_notebook.py::test_the_notebook_runs", "test_train.py::test_resume_after_a_kill",
           "test_train.py::test_stopped_mid_epoch", "test_multiprocess.py::", "test_distributed.py::",
           "test_train.py::test_learns_and_writes_every_output", "test_parity.py::test_parity_passes_on_a_small_net",
           "test_parity.py::test_broken_port_fails")
# onnxruntime and the notebook tools are on every machine `make setup` prepares; the GPU machine's stack
# (`make test-newest`) lacks them, as it lacks tensorflow-datasets
requires_onnx = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                   reason="onnxruntime is not installed (as on the GPU machine's stack)")
requires_notebook_tools = pytest.mark.skipif(importlib.util.find_spec("nbclient") is None,
                                             reason="nbclient is not installed (as on the GPU machine's stack)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, name in enumerate(LONGEST) if name in item.nodeid), len(LONGEST))

    items.sort(key=rank)


def run_module(module: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m module args` from the repo root, as a user would run it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def call(capsys, module: str, *argv: str) -> Result:
    """`python -m module argv` in-process (no interpreter start-up): its exit code and what it printed."""
    main = importlib.import_module(module).main
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return Result(code or 0, out.out, out.err)


def assert_user_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """The error contract: exit code 2, one `error:` line on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def cli():
    return run_module
