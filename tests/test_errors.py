"""The error contract, as a battery: every command, bad flags, damaged inputs, unwritable outputs and run
folders that hold something else. Each case must end with ONE `error:` line, exit code 2, no traceback, and
leave its output absent or unchanged. The commands run in-process (their `main`), so that most cases fail
in milliseconds, before any data is loaded."""

from __future__ import annotations

import fcntl
import gzip
import json
import pickle

import numpy as np
import pytest
import torch

from .conftest import assert_user_error, call

pytestmark = pytest.mark.e2e  # make test-fast skips this module

TRAINERS = ("nin_torch.train", "nin_flax.train")
TINY = ["--preset", "smoke", "--train-limit", "256", "--batch-size", "32", "--test-limit", "64", "--no-progress"]


def snapshot(path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} if path.exists() else {}


# (case id, argv after the module, needle in the error line)
FLAG_CASES = [
    ("lr-nan", ["--lr", "nan"], "--lr must be a finite number"),
    ("lr-inf", ["--lr", "inf"], "--lr must be a finite number"),
    ("lr-negative", ["--lr", "-1"], "--lr must be > 0"),
    ("momentum-2", ["--momentum", "2"], "--momentum must be in [0, 1)"),
    ("weight-decay-nan", ["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    ("clip-inf", ["--clip-grad-norm", "inf"], "--clip-grad-norm must be a finite number"),
    ("seed-negative", ["--seed", "-1"], "--seed must be >= 0"),
    ("warmup-beyond-run", ["--warmup-steps", "1000"], "covers the whole run"),
    ("num-classes-5", ["--num-classes", "5"], "10 classes"),
    ("in-channels-3", ["--in-channels", "3"], "--in-channels must be 1"),
    ("image-28", ["--image-size", "28"], "67 px"),
    ("image-too-big", ["--image-size", "4000"], "for one training step"),
    ("preset-typo", ["--preset", "cpuu"], "did you mean 'cpu'"),
    ("config-missing", ["--config", "/nonexistent.toml"], "does not exist"),
    ("dropout-1.5", ["--dropout", "1.5"], "--dropout must be in [0, 1)"),
    ("optimizer-typo", ["--optimizer", "adamm"], "invalid choice"),
    ("batch-zero", ["--batch-size", "0"], "--batch-size must be > 0"),
]


@pytest.mark.parametrize("module", TRAINERS)
@pytest.mark.parametrize("case, argv, needle", FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_trainer_flags(module, case, argv, needle, capsys, tmp_path):
    result = call(capsys, module, *TINY, *argv, "--out", str(tmp_path / "run"))
    assert_user_error(result, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("module", TRAINERS)
def test_config_files(module, capsys, tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text("[train]\nlearning_rate = 0.1\n")
    assert_user_error(call(capsys, module, "--config", str(typo)), "unknown key 'learning_rate'")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[train]\n")
    assert_user_error(call(capsys, module, "--config", str(binary)), "not valid TOML")


def fake_run(path, framework: str, status: str | None = None, checkpoint: bool = False) -> None:
    """A run folder as a trainer leaves it (config.json from the smoke preset; summary if it ended)."""
    from shared.presets import preset_config

    path.mkdir(parents=True)
    cfg = preset_config("smoke")
    cfg.data.train_limit, cfg.data.batch_size, cfg.data.test_limit = 256, 32, 64
    (path / "config.json").write_text(json.dumps({"framework": framework, **cfg.to_dict()}))
    (path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    if status:
        (path / "summary.json").write_text(json.dumps({"status": status}))
    if checkpoint:
        (path / ("checkpoint.pt" if framework == "torch" else "checkpoint")).write_text("x")


RUN_FOLDER_CASES = [  # (case, how the folder was left, extra argv, needle)
    ("other-framework", {"framework": "other"}, [], "already holds a other run"),
    ("finished-no-checkpoint", {"status": "ok"}, [], "already holds a {fw} run that ended 'ok'"),
    ("finished-resume", {"status": "ok"}, ["--resume"], "no {fw} checkpoint to resume from"),
    ("killed-before-checkpoint", {}, [], "a {fw} run that has not finished"),
    ("with-checkpoint-no-resume", {"checkpoint": True}, [], "pass --resume to continue it"),
    ("resume-other-framework", {"framework": "other", "checkpoint": True}, ["--resume"], "holds a other run"),
    ("resume-changed-lr", {"checkpoint": True}, ["--resume", "--lr", "0.5"], "--lr 0.5 (the run's: 0.001)"),
    ("resume-changed-preset", {"checkpoint": True}, ["--resume", "--preset", "cpu"],
     "--final-relu False (the run's: True)"),
    ("resume-fewer-epochs", {"checkpoint": True}, ["--resume", "--epochs", "0"], "--epochs must be > 0"),
]


@pytest.mark.parametrize("module", TRAINERS)
@pytest.mark.parametrize("case, left, argv, needle", RUN_FOLDER_CASES, ids=[c[0] for c in RUN_FOLDER_CASES])
def test_run_folders_that_hold_something_else(module, case, left, argv, needle, capsys, tmp_path):
    fw = module.split(".")[0].removeprefix("nin_")
    run = tmp_path / "run"
    fake_run(run, left.get("framework", fw), left.get("status"), left.get("checkpoint", False))
    before = snapshot(run)
    args = [*TINY, "--out", str(run), *argv] if "--resume" not in argv else ["--out", str(run), *argv]
    assert_user_error(call(capsys, module, *args), needle.format(fw=fw))
    assert snapshot(run) == before


@pytest.mark.parametrize("module", TRAINERS)
def test_run_folder_odd_cases(module, capsys, tmp_path):
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    assert_user_error(call(capsys, module, *TINY, "--out", str(stray)), "files of no run (notes.txt)")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_user_error(call(capsys, module, *TINY, "--out", str(a_file)), "is a file")
    assert_user_error(call(capsys, module, *TINY, "--out", str(a_file / "run")), "cannot write the run folder")
    assert_user_error(call(capsys, module, "--resume", "--out", str(tmp_path / "none")), "no run to continue")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    assert_user_error(call(capsys, module, "--resume", "--out", str(damaged)), "is damaged")
    locked = tmp_path / "locked"
    locked.mkdir()
    with open(locked / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert_user_error(call(capsys, module, *TINY, "--out", str(locked)), "another trainer is running")
    assert sorted(p.name for p in locked.iterdir()) == [".lock"]


@pytest.mark.parametrize("module", TRAINERS)
def test_bad_init_from(module, capsys, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    for path, needle in ((tmp_path / "missing.safetensors", "does not exist"),
                         (garbage, "not a readable safetensors file")):
        assert_user_error(call(capsys, module, *TINY, "--init-from", str(path), "--out", str(tmp_path / "r")), needle)
    assert not (tmp_path / "r").exists()


def test_bad_data_dir(capsys, tmp_path):
    from shared.data import SPLIT_FILES

    bad = tmp_path / "data"
    bad.mkdir()
    for names in SPLIT_FILES.values():
        for name in names:
            (bad / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 12)[:-4] + b"oops")
    for module in TRAINERS:
        result = call(capsys, module, *TINY, "--data-dir", str(bad), "--out", str(tmp_path / "r"))
        assert_user_error(result, "re-install the dataset")
    assert not (tmp_path / "r").exists()


def writable_cases(tmp_path) -> dict[str, list[str]]:
    """Each tool with an output path under a FILE (so it cannot be written) and otherwise fine flags."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = str(blocker / "out.json")
    return {
        "compare.parity": ["--image-size", "67", "--json", out],
        "compare.summary": ["--json", out],
        "bench.benchmark": ["--image-size", "67", "--json", out],
        "compare.noise_floor": ["--json", out],
        "bench.input_throughput": ["--json", out],
        "bench.memory": ["--framework", "torch", "--kind", "train", "--json", out],
        "compare.init_weights": [out],
        "compare.convert": [str(blocker), out],
        "compare.evaluate": [str(blocker), "--json", out],
        "compare.report": [str(blocker), str(blocker), "--out", str(blocker / "report.png")],
        "experiments.run": ["--report-only", "--docs", str(blocker / "docs")],
    }


def test_outputs_are_checked_before_the_work(capsys, tmp_path):
    for module, argv in writable_cases(tmp_path).items():
        result = call(capsys, module, *argv)
        assert result.returncode == 2, (module, result.stdout, result.stderr)
        assert_user_error(result, "cannot write")


def test_convert_explains_what_it_was_given(capsys, tmp_path):
    from nin_torch.model import build_model
    from shared.config import ModelConfig

    module_file, checkpoint, garbage = tmp_path / "net.pt", tmp_path / "checkpoint.pt", tmp_path / "garbage.pt"
    torch.save(build_model(ModelConfig(), 67), module_file)
    torch.save({"model": {}, "optimizer": {}, "progress": {}}, checkpoint)
    garbage.write_bytes(pickle.dumps({"a": 1})[:5])
    out = tmp_path / "w.safetensors"
    assert_user_error(call(capsys, "compare.convert", str(module_file), str(out)), "net.state_dict()")
    assert_user_error(call(capsys, "compare.convert", str(checkpoint), str(out)), "weights.safetensors")
    assert_user_error(call(capsys, "compare.convert", str(garbage), str(out)), "cannot read")
    assert_user_error(call(capsys, "compare.convert", str(tmp_path / "none.pt"), str(out)), "does not exist")
    assert not out.exists()


def test_report_and_experiments_refuse_what_is_not_there(capsys, tmp_path):
    assert_user_error(call(capsys, "compare.report", str(tmp_path / "a"), str(tmp_path / "b")), "has no summary.json")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{torn")
    (bad / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo')
    assert_user_error(call(capsys, "compare.report", str(bad), str(bad)), "damaged")
    docs = tmp_path / "docs"
    result = call(capsys, "experiments.run", "--report-only", "--results", str(tmp_path / "typo"),
                  "--docs", str(docs))
    assert_user_error(result, "holds no runs")
    assert not docs.exists()


def test_tool_bounds(capsys, tmp_path):
    cases = {
        "bench.benchmark": (["--batch-size", "0"], "must be >= 1"),
        "bench.input_throughput": (["--batches", "0"], "must be >= 1"),
        "compare.parity": (["--steps", "0"], "must be >= 1"),
        "compare.noise_floor": (["--every", "0"], "must be >= 1"),
    }
    for module, (argv, needle) in cases.items():
        assert_user_error(call(capsys, module, *argv), needle)


def test_weights_with_damaged_metadata(capsys, tmp_path):
    from safetensors.numpy import save_file

    from nin_torch.model import build_model
    from nin_torch.weights import state_of
    from shared.config import ModelConfig
    from shared.weights import FORMAT

    path = tmp_path / "w.safetensors"
    state = {k: np.ascontiguousarray(v) for k, v in state_of(build_model(ModelConfig(), 67)).items()}
    save_file(state, str(path), metadata={"format": FORMAT, "image_size": "sixty", "model_config": "{"})
    assert_user_error(call(capsys, "compare.parity", "--weights", str(path)), "metadata is damaged")


@pytest.mark.parametrize("module", TRAINERS)
def test_resume_of_a_real_run(module, capsys, tmp_path):
    """A finished 2-epoch run: shortening it, a damaged checkpoint and a torn metrics line."""
    import shutil

    run = tmp_path / "run"
    assert call(capsys, module, *TINY, "--epochs", "2", "--out", str(run)).returncode == 0
    before = snapshot(run)
    assert_user_error(call(capsys, module, "--resume", "--out", str(run), "--epochs", "1"), "has already taken")
    assert snapshot(run) == before
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "st')  # a crash mid-append
    assert call(capsys, module, "--resume", "--out", str(run), "--epochs", "3").returncode == 0
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    if module == "nin_torch.train":
        (run / "checkpoint.pt").write_text("not a checkpoint")
    else:
        shutil.rmtree(run / "checkpoint" / "state")
    assert_user_error(call(capsys, module, "--resume", "--out", str(run), "--epochs", "4"), "cannot resume")


def test_multi_process_flags(capsys, tmp_path):
    out = ["--out", str(tmp_path / "r")]
    cases = [("nin_flax.train", ["--coordinator", "host0"], "--coordinator HOST:PORT needs --num-processes"),
             ("nin_flax.train", ["--coordinator", "host0", "--num-processes", "2", "--process-id", "0"],
              "is not HOST:PORT"),
             ("nin_flax.train", ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
              "--process-id must be in [0, 2)"),
             ("nin_flax.train", ["--num-processes", "2"], "go with --coordinator"),
             ("nin_torch.train", ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "0"], "torchrun")]
    for module, argv, needle in cases:
        assert_user_error(call(capsys, module, *TINY, *argv, *out), needle)
    assert not (tmp_path / "r").exists()
