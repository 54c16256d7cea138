"""Past one host, tested on one: multi-process jax (jax.distributed, gloo CPU collectives) and two-node torchrun
(c10d rendezvous, gloo), each with 2 local processes of 1 device, train the same run as 1 process; a process that
dies makes the other end within a bounded time instead of hanging."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from .conftest import ROOT, run_module
from .test_distributed import ARGS, metrics, rel_diff

pytestmark = pytest.mark.e2e  # make test-fast skips this module

HEARTBEAT = 10  # seconds without a heartbeat before jax's coordinator declares a process dead


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (torchrun's workers live in sessions of their own)."""
    found = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = Path(f"/proc/{stat}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(stat))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start(command: list[str], log) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NIN_HEARTBEAT_SECONDS": str(HEARTBEAT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def flax_process(i: int, n: int, port: int, *args: str) -> list[str]:
    """README's command for process i of n (the coordinator is process 0's address)."""
    return [sys.executable, "-m", "nin_flax.train", *args, "--coordinator", f"localhost:{port}",
            "--num-processes", str(n), "--process-id", str(i)]


def torch_node(port: int, *args: str) -> list[str]:
    """README's multi-node torchrun command, one process per node (both nodes on this machine)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=localhost:{port}", "--rdzv-id=nin-test", "-m", "nin_torch.train", *args]


def run_two(framework: str, out, tmp_path, *args: str) -> None:
    port = free_port()
    logs = [open(tmp_path / f"{framework}-{i}.log", "w") for i in range(2)]  # noqa: SIM115
    commands = [flax_process(i, 2, port, *ARGS, *args, "--out", str(out)) if framework == "flax" else
                torch_node(port, *ARGS, *args, "--out", str(out)) for i in range(2)]
    procs = [start(c, log) for c, log in zip(commands, logs, strict=True)]
    codes = [p.wait(timeout=300) for p in procs]
    for log in logs:
        log.close()
    assert codes == [0, 0], [(tmp_path / f"{framework}-{i}.log").read_text()[-3000:] for i in range(2)]


@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_two_processes_train_as_one_and_resume_on_one(framework, tmp_path):
    one = run_module(f"nin_{framework}.train", *ARGS, "--epochs", "2", "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    run_two(framework, tmp_path / "two", tmp_path, "--epochs", "2", "--max-steps", "16")
    assert len(metrics(tmp_path / "two")) == 1  # written once, by process 0
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert ("2 processes" if framework == "flax" else "x 2 (DDP)") in summary["device"]
    m1, m2 = metrics(tmp_path / "one")[0], metrics(tmp_path / "two")[0]
    assert abs(m1["train_loss"] - m2["train_loss"]) <= 1e-4 * m1["train_loss"], (m1, m2)
    assert m1["test_acc"] == m2["test_acc"]
    # the checkpoint written by two processes, resumed by one for epoch 2: the weights of one process all along
    resumed = run_module(f"nin_{framework}.train", "--resume", "--out", str(tmp_path / "two"), "--max-steps", "32",
                         "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    diff = rel_diff(load_file(str(tmp_path / "one" / "weights.safetensors")),
                    load_file(str(tmp_path / "two" / "weights.safetensors")))
    assert diff <= 1e-4, diff
    print(f"{framework}: relative weight difference, 2 processes (+1 resumed) vs 1: {diff:.2e}")


@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_a_dead_process_ends_the_other(framework, tmp_path):
    port, out = free_port(), tmp_path / "run"
    args = ["--preset", "smoke", "--train-limit", "4096", "--batch-size", "32", "--epochs", "20", "--no-progress",
            "--out", str(out)]
    logs = [open(tmp_path / f"{i}.log", "w") for i in range(2)]  # noqa: SIM115
    commands = [flax_process(i, 2, port, *args) if framework == "flax" else torch_node(port, *args) for i in range(2)]
    procs = [start(c, log) for c, log in zip(commands, logs, strict=True)]
    deadline = time.time() + 120
    while not (out / "steps.jsonl").exists() and time.time() < deadline:  # training is under way
        time.sleep(0.2)
    assert (out / "steps.jsonl").exists(), (tmp_path / "0.log").read_text()[-2000:]
    # the process that dies: jax's process 1; torch's node 1 worker (its launcher then reports the failure)
    for pid in ([procs[1].pid] if framework == "flax" else children(procs[1].pid)):
        os.kill(pid, signal.SIGKILL)
    killed = time.time()
    try:
        code = procs[0].wait(timeout=HEARTBEAT + 60)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    waited = time.time() - killed
    for log in logs:
        log.close()
    text = (tmp_path / "0.log").read_text()
    assert code != 0 and waited <= HEARTBEAT + 60
    # what the survivor says: jax's coordinator; gloo or the c10d store losing its peer (words vary by torch release)
    markers = ("another task died",) if framework == "flax" else (
        "Connection closed by peer", "Connection was likely closed", "ChildFailedError", "RendezvousConnectionError")
    assert any(m in text for m in markers), text[-3000:]
    print(f"{framework}: the surviving process ended {waited:.1f} s after the other was killed (exit {code})")
