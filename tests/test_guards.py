"""What a careless or hostile user's input cannot do: inputs checked before they are trusted (weights, metadata,
configs, images), outputs that never replace or follow what is not theirs, runs that cannot trample each other.
In-process where possible (the commands' `main`), so that the battery stays fast; docs/TRAINING.md lists what
is guarded."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import ROOT, assert_user_error, call

FIXTURES = Path(__file__).parent / "fixtures" / "weights-v1"
TINY = ["--preset", "smoke", "--train-limit", "256", "--batch-size", "32", "--test-limit", "64", "--no-progress"]
TRAINERS = ("nin_torch.train", "nin_flax.train")
PREDICTORS = ("nin_torch.predict", "nin_flax.predict")


def tampered(tmp_path: Path, name: str, change_tensors=None, change_metadata=None) -> Path:
    """A copy of a small real weights file with its tensors or its metadata changed."""
    from safetensors.numpy import save_file

    from shared.weights import load_portable

    state, metadata = load_portable(FIXTURES / "d2l.safetensors")
    if change_tensors:
        state = change_tensors(state)
    if change_metadata:
        metadata = change_metadata(dict(metadata))
    path = tmp_path / name
    save_file(state, str(path), metadata=metadata)
    return path


def with_value(value):
    def change(state):
        state["blocks.0.conv0.weight"] = state["blocks.0.conv0.weight"].copy()
        state["blocks.0.conv0.weight"].flat[3] = value
        return state
    return change


# ----- weights checked before they are trusted -----

@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_weights_are_refused_by_every_reader(value, capsys, tmp_path):
    bad = tampered(tmp_path, "bad.safetensors", with_value(value))
    needle = "blocks.0.conv0.weight holds 1 NaN or infinite value(s)"
    for module in PREDICTORS:
        assert_user_error(call(capsys, module, str(ROOT / "examples" / "test-0.png"), "--weights", str(bad)), needle)
    assert_user_error(call(capsys, "compare.evaluate", str(bad), "--json", str(tmp_path / "e.json")), needle)
    assert_user_error(call(capsys, "compare.convert", str(bad), str(tmp_path / "c.safetensors")), needle)
    assert_user_error(call(capsys, "compare.parity", "--weights", str(bad)), needle)
    for module in TRAINERS:
        assert_user_error(call(capsys, module, *TINY, "--widths", "4,8,12", "--init-from", str(bad),
                               "--out", str(tmp_path / "run")), needle)
    assert not any((tmp_path / n).exists() for n in ("e.json", "c.safetensors", "run"))


def test_integer_weights_are_not_cast(capsys, tmp_path):
    bad = tampered(tmp_path, "int8.safetensors", lambda s: {**s, "blocks.0.conv0.bias": s["blocks.0.conv0.bias"]
                                                            .astype(np.int8)})
    assert_user_error(call(capsys, "nin_torch.predict", str(ROOT / "examples" / "test-0.png"), "--weights", str(bad)),
                      "blocks.0.conv0.bias is int8, not floating point")


@pytest.mark.parametrize("field, value, needle", [
    ("image_size", "100000", "needs about"),
    ("image_size", "1e20", "image_size '1e20' is not a whole number"),
    ("image_size", "12", "too small"),
    ("normalize", "yes", "normalize is 'yes', not true or false"),
    ("normalize", '"1"', "not true or false"),
    ("model_config", '{"num_1x1": 7}', "--num-1x1 7 is not one of"),
    ("model_config", '{"in_channels": 3}', "--in-channels must be 1"),
    ("model_config", '[1, 2]', "not a JSON object"),
])
def test_every_metadata_field_is_parsed_and_in_range(field, value, needle, capsys, tmp_path):
    bad = tampered(tmp_path, "meta.safetensors", change_metadata=lambda m: {**m, field: value})
    for module in PREDICTORS:
        result = call(capsys, module, str(ROOT / "examples" / "test-0.png"), "--weights", str(bad))
        assert_user_error(result, needle)
        assert "--normalize" not in result.stderr  # predict has no such flag
    assert_user_error(call(capsys, "compare.parity", "--weights", str(bad)), needle)
    assert_user_error(call(capsys, "compare.evaluate", str(bad), "--json", str(tmp_path / "e.json")), needle)


def test_an_architecture_too_big_for_memory_is_refused_with_the_right_advice(capsys):
    assert_user_error(call(capsys, "compare.summary", "--image-size", "100000"), "lower --image-size")
    result = call(capsys, "nin_torch.train", *TINY, "--widths", "100000,100000,100000", "--out", "/nonexistent/x")
    assert_user_error(result, "lower --widths")


# ----- configs -----

@pytest.mark.parametrize("toml, needle", [
    ("[train]\nepochs = true\n", "train.epochs: True is not a valid integer"),
    ("[train]\nepochs = 4.0\n", "train.epochs: 4.0 is not a valid integer"),
    ("[model]\nwidths = [96, 256.7, 384]\n", "is not a valid list of integers"),
    ("[run]\nout = true\n", "run.out: True is not valid text"),
    ("[data]\nnormalize = 1\n", "data.normalize: 1 is not true or false"),
])
def test_toml_values_of_the_wrong_type_are_refused(toml, needle, capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    for module in TRAINERS:
        assert_user_error(call(capsys, module, "--config", str(path), "--out", str(tmp_path / "run")), needle)
    assert not (tmp_path / "run").exists() and not (ROOT / "True").exists()


@pytest.mark.parametrize("module, argv, needle", [
    ("nin_torch.train", ["--seed", str(2**64)], "--seed must be in [0, 4294967295]"),
    ("nin_flax.train", ["--seed", str(2**63)], "--seed must be in [0, 4294967295]"),
    ("nin_torch.train", ["--lr", "1e39"], "beyond float32's range"),
    ("nin_flax.train", ["--weight-decay", "1e39"], "beyond float32's range"),
    ("nin_torch.train", ["--data-dir", ""], "--data-dir is empty"),
    ("nin_flax.train", ["--out", ""], "--out is empty"),
])
def test_out_of_range_flags(module, argv, needle, capsys, tmp_path):
    out = [] if "--out" in argv else ["--out", str(tmp_path / "run")]
    assert_user_error(call(capsys, module, *TINY, *out, *argv), needle)
    assert not (tmp_path / "run").exists()


def test_data_dir_that_is_a_file(capsys, tmp_path):
    a_file = tmp_path / "data"
    a_file.write_text("x")
    assert_user_error(call(capsys, "nin_torch.train", *TINY, "--data-dir", str(a_file), "--out", str(tmp_path / "r")),
                      "is a file, not a folder")


# ----- images: read as a person sees them -----

def reference(tmp_path: Path) -> tuple[np.ndarray, Path]:
    """A real Fashion-MNIST test image (as examples/ has it), as uint8 pixels and as an 8-bit PNG."""
    pixels = np.asarray(Image.open(ROOT / "examples" / "test-2.png").convert("L"))
    path = tmp_path / "upright-8bit.png"
    Image.fromarray(pixels).save(path)
    return pixels, path


def variants(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """(variant, its 8-bit upright copy) for each way a picture can arrive."""
    pixels, upright = reference(tmp_path)
    out: dict[str, tuple[Path, Path]] = {}
    sixteen = tmp_path / "16bit.png"
    Image.fromarray(pixels.astype(np.uint16) * 257).save(sixteen)
    out["16-bit grayscale"] = (sixteen, upright)
    rotated = tmp_path / "exif-rotated.jpg"  # stored turned; EXIF orientation 6 says: rotate 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(pixels, 1)).save(rotated, exif=exif, quality=100)
    with Image.open(rotated) as stored:
        decoded = np.asarray(stored.convert("L"))
    upright_jpeg = tmp_path / "exif-upright.png"
    Image.fromarray(np.rot90(decoded, -1)).save(upright_jpeg)
    out["JPEG with EXIF rotation"] = (rotated, upright_jpeg)
    alpha = tmp_path / "transparent.png"  # dark item on a transparent background; its copy: flattened on white
    item = 255 - pixels
    rgba = np.dstack([item, item, item, np.where(pixels > 20, 255, 0).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(alpha)
    flat = tmp_path / "flattened.png"
    Image.fromarray(np.where(rgba[..., 3] > 0, item, 255).astype(np.uint8)).save(flat)
    out["transparency"] = (alpha, flat)
    gif = tmp_path / "animated.gif"
    frames = [Image.fromarray(pixels).convert("P"), Image.fromarray(255 - pixels).convert("P")]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["animation (first frame)"] = (gif, upright)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.dstack([pixels] * 3)).save(rgb)
    out["RGB"] = (rgb, upright)
    return out


def probabilities(paths: list[Path]) -> np.ndarray:
    from nin_torch.predict import load_model, logits_of
    from shared.images import SHIPPED_WEIGHTS, prepare_image

    model, size, normalize = load_model(SHIPPED_WEIGHTS)
    logits = logits_of(model, np.stack([prepare_image(p).pixels for p in paths]), size, normalize).astype(np.float64)
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def test_each_image_variant_predicts_what_its_8bit_upright_copy_predicts(tmp_path):
    cases = variants(tmp_path)
    got = probabilities([v for v, _ in cases.values()])
    want = probabilities([c for _, c in cases.values()])
    for i, name in enumerate(cases):
        assert np.abs(got[i] - want[i]).max() <= 1e-4, (name, got[i].round(4), want[i].round(4))
    assert got[0].argmax() == 1  # test-2.png is a Trouser: its 16-bit copy no longer reads as a blank Bag


def test_images_that_would_allocate_gigabytes_are_refused_from_their_header(capsys, tmp_path):
    line = tmp_path / "line.png"
    Image.new("L", (1, 200_000)).save(line, optimize=True)
    assert line.stat().st_size < 2000
    started = time.perf_counter()
    assert_user_error(call(capsys, "nin_torch.predict", str(line)), "1x200000 px; its longest side may be at most")
    assert time.perf_counter() - started < 5
    wide = tmp_path / "wide.png"
    Image.new("L", (4000, 100)).save(wide)
    assert_user_error(call(capsys, "nin_flax.predict", str(wide)), "more than 20:1")


def test_image_paths_that_are_not_image_files(capsys, tmp_path):
    folder, fifo = tmp_path / "folder.png", tmp_path / "pipe.png"
    folder.mkdir()
    os.mkfifo(fifo)
    for module in PREDICTORS:
        assert_user_error(call(capsys, module, str(folder)), "is a folder, not an image file")
        assert_user_error(call(capsys, module, str(fifo)), "is a FIFO, not an image file")
        assert_user_error(call(capsys, module, str(tmp_path / "none.png")), "does not exist")


def test_paths_longer_than_path_max(capsys, tmp_path):
    long = str(tmp_path / ("x" * 5000))
    for module in PREDICTORS:
        assert_user_error(call(capsys, module, long), "too long")
        assert_user_error(call(capsys, module, str(ROOT / "examples" / "test-0.png"), "--weights", long), "too long")
    assert_user_error(call(capsys, "nin_torch.train", *TINY, "--out", long), "too long")
    assert_user_error(call(capsys, "compare.summary", "--json", long), "too long")


# ----- evaluate: valid JSON, classes without test images absent -----

def test_evaluate_on_one_test_image(capsys, tmp_path):
    out = tmp_path / "e.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy "mean of empty slice"
        result = call(capsys, "compare.evaluate", str(FIXTURES / "d2l.safetensors"), "--test-limit", "1",
                      "--framework", "torch", "--json", str(out), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert list(report["torch"]["per_class"]) == ["Ankle boot"]  # the first test image's class, alone
    assert len(report["torch"]["dead_classes"]) <= 1


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

class VanishingBackend:
    """A scripted backend whose folder is removed by someone else at step 30."""

    framework, device_name, is_main, param_count, n_train, n_test = "scripted", "cpu", True, 1, 64 * 8, 8

    def __init__(self, folder: Path):
        self.folder, self.steps = folder, 0

    def train_step(self, indices):
        self.steps += 1
        if self.steps == 30:
            import shutil

            shutil.rmtree(self.folder)
        return np.array([1.0 * len(indices), 0.5 * len(indices), 0.0])

    def eval_batch(self, indices):
        return np.array([1.0 * len(indices), 0.5 * len(indices)])

    def fetch(self, values):
        return np.stack(values).astype(np.float64)

    def lr_at(self, step):
        return 0.1

    def save_checkpoint(self, path, progress):
        path.write_text(json.dumps(progress))

    def save_weights(self, path):
        path.write_bytes(b"w")


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
