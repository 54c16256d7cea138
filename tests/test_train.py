"""Both trainers end to end on real data: accuracy above chance, outputs, determinism, resume, guards."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from shared.rundir import METRIC_KEYS

from .conftest import ROOT, assert_user_error, run_module

pytestmark = pytest.mark.e2e  # make test-fast skips this module

FRAMEWORKS = ["torch", "flax"]
SUMMARY_KEYS = {"framework", "device", "precision", "param_count", "epochs", "steps", "train_loss", "train_acc",
                "test_loss", "test_acc", "examples_per_sec", "seconds", "status"}
# About half a minute (torch) to a minute (flax) on 2 cores: 256 Adam steps at 67 px, d2l's net and init.
# Measured: torch 0.635, flax 0.552 test accuracy on 1,000 test images; chance is 0.10.
LEARN = ["--preset", "smoke", "--train-limit", "16384", "--test-limit", "1000", "--no-progress"]
TINY = ["--preset", "smoke", "--train-limit", "1024", "--batch-size", "32", "--test-limit", "128", "--epochs", "3",
        "--no-progress"]


def train(framework: str, out, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return run_module(f"nin_{framework}.train", *args, "--out", str(out), timeout=timeout)


def weights(out) -> dict[str, np.ndarray]:
    return load_file(str(out / "weights.safetensors"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_learns_and_writes_every_output(framework, tmp_path):
    result = train(framework, tmp_path, *LEARN)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS and summary["status"] == "ok" and summary["framework"] == framework
    assert summary["test_acc"] > 0.4, summary  # measured 0.55-0.64
    assert summary["param_count"] == 1_992_166 and summary["steps"] == 256
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and set(rows[0]) == set(METRIC_KEYS)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["framework"] == framework and config["data"]["train_limit"] == 16384
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(weights(tmp_path)) == {f"blocks.{b}.conv{c}.{k}" for b in range(4) for c in range(3)
                                      for k in ("weight", "bias")}
    assert "epoch 1  loss" in result.stdout and "examples/sec on cpu" in result.stdout


@pytest.mark.parametrize("framework, sig", [("torch", signal.SIGKILL), ("flax", signal.SIGKILL)])
def test_resume_after_a_kill_ends_with_the_same_weights(framework, sig, tmp_path):
    """SIGKILL early in epoch 2 (Ctrl-C and SIGTERM: the mid-epoch test below)."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train(framework, full, *TINY).returncode == 0
    with open(tmp_path / "cut.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", f"nin_{framework}.train", *TINY, "--out", str(cut)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        checkpoint = cut / ("checkpoint.pt" if framework == "torch" else "checkpoint")
        while not checkpoint.exists() and time.time() < deadline:  # epoch 1 done and saved
            time.sleep(0.05)
        time.sleep(0.3)  # into epoch 2 (32 steps, over a second on 2 CPU cores)
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
    if sig == signal.SIGINT:
        assert code == 130
        assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    # the run's own config.json rules: a bare --resume continues it (with the same flags it is accepted too)
    resumed = train(framework, cut, "--resume", "--no-progress") if sig == signal.SIGKILL else \
        train(framework, cut, *TINY, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    a, b = weights(full), weights(cut)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    metrics = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda rows: [{k: r[k] for k in ("epoch", "step", "train_loss", "test_acc")} for r in rows]  # noqa: E731
    assert strip(metrics(full)) == strip(metrics(cut))


# 64 steps per epoch: host syncs at steps 20, 40, 60, 64, then 84, 104, 124, 128 in epoch 2
MID = ["--preset", "smoke", "--train-limit", "2048", "--batch-size", "32", "--test-limit", "128", "--epochs", "3",
       "--no-progress"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}

    def run(framework: str):
        if framework not in runs:
            out = tmp_path_factory.mktemp(f"full-{framework}")
            assert train(framework, out, *MID).returncode == 0
            runs[framework] = out
        return runs[framework]

    return run


def steps_logged(out) -> list[int]:
    path = out / "steps.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")] \
        if path.exists() else []


@pytest.mark.parametrize("framework, sig", [("torch", signal.SIGINT), ("flax", signal.SIGINT),
                                            ("torch", signal.SIGTERM)], ids=["ctrl-c-torch", "ctrl-c-flax",
                                                                             "sigterm-torch"])
def test_stopped_mid_epoch_after_host_syncs_resumes_bit_exact(framework, sig, uninterrupted, tmp_path):
    """Ctrl-C or SIGTERM in the middle of epoch 2, after its first host sync (when the progress counters hold
    values read back from the device): the checkpoint loads again and the resumed run ends with the weights and
    metrics of the uninterrupted one."""
    full, cut = uninterrupted(framework), tmp_path / "cut"
    with open(tmp_path / "cut.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", f"nin_{framework}.train", *MID, "--out", str(cut)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while 84 not in steps_logged(cut) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 130, (tmp_path / "cut.log").read_text()
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 84 <= summary["steps"] < 128, summary  # mid-epoch 2
    resumed = train(framework, cut, "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {cut} at epoch 2, batch {summary['steps'] - 64}" in resumed.stdout
    a, b = weights(full), weights(cut)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    metrics = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda rows: [{k: r[k] for k in ("epoch", "step", "train_loss", "train_acc", "test_acc")}  # noqa: E731
                          for r in rows]
    assert strip(metrics(full)) == strip(metrics(cut))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_same_seed_same_metrics(framework, tmp_path):
    args = [*TINY, "--epochs", "1"]
    assert train(framework, tmp_path / "a", *args).returncode == 0
    assert train(framework, tmp_path / "b", *args).returncode == 0
    rows = [json.loads((tmp_path / d / "metrics.jsonl").read_text()) for d in ("a", "b")]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert rows[0][key] == rows[1][key]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_divergence_guard(framework, tmp_path):
    result = train(framework, tmp_path, *TINY, "--optimizer", "momentum", "--lr", "1e4", "--init", "kaiming_normal")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "diverged" in result.stderr and "lower --lr" in result.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"
    assert not (tmp_path / "weights.safetensors").exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_finite_blowup_is_diverged(framework, tmp_path):
    """Adam at lr 1000 sends the loss to ~1e30 without making it infinite: still a divergence."""
    result = train(framework, tmp_path, *TINY, "--lr", "1000", "--epochs", "1")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"
    assert "no checkpoint was written" in result.stderr and not (tmp_path / "weights.safetensors").exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_user_errors(framework, tmp_path):
    assert_user_error(train(framework, tmp_path / "none", *TINY, "--resume"), "no run to continue")
    assert_user_error(train(framework, tmp_path / "y", *TINY, "--device", "gpu"), "--device gpu")
    if framework == "torch":
        assert_user_error(train(framework, tmp_path / "v", *TINY, "--devices", "2"), "torchrun")
    assert_user_error(train(framework, tmp_path / "z", *TINY, "--init-from", str(tmp_path / "missing.st")),
                      "does not exist")
    other = tmp_path / "other.safetensors"
    from nin_torch.model import build_model
    from nin_torch.weights import save
    from shared.config import ModelConfig

    save(build_model(ModelConfig(num_1x1=1), 67), other, ModelConfig(num_1x1=1), 67)
    assert_user_error(train(framework, tmp_path / "w", *TINY, "--init-from", str(other)),
                      "missing blocks.0.conv2.weight")
    assert not any((tmp_path / d).exists() for d in ("none", "x", "y", "z", "w", "v"))
