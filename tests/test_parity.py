"""compare.parity: passes for the d2l config and its variants; a broken port fails and names the layer."""

import json

import numpy as np
import pytest

import compare.parity as parity
from shared.config import Config, ModelConfig

from .conftest import requires_onnx

CONTRACT_CHECKS = {"pipeline", "shapes", "params", "logits_torch_to_flax", "logits_flax_to_torch", "onnx", "grads",
                   "train"}


SMALL = {"widths": (16, 32, 48)}  # a small NiN: the checks' logic at a fraction of the cost


def config(size: int = 67, **model) -> Config:
    cfg = Config(model=ModelConfig(**model))
    cfg.data.image_size = size
    return cfg


def test_parity_passes_on_a_small_net():
    report = parity.run_parity(config(**SMALL), batch=2, steps=4, onnx="none")  # ONNX: the e2e tests below
    assert set(report["checks"]) == CONTRACT_CHECKS and report["ok"], report["checks"]
    assert report["checks"]["grads"]["max_rel_diff"] <= 1e-12  # float64
    assert len(report["checks"]["train"]["loss_torch"]) == 4


@pytest.mark.e2e
@requires_onnx
@pytest.mark.parametrize("model", [{}, {"num_1x1": 1}, {"num_1x1": 3}, {"mid_kernel": 3}, {"head": "fc"},
                                   {"final_relu": False}], ids=str)
def test_parity_passes(model):
    report = parity.run_parity(config(**model), batch=4, steps=10, onnx="both")
    assert set(report["checks"]) == CONTRACT_CHECKS and report["checks"]["onnx"]["exported_from"] == ["torch", "flax"]
    onnx = report["checks"]["onnx"]
    assert max(v for k, v in onnx.items() if k.startswith(("max_abs", "flax_export_max_abs"))) <= 1e-5
    failed = {k: v for k, v in report["checks"].items() if not v["ok"]}
    assert report["ok"], failed
    assert report["checks"]["logits_torch_to_flax"]["max_abs_diff"] <= 1e-5
    assert report["checks"]["grads"]["max_rel_diff"] <= 1e-4
    assert len(report["checks"]["train"]["loss_torch"]) == 10


def transposed(layer: str):
    """A port that transposes one kernel the wrong way (swaps its spatial axes)."""
    def port(state):
        state = dict(state)
        state[f"{layer}.weight"] = np.ascontiguousarray(state[f"{layer}.weight"].transpose(0, 1, 3, 2))
        return state
    return port


def dropped_bias(layer: str):
    def port(state):
        state = dict(state)
        state[f"{layer}.bias"] = np.zeros_like(state[f"{layer}.bias"])
        return state
    return port


def test_broken_port_fails_and_names_the_layer():
    cfg = config(96, init="torch", **SMALL)  # nonzero biases, so a dropped one shows
    report = parity.run_parity(cfg, batch=4, steps=2, torch_to_flax=transposed("blocks.1.conv0"), onnx="none")
    assert not report["ok"] and not report["checks"]["logits_torch_to_flax"]["ok"]
    assert report["checks"]["logits_torch_to_flax"]["first_diverging_layer"] == "blocks.1.conv0"
    report = parity.run_parity(cfg, batch=4, steps=2, flax_to_torch=dropped_bias("blocks.2.conv1"), onnx="none")
    assert report["checks"]["logits_flax_to_torch"]["first_diverging_layer"] == "blocks.2.conv1"


@pytest.mark.e2e
@requires_onnx
def test_cli_exit_codes_and_json(tmp_path, monkeypatch, capsys):
    out = tmp_path / "parity.json"
    small = ["--image-size", "67", "--widths", "16,32,48", "--batch", "2"]
    assert parity.main([*small, "--steps", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["checks"]) == CONTRACT_CHECKS and report["ok"] is True
    for key, fields in {"pipeline": {"ok", "max_abs_diff"}, "params": {"ok", "torch", "flax", "analytic"},
                        "logits_flax_to_torch": {"ok", "max_abs_diff", "max_abs_logit"},
                        "grads": {"ok", "max_rel_diff"}, "onnx": {"ok", "max_abs_diff_torch", "max_abs_diff_flax"},
                        "train": {"ok", "steps", "loss_torch", "loss_flax", "max_rel_diff"}}.items():
        assert fields <= set(report["checks"][key]), key
    assert {"name", "torch", "flax", "analytic"} <= set(report["checks"]["shapes"]["layers"][0])
    assert "parity: OK" in capsys.readouterr().out

    real = parity.run_parity
    monkeypatch.setattr(parity, "run_parity",
                        lambda *a, **k: real(*a, **k, torch_to_flax=transposed("blocks.0.conv0")))
    assert parity.main([*small, "--steps", "2", "--onnx", "none"]) == 1
    assert "first diverging layer: blocks.0.conv0" in capsys.readouterr().out


@pytest.mark.e2e
@requires_onnx
def test_a_wrong_onnx_export_fails_the_third_referee(monkeypatch):
    """ONNX Runtime referees what was exported: an export whose graph drops the last bias is caught."""
    from compare import to_onnx

    real = to_onnx.export_torch

    def broken(state, *args):
        state = dict(state)
        last = max(k for k in state if k.endswith(".bias") and k.startswith("blocks.3"))
        state[last] = state[last] + 0.01
        return real(state, *args)

    monkeypatch.setattr(to_onnx, "export_torch", broken)
    report = parity.run_parity(config(**SMALL), batch=2, steps=2)
    assert not report["ok"] and not report["checks"]["onnx"]["ok"] and report["checks"]["onnx"]["opset"] == 18
    assert report["checks"]["logits_torch_to_flax"]["ok"]  # the frameworks still agree with each other
