"""Outputs that never replace or follow what is not theirs, and runs that cannot trample each other: streams,
links, run folders that vanish, fill up or turn read-only, two grids on one folder. tests/test_inputs.py holds
the inputs' half; docs/TRAINING.md lists what is guarded."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, assert_user_error, call
from .test_loop import ScriptedBackend

TINY = ["--preset", "smoke", "--train-limit", "256", "--batch-size", "32", "--test-limit", "64", "--no-progress"]
TRAINERS = ("nin_torch.train", "nin_flax.train")


# ----- outputs: streams, links, folders -----

@pytest.mark.parametrize("target", ["/dev/null", "fifo"])
def test_json_onto_a_device_or_a_fifo_is_written_as_a_stream(target, capsys, tmp_path):
    if target == "fifo":
        target = str(tmp_path / "fifo")
        os.mkfifo(target)
        reader = subprocess.Popen(["cat", target], stdout=subprocess.PIPE)
    result = call(capsys, "compare.summary", "--image-size", "67", "--json", target)
    assert result.returncode == 0, result.stderr
    if target == "/dev/null":
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    else:
        assert json.loads(reader.communicate(timeout=30)[0])["total"]["params"] == 1_992_166
        assert stat.S_ISFIFO(os.stat(target).st_mode)


@pytest.mark.e2e
def test_json_to_stdout(tmp_path):
    result = subprocess.run([sys.executable, "-m", "compare.summary", "--image-size", "67", "--json", "/dev/stdout"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert '"total": {' in result.stdout


def test_an_output_that_is_a_folder_is_refused_up_front(capsys, tmp_path):
    assert_user_error(call(capsys, "compare.summary", "--json", str(tmp_path)), "is a folder; give a file path")


def test_a_planted_lock_link_is_not_followed(capsys, tmp_path):
    run, target = tmp_path / "run", tmp_path / "elsewhere" / "owned"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    assert_user_error(call(capsys, "nin_torch.train", *TINY, "--out", str(run)), ".lock is a symbolic link")
    assert not target.exists() and not target.parent.exists()


def test_a_planted_checkpoint_link_is_removed_not_written_through(tmp_path):
    from shared.files import fresh_folder

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine")
    (tmp_path / ".checkpoint.new").symlink_to(victim)
    fresh = fresh_folder(tmp_path / "checkpoint")
    assert not fresh.exists() and (victim / "keep").read_text() == "mine"


def test_appends_never_follow_a_link(tmp_path):
    from shared.errors import UserError
    from shared.files import append_jsonl

    target = tmp_path / "target"
    (tmp_path / "steps.jsonl").symlink_to(target)
    with pytest.raises(UserError, match="is a symbolic link"):
        append_jsonl(tmp_path / "steps.jsonl", {"step": 1})
    assert not target.exists()


def test_caches_follow_the_environment_not_the_current_folder(monkeypatch, tmp_path):
    from shared.data import cache_dir

    monkeypatch.delenv("NIN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "nin-two-ways"
    monkeypatch.setenv("NIN_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


# ----- runs that cannot trample each other -----

class VanishingBackend(ScriptedBackend):
    """A scripted backend whose folder is removed by someone else at step 30."""

    def __init__(self, folder: Path):
        super().__init__(itertools.repeat(1.0), collapsed=False, batch=8)
        self.folder = folder

    def train_step(self, indices):
        result = super().train_step(indices)
        if self.steps == 30:
            shutil.rmtree(self.folder)
        return result

    def save_checkpoint(self, path, progress):
        path.write_text(json.dumps(progress))


def test_a_run_whose_folder_disappears_stops_and_recreates_nothing(tmp_path):
    from shared.config import Config
    from shared.loop import train
    from shared.rundir import RunDir, RunFolderLost

    cfg = Config()
    cfg.data.batch_size, cfg.train.epochs, cfg.run.progress = 8, 2, False
    folder = tmp_path / "run"
    with pytest.raises(RunFolderLost, match="was removed or replaced"), RunDir(folder, False, "ckpt") as run:
        train(VanishingBackend(folder), cfg, run)
    assert not folder.exists()


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    from shared.rundir import RunDir

    folder = tmp_path / "run"
    folder.mkdir()
    for name in (".checkpoint.pt.a1b2.tmp", ".weights.safetensors.x9.tmp"):
        (folder / name).write_bytes(b"\0" * 1024)
    (folder / ".checkpoint.new").mkdir()
    with RunDir(folder, False, "checkpoint.pt"):
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]


def test_two_grids_on_one_results_folder_cannot_share_a_run(capsys, tmp_path):
    from shared.rundir import take_lock

    (tmp_path / "cpu").mkdir()
    with take_lock(tmp_path / "cpu"):
        result = call(capsys, "experiments.run", "--protocol", "cpu", "--only", "init", "--results", str(tmp_path),
                      "--docs", str(tmp_path / "docs"))
    assert_user_error(result, "another `python -m experiments.run --protocol cpu` is running")
    assert sorted(p.name for p in (tmp_path / "cpu").iterdir()) == [".lock"]


def test_the_grid_does_not_delete_a_folder_a_trainer_holds(capsys, tmp_path):
    from experiments.grid import PROTOCOLS, all_cells
    from experiments.run import run_one
    from shared.errors import UserError
    from shared.rundir import take_lock

    cpu = PROTOCOLS["cpu"]
    cell = all_cells(cpu, "init")[0]
    live = tmp_path / "cpu" / cell.name / "torch-seed0"
    live.mkdir(parents=True)
    (live / "config.json").write_text("{}")  # a trainer's run, before its first checkpoint
    with take_lock(live), pytest.raises(UserError, match="a trainer is running"):
        run_one(cpu, cell, "torch", 0, tmp_path)
    assert (live / "config.json").exists()


@pytest.mark.e2e
def test_sigterm_during_start_up_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nin_flax.train", *TINY, "--out", str(run)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / ".lock").exists() and time.time() < deadline:
        time.sleep(0.005)
    assert not (run / "config.json").exists()  # still starting up
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert not run.exists()


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.e2e
@pytest.mark.parametrize("module", TRAINERS)
def test_a_full_disk_is_one_error_line(module, tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "3m"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        result = subprocess.run([sys.executable, "-m", module, *TINY, "--out", str(disk / "run")], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert_user_error(result, "MiB free", "free some space")
        assert not (disk / "run").exists()
    finally:
        subprocess.run(["umount", str(disk)])


@pytest.mark.e2e
@pytest.mark.parametrize("module", TRAINERS)
def test_a_run_folder_made_read_only_mid_run_is_one_error_line(module, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", module, *TINY, "--epochs", "4", "--out", str(run)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = run / ("checkpoint.pt" if module == "nin_torch.train" else "checkpoint")
    deadline = time.time() + 200
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.02)
    frozen = subprocess.run(["chattr", "+i", str(run)], capture_output=True).returncode == 0
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(run)], capture_output=True)
    if not frozen:
        pytest.skip("chattr +i (an immutable folder, read-only even for root) is not available here")
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: cannot write"), err
