"""A run directory: config.json, metrics.jsonl, summary.json, curves.png, each written so a crash loses nothing
already written and leaves no half-written file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shared.config import Config
from shared.errors import UserError

STEP_KEYS = ("step", "train_loss", "train_acc", "lr")  # steps.jsonl: one line per host sync (SYNC_EVERY steps)
METRIC_KEYS = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "examples_per_sec", "lr",
               "seconds")


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would differ from the appended files' mode
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
    """The rows of a JSON-lines file; a torn last line (a crash mid-append) is dropped, any other bad line is
    a damaged file."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 1:
                raise UserError(f"{path} is damaged (line {i + 1} is not JSON); start a new --out") from None
    return rows


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


LOCK = ".lock"
# What a launcher (compare.experiments) puts in a run folder before it starts the trainer there: no run yet
LAUNCHER_FILES = {"command.txt", "train.log"}


class RunDir:
    """A run folder that owns itself: refused when it holds anything but this framework's run to --resume,
    locked for the run's life (a second trainer on it is refused), removed again if the run never started.
    Use as a context manager; `main` is False on the processes that do not write (torchrun's other ranks)."""

    def __init__(self, path: str | Path, resume: bool, checkpoint_name: str, framework: str = "",
                 main: bool = True):
        self.path = Path(path)
        self.checkpoint = self.path / checkpoint_name
        self.framework, self.main, self._lock, self._created = framework, main, None, False
        if not main:
            return
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} is a file; give a folder for the run")
        previous = self.path / f".{checkpoint_name}.old"  # a crash between swapping checkpoint folders
        if previous.exists() and not self.checkpoint.exists():
            previous.rename(self.checkpoint)
        ignored = {LOCK, *LAUNCHER_FILES}
        contents = sorted(p.name for p in self.path.iterdir() if p.name not in ignored) if self.path.is_dir() else []
        if resume and not self.checkpoint.exists():
            held = f"holds {self.describe(contents)} but" if contents else "has"
            raise UserError(f"--resume: {self.path} {held} no {framework or 'training'} checkpoint to resume from; "
                            f"start without --resume, or give the --out of an interrupted run")
        if not resume and contents:
            hint = "pass --resume to continue it" if self.checkpoint.exists() else "choose another --out"
            raise UserError(f"--out {self.path} already holds {self.describe(contents)}; {hint}")

    def describe(self, contents: list[str]) -> str:
        """What a non-empty folder holds, in words: whose run, how it ended; or the files."""
        try:
            framework = json.loads((self.path / "config.json").read_text())["framework"]
        except (OSError, ValueError, KeyError, TypeError):
            shown = ", ".join(contents[:4]) + (", ..." if len(contents) > 4 else "")
            return f"files of no run ({shown})"
        try:
            ended = f" that ended '{json.loads((self.path / 'summary.json').read_text())['status']}'"
        except (OSError, ValueError, KeyError, TypeError):
            ended = " that has not finished"
        return f"a {framework} run{ended}"

    def __enter__(self) -> RunDir:
        if not self.main:
            return self
        import fcntl

        try:
            self._created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.path / LOCK, "a")  # noqa: SIM115 (held for the run's life)
        except OSError as e:
            raise UserError(f"cannot write the run folder {self.path} ({e.strerror}); choose another --out") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise UserError(f"another trainer is running in {self.path} right now; wait for it to end or choose "
                            f"another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is None:
            return
        if self._created and not (self.path / "config.json").exists():  # the run never started: leave nothing
            shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()

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
