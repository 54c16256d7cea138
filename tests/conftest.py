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
# onnxruntime and the notebook tools are on every machine `make setup` prepares; the GPU machine's stack
# (`make test-newest`) lacks them, as it lacks tensorflow-datasets
requires_onnx = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                   reason="onnxruntime is not installed (as on the GPU machine's stack)")
requires_notebook_tools = pytest.mark.skipif(importlib.util.find_spec("nbclient") is None,
                                             reason="nbclient is not installed (as on the GPU machine's stack)")


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
