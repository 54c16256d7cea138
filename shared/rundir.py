"""A run directory: config.json, metrics.jsonl, summary.json, curves.png, each written so a crash loses nothing
already written and leaves no half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from shared.config import Config
from shared.errors import UserError

STEP_KEYS = ("step", "train_loss", "train_acc", "lr")  # steps.jsonl: one line per host sync (SYNC_EVERY steps)
METRIC_KEYS = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "examples_per_sec", "lr",
               "seconds")


def atomic_write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: Path) -> None:
    """Refuse an output file path that cannot be written, before any work starts."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file path to write")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: {existing} is not a writable folder; choose another path")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


class RunDir:
    def __init__(self, path: str | Path, resume: bool, checkpoint_name: str):
        self.path = Path(path)
        self.checkpoint = self.path / checkpoint_name
        previous = self.path / f".{checkpoint_name}.old"  # a crash between swapping checkpoint folders
        if previous.exists() and not self.checkpoint.exists():
            previous.rename(self.checkpoint)
        if resume and not self.checkpoint.exists():
            raise UserError(f"--resume: no checkpoint in {self.path} to resume from; start without --resume "
                            f"or give the --out of an earlier run")
        if not resume and self.checkpoint.exists():
            raise UserError(f"{self.path} already holds a run; pass --resume to continue it or choose another --out")

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, cfg: Config, framework: str) -> None:
        """The first write of a run: the folder appears only once the run has really started."""
        atomic_write(self.path / "config.json", json.dumps({"framework": framework, **cfg.to_dict()}, indent=2))

    @property
    def steps_path(self) -> Path:
        return self.path / "steps.jsonl"

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def keep_metrics_through(self, epoch: int, step: int) -> None:
        """On resume: drop any epoch (and step line) the checkpoint does not include (written after it)."""
        for path, key, last in ((self.metrics_path, "epoch", epoch), (self.steps_path, "step", step)):
            kept = [m for m in read_jsonl(path) if m[key] <= last]
            atomic_write(path, "".join(json.dumps(m) + "\n" for m in kept))

    def append_metrics(self, row: dict[str, Any]) -> None:
        _append(self.metrics_path, {k: row[k] for k in METRIC_KEYS})

    def append_steps(self, row: dict[str, Any]) -> None:
        _append(self.steps_path, {k: row[k] for k in STEP_KEYS})

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.path / "summary.json", json.dumps(summary, indent=2))

    def plot_curves(self, title: str) -> None:
        plot_runs([(title, self.read_metrics())], self.path / "curves.png")


def plot_runs(runs: list[tuple[str, list[dict[str, Any]]]], path: Path, table: list[list[str]] | None = None) -> None:
    """Loss and accuracy per epoch of one or more runs (Agg backend: no display, no svg/inline backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if table else 1
    fig = plt.figure(figsize=(11, 4.2 * rows if not table else 7.5))
    loss_ax = fig.add_subplot(rows, 2, 1)
    acc_ax = fig.add_subplot(rows, 2, 2)
    for label, metrics in runs:
        epochs = [m["epoch"] for m in metrics]
        line = loss_ax.plot(epochs, [m["train_loss"] for m in metrics], "-o", label=f"{label} train")[0]
        loss_ax.plot(epochs, [m["test_loss"] for m in metrics], "--s", color=line.get_color(), label=f"{label} test")
        acc_ax.plot(epochs, [m["train_acc"] for m in metrics], "-o", color=line.get_color(), label=f"{label} train")
        acc_ax.plot(epochs, [m["test_acc"] for m in metrics], "--s", color=line.get_color(), label=f"{label} test")
    from matplotlib.ticker import MaxNLocator

    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if table:
        table_ax = fig.add_subplot(rows, 1, 2)
        table_ax.axis("off")
        t = table_ax.table(cellText=table[1:], colLabels=table[0], loc="center", cellLoc="left")
        t.auto_set_font_size(False)
        t.set_fontsize(9)
        t.scale(1, 1.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
