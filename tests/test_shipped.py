"""The shipped weights (weights/, the best preset's run): evaluated in both frameworks on real test images,
and `predict` in both on PNGs cut from the test set and on a light-background photo-like image."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from shared.data import CLASS_NAMES, load_split
from shared.images import SHIPPED_WEIGHTS, prepare_image

from .conftest import assert_user_error, call, requires_onnx

pytestmark = pytest.mark.e2e  # make test-fast skips this module

TEST_INDICES = (0, 1, 2, 3, 4)  # the first five test images: Ankle boot, Pullover, Trouser, Trouser, Shirt


@pytest.fixture(scope="module")
def test_pngs(tmp_path_factory) -> list[tuple[str, str]]:
    """(path, true class) of test images saved as PNGs at 4x, as a user's files would be."""
    folder = tmp_path_factory.mktemp("pngs")
    images, labels = load_split("test")
    out = []
    for i in TEST_INDICES:
        path = folder / f"test-{i}.png"
        Image.fromarray(images[i]).resize((112, 112), Image.Resampling.BICUBIC).save(path)
        out.append((str(path), CLASS_NAMES[labels[i]]))
    return out


@pytest.fixture(scope="module")
def light_photo(tmp_path_factory) -> str:
    """A dark pair of trousers on a white background, JPEG, not square: it must be inverted."""
    pixels = np.full((120, 90), 245, np.uint8)
    pixels[15:105, 25:42] = pixels[15:105, 48:65] = pixels[15:30, 25:65] = 40
    path = tmp_path_factory.mktemp("photo") / "trousers.jpg"
    Image.fromarray(pixels).convert("RGB").save(path)
    return str(path)


def parse_predictions(stdout: str) -> dict[str, list[tuple[str, float]]]:
    """{image path: [(class, probability), ...]} from predict's output."""
    out: dict[str, list[tuple[str, float]]] = {}
    current = None
    for line in stdout.splitlines():
        ranked = re.match(r"\s+\d\. (.+?)\s+([0-9.]+)$", line)
        if ranked:
            out[current].append((ranked.group(1), float(ranked.group(2))))
        elif line.strip():
            current = line.split(" (")[0]
            out[current] = []
    return out


def test_shipped_weights_evaluate_alike_in_both_frameworks():
    from compare.evaluate import evaluate

    report = evaluate(str(SHIPPED_WEIGHTS), ["torch", "flax"], test_limit=2000)
    assert report["torch"]["test_acc"] >= 0.9 and report["flax"]["test_acc"] >= 0.9
    assert abs(report["torch"]["test_acc"] - report["flax"]["test_acc"]) <= 0.001
    assert report["agreement"] >= 0.999
    assert not report["torch"]["dead_classes"] and not report["flax"]["dead_classes"]


def test_predict_prints_the_same_in_both_frameworks(capsys, test_pngs, light_photo):
    paths = [p for p, _ in test_pngs] + [light_photo]
    printed = {}
    for framework in ("torch", "flax"):
        result = call(capsys, f"nin_{framework}.predict", *paths)
        assert result.returncode == 0, result.stderr
        printed[framework] = parse_predictions(result.stdout)
        assert "inverted" in result.stdout.split(light_photo)[1].splitlines()[0]
    for path, label in test_pngs:
        assert printed["torch"][path][0][0] == label
    assert printed["torch"][light_photo][0][0] == "Trouser"
    for path in paths:
        torch_top, flax_top = printed["torch"][path], printed["flax"][path]
        assert len(torch_top) == 3 and [c for c, _ in torch_top] == [c for c, _ in flax_top]
        assert max(abs(a - b) for (_, a), (_, b) in zip(torch_top, flax_top, strict=True)) <= 1e-4


def test_a_test_png_comes_back_as_the_test_image(test_pngs):
    """Saved at 4x and shrunk back, a dark-background test image is not inverted and stays close."""
    images, _ = load_split("test")
    prepared = prepare_image(test_pngs[0][0])
    assert not prepared.inverted and prepared.original_size == (112, 112)
    assert np.abs(prepared.pixels.astype(int) - images[TEST_INDICES[0]]).mean() < 8


@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_bad_images_follow_the_error_contract(capsys, tmp_path, framework):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    module = f"nin_{framework}.predict"
    assert_user_error(call(capsys, module, str(tmp_path / "missing.png")), "does not exist")
    assert_user_error(call(capsys, module, str(empty)), "empty")
    assert_user_error(call(capsys, module, str(text)), "not an image")
    assert_user_error(call(capsys, module, str(empty), "--weights", str(tmp_path / "none.safetensors")), "weights file")
    assert_user_error(call(capsys, module, str(text), "--top", "0"), "--top")


@requires_onnx
def test_the_shipped_onnx_file_gives_the_shipped_weights_test_accuracy(tmp_path):
    """weights/nin-fashion-mnist-best.onnx in ONNX Runtime (as users run it) on the full test set: the test
    accuracy of the safetensors file in torch, within one image in 10,000."""
    from compare.evaluate import evaluate

    onnx_file = SHIPPED_WEIGHTS.with_suffix(".onnx")
    ours = evaluate(str(SHIPPED_WEIGHTS), ["torch"])["torch"]["test_acc"]
    theirs = evaluate(str(onnx_file), ["onnx"])["onnx"]
    assert abs(theirs["test_acc"] - ours) <= 1e-4 and round(theirs["test_acc"], 4) == 0.9273
    assert theirs["dead_classes"] == []
