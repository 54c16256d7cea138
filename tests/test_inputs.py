"""Inputs checked before they are trusted: weights, their metadata, configs, images, paths. What a careless or
hostile user's input cannot do; in-process where possible (the commands' `main`), so that the battery stays
fast. docs/TRAINING.md lists what is guarded; tests/test_outputs.py holds the outputs' half."""

from __future__ import annotations

import json
import os
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


