"""experiments.run: the grid is well formed, runs real trainers, skips what is done, and reports honestly."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from experiments.doc import write_results
from experiments.grid import CPU, EXPERIMENTS, GPU, all_cells, experiment_cells, seed_count
from experiments.results import Run
from experiments.run import run_grid, train_command
from shared.cli import parse_train_args

from .conftest import assert_user_error

# The cpu protocol's grid, shrunk to two steps per run: what the test checks is the plumbing, not accuracy.
TINY = dataclasses.replace(CPU, base=("--preset", "smoke", "--train-limit", "128", "--test-limit", "64"), seeds=1)


@pytest.mark.parametrize("protocol", [CPU, GPU], ids=["cpu", "gpu"])
def test_every_cell_is_a_valid_trainer_command(protocol):
    grid = experiment_cells(protocol)
    assert set(grid) == set(EXPERIMENTS)
    cells = all_cells(protocol)
    assert len({c.name for c in cells}) == len(cells)
    for cell in cells:
        for fw in ("torch", "flax"):
            command = train_command(protocol, cell, fw, 0, Path("results/x"))
            assert command[1:3] == ["-m", f"nin_{fw}.train"]
            if cell.same_init:
                continue  # its --init-from file is written by the grid just before the run
            cfg = parse_train_args(command[3:], fw)
            assert cfg.run.out == "results/x" and not cfg.run.progress
    lr = {c.name: parse_train_args(train_command(protocol, c, "torch", 0, Path("o"))[3:], "torch") for c in grid["lr"]}
    assert {cfg.train.lr for cfg in lr.values()} == {0.01, 0.03, 0.05, 0.1, 0.2}
    assert all(cfg.train.optimizer == "sgd" for cfg in lr.values())
    assert lr["lr-0.1-plain"].train.schedule == "constant" and lr["lr-0.1-plain"].train.warmup_steps == 0
    assert lr["lr-0.1-scheduled"].train.clip_grad_norm == 1.0 and lr["lr-0.1-scheduled"].train.schedule == "cosine"
    init = [parse_train_args(train_command(protocol, c, "flax", 0, Path("o"))[3:], "flax") for c in grid["init"]]
    assert sorted((cfg.model.init, cfg.model.final_relu) for cfg in init) == sorted(
        (i, r) for i in ("torch", "flax", "xavier_uniform", "kaiming_normal") for r in (True, False))
    assert all(seed_count(c, protocol, None) >= 5 for c in grid["init"])
    assert all(seed_count(c, protocol, 2) == 5 for c in grid["init"])


def test_stuck_and_spikes_read_the_step_log():
    def run(losses, acc, status="ok"):
        steps = [{"step": 20 * (i + 1), "train_loss": v} for i, v in enumerate(losses)]
        return Run("torch", 0, {"test_acc": acc, "status": status}, steps, [])

    assert run([2.303, 2.302, 2.301], 0.1).stuck
    assert not run([2.3, 2.0, 1.7], 0.35).stuck
    assert run([2.3, math.nan], None, "diverged").stuck
    assert run([2.0, 1.5, 1.8, 1.2, 1.4], 0.5).spikes == 2


@pytest.mark.e2e
def test_grid_runs_skips_and_reports(tmp_path):
    root, docs = tmp_path / "results", tmp_path / "docs"
    assert run_grid(TINY, "head", None, root) == []  # base and fc, one seed, both frameworks
    runs = sorted(p.relative_to(root).as_posix() for p in root.glob("cpu/*/*-seed*"))
    assert runs == ["cpu/base/flax-seed0", "cpu/base/torch-seed0", "cpu/fc/flax-seed0", "cpu/fc/torch-seed0"]
    for run in root.glob("cpu/*/*-seed*"):
        assert json.loads((run / "summary.json").read_text())["status"] == "ok"
        assert (run / "steps.jsonl").exists() and "--seed 0" in (run / "command.txt").read_text()
        assert not any((run / name).exists() for name in ("checkpoint.pt", "checkpoint", "weights.safetensors"))
    stamp = {p: p.stat().st_mtime_ns for p in root.glob("cpu/*/*/summary.json")}
    assert run_grid(TINY, "head", None, root) == []  # all done: nothing runs again
    assert {p: p.stat().st_mtime_ns for p in root.glob("cpu/*/*/summary.json")} == stamp
    log = [json.loads(line) for line in (root / "cpu" / "grid.jsonl").read_text().splitlines()]
    assert [row["ran"] for row in log] == [4, 0]

    text = write_results(root, docs).read_text()
    head = text.split("## head")[1].split("## ")[0]
    assert "[0." in head and "](../results/cpu/base)" in head and "](../results/cpu/fc)" in head
    assert "gpu protocol: not run" in head
    assert "not run" in text.split("## num-1x1")[1].split("## ")[0]  # n0, n1, n3 have no runs
    assert (docs / "figures" / "cpu-head.png").read_bytes()[:4] == b"\x89PNG"
    assert not (docs / "figures" / "cpu-lr.png").exists()


@pytest.mark.e2e
def test_experiments_cli_errors(cli, tmp_path):
    assert_user_error(cli("experiments.run", "--seeds", "0", "--results", str(tmp_path)), "--seeds")
    assert_user_error(cli("experiments.run", "--only", "nope"), "--only")
    result = cli("experiments.run", "--report-only", "--results", str(tmp_path / "none"),
                 "--docs", str(tmp_path / "docs"))
    assert_user_error(result, "holds no runs")  # a mistyped --results no longer rewrites RESULTS.md as "not run"
    assert not (tmp_path / "docs").exists()


def test_evaluate_finds_a_class_killed_by_the_final_relu(tmp_path):
    import torch

    from compare.evaluate import evaluate
    from nin_torch.model import build_model
    from nin_torch.weights import save
    from shared.config import ModelConfig

    cfg = ModelConfig()
    model = build_model(cfg, 67, seed=0)
    with torch.no_grad():  # every class's last conv outputs its bias: 1, but -1 for class 3, which the ReLU zeroes
        last = model.blocks[-1].conv2
        last.weight.zero_()
        last.bias.fill_(1.0)
        last.bias[3] = -1.0
    save(model, tmp_path / "w.safetensors", cfg, 67)
    report = evaluate(str(tmp_path / "w.safetensors"), ["torch", "flax"], test_limit=200)
    assert report["test_examples"] == 200 and report["agreement"] == 1.0
    for fw in ("torch", "flax"):
        result = report[fw]
        assert "Dress" in result["dead_classes"] and result["per_class"]["Dress"] == 0.0
        assert result["zero_logit_fraction"]["T-shirt/top"] == 0.0 and result["zero_logit_fraction"]["Dress"] == 1.0
        assert sum(map(sum, result["confusion"])) == 200


def test_recipe_section_reads_the_recipe_runs(tmp_path):
    from experiments.markdown import Doc
    from experiments.recipe import section_recipe

    root, docs = tmp_path / "results", tmp_path / "docs"
    doc = Doc(root, docs)
    section_recipe(doc)
    assert "Not run yet" in "\n".join(doc.lines)
    for fw, acc in (("torch", 0.931), ("flax", 0.924)):
        run = root / "recipe" / fw
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"test_acc": acc, "train_acc": 0.95, "test_loss": 0.5,
                                                      "epochs": 2, "seconds": 600.0}))
        rows = [{"epoch": e, "step": 10 * e, "train_loss": 1 / e, "test_loss": 1 / e, "train_acc": 0.9, "test_acc": acc}
                for e in (1, 2)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        side = {"test_acc": acc, "dead_classes": []}
        (run / "evaluate.json").write_text(json.dumps({"torch": side, "flax": side, "agreement": 0.9995}))
    doc = Doc(root, docs)
    section_recipe(doc)
    text = "\n".join(doc.lines)
    assert "| [torch](../results/recipe/torch) | 0.9310 |" in text and "0.9240 / 0.9240, agreement 0.9995" in text
    assert "Goal 0.925 reached by: torch." in text and "--augment-shift 3 --augment-flip" in text
    assert (docs / "figures" / "recipe.png").read_bytes()[:4] == b"\x89PNG"


def test_the_trained_protocol_trains_every_cell_to_the_end_of_its_schedule():
    from experiments.grid import TRAINED

    grid = experiment_cells(TRAINED)
    assert set(grid) == set(EXPERIMENTS)
    configs = {c.name: parse_train_args(train_command(TRAINED, c, "torch", 0, Path("o"))[3:], "torch")
               for c in all_cells(TRAINED)}
    for name, cfg in configs.items():
        assert cfg.data.train_limit is None and cfg.data.test_limit is None and cfg.train.max_steps is None, name
        assert cfg.data.image_size in (67, 128) and cfg.train.epochs == (1 if cfg.data.image_size == 128 else 4)
        assert cfg.model.final_relu == (name != "norelu")
    for cell in grid["num-1x1"]:
        assert seed_count(cell, TRAINED, None) == 2  # two seeds x two frameworks: four samples a variant
    assert {configs[c.name].model.num_1x1 for c in grid["num-1x1"]} == {0, 1, 2, 3}
    for cell in grid["init"] + grid["lr"][:2]:  # plain SGD as the readers ran it
        cfg = configs[cell.name]
        assert (cfg.train.optimizer, cfg.train.schedule, cfg.train.warmup_steps) == ("sgd", "constant", 0)
    assert {configs[c.name].model.init for c in grid["init"]} == {"torch", "flax", "xavier_uniform", "kaiming_normal"}
    assert {configs[c.name].train.lr for c in grid["lr"][:2]} == {0.1, 0.03}
    head = {configs[c.name].model.head for c in grid["head"]}
    assert head == {"gap", "fc"}
    assert {configs[c.name].data.image_size for c in grid["head"] + grid["bottleneck"]} == {128}
    assert configs["base"].train.optimizer == "adam" and configs["base"].train.schedule == "cosine"


def test_the_verdict_reads_the_spread():
    from experiments.questions import verdict

    assert "**differs**" in verdict([0.90, 0.91, 0.905, 0.90], [0.85, 0.86, 0.855, 0.85])
    assert "**no difference shown**" in verdict([0.90, 0.91, 0.60, 0.90], [0.85, 0.86, 0.855, 0.85])
    assert "no spread" in verdict([0.9], [0.8, 0.81]) and verdict([], [0.8]) == "not run"


def test_dead_classes_and_collapses_are_read_from_the_run():
    accs = [0.2, 0.5, 0.8, 0.3, 0.35]
    steps = [{"step": 20 * (i + 1), "train_loss": 1.0, "train_acc": a} for i, a in enumerate(accs)]
    run = Run("torch", 0, {"test_acc": 0.5, "status": "ok"}, steps, [], None, {"dead_classes": ["Coat"]})
    assert run.collapses == 2 and run.dead_classes == ["Coat"]
    assert Run("flax", 0, {"status": "ok"}, steps, []).dead_classes is None


def test_a_partly_run_trained_protocol_reports_what_it_has(tmp_path):
    """The trained grid spans hours: its report must render with only some cells run (here the committed base
    runs), each missing cell marked "not run" and every figure drawn from the runs there are."""
    import shutil

    root, docs = tmp_path / "results", tmp_path / "docs"
    shutil.copytree(Path(__file__).parents[1] / "results" / "trained" / "base", root / "trained" / "base")
    interrupted = root / "trained" / "sgd-0.1" / "torch-seed0"  # stopped after its first epoch: resumable
    shutil.copytree(root / "trained" / "base" / "torch-seed0", interrupted)
    summary = json.loads((interrupted / "summary.json").read_text())
    (interrupted / "summary.json").write_text(json.dumps({**summary, "status": "interrupted", "epochs": 1}))
    text = write_results(root, docs).read_text()
    assert "**trained** (partly run: 4 of 36 runs finished" in text  # not "run", with a wall time of 4 runs
    exercise = text.split("### Exercise 1")[1].split("###")[0]
    assert "](../results/trained/base)" in exercise and "(4 runs)" in exercise
    sgd = next(line for line in exercise.splitlines() if line.startswith("| plain SGD 0.1, constant |"))
    assert "not run" in sgd and "sgd-0.1" not in sgd  # an interrupted run is not reported as a result
    assert (docs / "figures" / "trained-lr.png").read_bytes()[:4] == b"\x89PNG"  # Adam's curves; SGD's not run
