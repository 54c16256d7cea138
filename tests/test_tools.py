"""compare.summary, compare.report and bench.benchmark as a user runs them."""

import json
import shutil

import pytest

from .conftest import assert_user_error

pytestmark = pytest.mark.e2e  # make test-fast skips this module


def test_summary_json_and_reference_totals(cli, tmp_path):
    result = cli("compare.summary", "--json", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    total = s["total"]  # the figures themselves: tests/test_model.py::test_reference_figures
    assert s["torch"] == {"params": total["params"], "flops": total["flops"]} and total["flops"] == 2 * total["macs"]
    assert s["flax"]["params"] == total["params"] and abs(s["flax"]["flops"] - s["xla_style_flops"]) < 1e-6 * 1.5e9
    assert [r["name"] for r in s["layers"]][:4] == ["blocks.0.conv0", "blocks.0.conv1", "blocks.0.conv2", "pool0"]
    assert {"name", "shape", "params", "macs", "flops", "activation_bytes"} <= set(s["layers"][0])
    assert s["min_image_size"] == 67 and s["memory"]["training_bytes"] > s["memory"]["inference_bytes"]
    assert f"{total['flops']:,}" in result.stdout and f"{s['flax']['flops']:,}"[:7] in result.stdout


def test_report_overlays_two_runs(cli, tmp_path):
    for fw in ("torch", "flax"):
        run = tmp_path / fw
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({"framework": fw, "device": "cpu", "precision": "fp32",
                                                      "status": "ok", "epochs": 2, "test_acc": 0.8}))
        rows = [{"epoch": e, "step": 10 * e, "train_loss": 1 / e, "train_acc": 0.5 + e / 10, "test_loss": 1.1 / e,
                 "test_acc": 0.5 + e / 11, "examples_per_sec": 100.0, "lr": 0.1, "seconds": 3.0 * e}
                for e in (1, 2)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("compare.report", str(tmp_path / "torch"), str(tmp_path / "flax"), "--out", str(tmp_path / "r.png"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG" and "test_acc" in result.stdout
    shutil.rmtree(tmp_path / "flax")
    assert_user_error(cli("compare.report", str(tmp_path / "torch"), str(tmp_path / "flax")), "no summary.json")


def test_benchmark_has_every_contract_key(cli, tmp_path):
    result = cli("bench.benchmark", "--image-size", "67", "--batch-size", "16", "--steps", "2", "--windows", "2",
                 "--json", str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    for fw in ("torch", "flax"):
        assert {"train_examples_per_sec", "eval_examples_per_sec", "peak_memory_bytes"} <= set(b[fw])
        assert b[fw]["train_examples_per_sec"] > 0 and b[fw]["peak_memory_bytes"] > 2**20
    assert b["ratio_flax_over_torch"] > 0 and b["peak_matmul_flops_per_sec"]["fp32"] > 1e9
