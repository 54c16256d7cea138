"""Reads the experiment run directories (results/<protocol>/...) back into numbers: per-cell means and spreads
over seeds, the init experiment's stuck-at-chance count, the lr experiment's instability, the analytic
params/FLOPs/memory. Nothing here trains; experiments/doc.py turns these numbers into docs/RESULTS.md.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from experiments.grid import FRAMEWORKS, Cell, Protocol, all_cells, cell_config, seed_count
from shared.arch import nin_spec
from shared.config import ModelConfig
from shared.errors import UserError, first_line
from shared.files import read_jsonl
from shared.summary import layer_table, memory_estimate, totals

CHANCE_LOSS = math.log(10)
STUCK_LOSS = 2.25  # last logged training loss at or above this (ln 10 = 2.303) ...
STUCK_ACC = 0.2  # ... and test accuracy at or below this: the run never left chance
RISE = 0.1  # a training-loss window this much above the one before it counts as a spike


@dataclass
class Run:
    framework: str
    seed: int
    summary: dict
    steps: list[dict]
    metrics: list[dict]
    path: Path | None = None
    evaluation: dict | None = None  # compare.evaluate's report of its weights (the trained protocol's runs)

    @property
    def test_acc(self) -> float | None:
        return self.summary.get("test_acc")

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def stuck(self) -> bool:
        last = self.steps[-1]["train_loss"] if self.steps else CHANCE_LOSS
        return self.status == "diverged" or (last >= STUCK_LOSS and (self.test_acc or 0.0) <= STUCK_ACC)

    @property
    def dead_classes(self) -> list[str] | None:
        """The classes compare.evaluate found dead in its weights (None: not evaluated)."""
        return None if self.evaluation is None else list(self.evaluation.get("dead_classes", []))

    @property
    def rises(self) -> list[float]:
        """Every rise of the training loss from one SYNC_EVERY-step window to the next by more than RISE."""
        losses = [s["train_loss"] for s in self.steps]
        return [b - a for a, b in zip(losses, losses[1:], strict=False) if math.isfinite(b) and b - a > RISE]

    @property
    def collapses(self) -> int:
        """Windows whose training accuracy fell below half the best seen so far (after it passed 0.3): the
        discussion's 'train accuracy collapse'."""
        best, count = 0.0, 0
        for s in self.steps:
            if best > 0.3 and s["train_acc"] < 0.5 * best:
                count += 1
            best = max(best, s["train_acc"])
        return count

    @property
    def spikes(self) -> int:
        """Windows of SYNC_EVERY steps whose mean training loss rose by more than RISE over the window before."""
        losses = [s["train_loss"] for s in self.steps]
        return sum(1 for a, b in zip(losses, losses[1:], strict=False) if not math.isfinite(b) or b - a > RISE)


@dataclass
class CellRuns:
    cell: Cell
    path: Path
    runs: dict[str, list[Run]] = field(default_factory=dict)  # framework -> runs, by seed

    def accs(self, framework: str) -> list[float]:
        return [r.test_acc for r in self.runs.get(framework, []) if r.test_acc is not None and r.status == "ok"]

    def mean_acc(self, framework: str) -> float | None:
        stats = mean_spread(self.accs(framework))
        return None if stats is None else stats[0]

    def mean(self, framework: str, key: str) -> float | None:
        values = [r.summary.get(key) for r in self.runs.get(framework, []) if r.summary.get(key) is not None]
        return statistics.fmean(values) if values else None

    @property
    def ran(self) -> bool:
        return any(self.runs.values())


FINISHED = ("ok", "diverged")  # a run's status once it ended its schedule (or was stopped by the divergence guard)


