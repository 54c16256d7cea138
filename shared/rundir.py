"""A run directory: config.json, metrics.jsonl, summary.json, curves.png, each written so a crash loses nothing
already written and leaves no half-written file."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path
from typing import Any

from shared.config import Config
from shared.errors import UserError
from shared.files import append_jsonl, atomic_write, read_jsonl

STEP_KEYS = ("step", "train_loss", "train_acc", "lr")  # steps.jsonl: one line per host sync (SYNC_EVERY steps)
METRIC_KEYS = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "examples_per_sec", "lr",
               "seconds")


LOCK = ".lock"
# What a launcher (experiments.run) puts in a run folder before it starts the trainer there: no run yet
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
        append_jsonl(self.metrics_path, {k: row[k] for k in METRIC_KEYS})

    def append_steps(self, row: dict[str, Any]) -> None:
        append_jsonl(self.steps_path, {k: row[k] for k in STEP_KEYS})

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.path / "summary.json", json.dumps(summary, indent=2))

    @property
    def curves_path(self) -> Path:
        return self.path / "curves.png"