def load_run(path: Path) -> Run | None:
    summary = path / "summary.json"
    if not summary.exists():
        return None
    framework, seed = path.name.rsplit("-seed", 1)
    try:
        loaded = json.loads(summary.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{summary} is damaged ({first_line(e)}); delete that run folder so that the grid runs it "
                        f"again, or restore the file") from None
    if not isinstance(loaded, dict) or "status" not in loaded:
        raise UserError(f"{summary} is damaged (not a run's summary); delete that run folder so that the grid runs "
                        f"it again, or restore the file")
    if loaded["status"] not in FINISHED:
        return None  # interrupted: the grid resumes it; until then its figures are an epoch's, not the run's
    evaluation = None
    if (path / "evaluate.json").exists():
        try:
            evaluation = json.loads((path / "evaluate.json").read_text()).get(framework)
        except (OSError, ValueError, AttributeError):
            evaluation = None
    return Run(framework, int(seed), loaded, read_jsonl(path / "steps.jsonl"), read_jsonl(path / "metrics.jsonl"),
               path, evaluation)


def load_cell(root: Path, protocol: Protocol, cell: Cell) -> CellRuns:
    folder = root / protocol.name / cell.name
    found = CellRuns(cell, folder)
    for framework in FRAMEWORKS:
        runs = [load_run(p) for p in sorted(folder.glob(f"{framework}-seed*"), key=lambda p: p.name)]
        found.runs[framework] = sorted((r for r in runs if r), key=lambda r: r.seed)
    return found


def mean_spread(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def load_extra(root: Path, protocol: Protocol, name: str) -> dict | None:
    path = root / protocol.name / "extras" / name
    return json.loads(path.read_text()) if path.exists() else None


def grid_wall_minutes(root: Path, protocol: Protocol) -> float | None:
    """Wall time of the invocations that ran something (results/<protocol>/grid.jsonl)."""
    log = read_jsonl(root / protocol.name / "grid.jsonl")
    spent = [row["minutes"] for row in log if row.get("ran", 0) > 0]
    return sum(spent) if spent else None


def grid_progress(root: Path, protocol: Protocol) -> tuple[int, int, float]:
    """Runs of the protocol's grid that finished (ok or diverged), runs in all, and the finished runs' own
    seconds added up."""
    done, total, seconds = 0, 0, 0.0
    for cell in all_cells(protocol):
        for fw in FRAMEWORKS:
            for seed in range(seed_count(cell, protocol, None)):
                total += 1
                path = root / protocol.name / cell.name / f"{fw}-seed{seed}" / "summary.json"
                summary = json.loads(path.read_text()) if path.exists() else {}
                if summary.get("status") in FINISHED:
                    done, seconds = done + 1, seconds + float(summary.get("seconds") or 0.0)
    return done, total, seconds


def analytic(protocol: Protocol, cell: Cell) -> dict:
    """Params and FLOPs from shared.arch/summary for the cell's model at its image size (and at 224 px)."""
    cfg = cell_config(protocol, cell)
    size = cfg.data.image_size
    spec = nin_spec(cfg.model, size)
    total = totals(layer_table(spec, size))
    return {"image_size": size, "params": total["params"], "flops": total["flops"],
            "flops_224": totals(layer_table(nin_spec(cfg.model, 224), 224))["flops"]}


def memory_rows(root: Path, protocol: Protocol) -> list[dict]:
    """Measured peak memory (extras/memory-*.json) beside the analytic estimate for the same size and batch."""
    rows = []
    slots = 2 if protocol.base_is_adam else 0  # Adam keeps two moments per weight; d2l's plain SGD none
    for size in protocol.memory_sizes:
        estimate = memory_estimate(nin_spec(ModelConfig(), size), size, protocol.memory_batch, optimizer_slots=slots)
        for framework in FRAMEWORKS:
            for kind in ("train", "infer"):
                m = load_extra(root, protocol, f"memory-{framework}-{kind}-{size}.json")
                analytic_bytes = estimate["training_bytes" if kind == "train" else "inference_bytes"]
                if m is None:
                    rows.append({"size": size, "framework": framework, "kind": kind, "analytic": analytic_bytes})
                    continue
                measured = m["device_peak_bytes"] or m["peak_rss_bytes"] - m["rss_before_bytes"]
                rows.append({"size": size, "framework": framework, "kind": kind, "analytic": analytic_bytes,
                             "measured": measured, "peak_rss": m["peak_rss_bytes"],
                             "on": "device peak" if m["device_peak_bytes"] else "RSS growth",
                             "param_bytes": estimate["param_bytes"]})
    return rows
