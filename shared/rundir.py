"""A run directory: config.json, metrics.jsonl, summary.json, curves.png, each written so a crash loses nothing
already written and leaves no half-written file."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from shared.config import Config
from shared.errors import UserError
from shared.files import append_jsonl, atomic_write, json_text, open_own, path_kind, read_jsonl, remove_own

STEP_KEYS = ("step", "train_loss", "train_acc", "lr")  # steps.jsonl: one line per host sync (SYNC_EVERY steps)
METRIC_KEYS = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "examples_per_sec", "lr",
               "seconds")


LOCK = ".lock"
# What a launcher (experiments.run) puts in a run folder before it starts the trainer there: no run yet
LAUNCHER_FILES = {"command.txt", "train.log"}
STALE = (".*.tmp", ".*.new", ".*.old")  # what a write killed half-way leaves (atomic_write, swap_in)


def take_lock(folder: Path, holder: str = "another trainer"):
    """The folder's lock (a file this process opens itself, never through a symbolic link), held until the
    returned file is closed; refused while `holder` holds it."""
    lock = open_own(folder / LOCK)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise UserError(f"{holder} is running in {folder} right now; wait for it to end or choose another "
                        f"folder") from None
    return lock


class RunFolderLost(UserError):
    """The run folder was removed, replaced or made unwritable while the run was writing it."""


class RunDir:
    """A run folder that owns itself: refused when it holds anything but this framework's run to --resume,
    locked for the run's life by a lock file it creates itself (never through a symbolic link; a second trainer
    on it is refused), cleared of the temporary files a killed write left, removed again if the run never
    started, and watched: a run whose folder disappears stops with an error instead of writing a new one.
    Use as a context manager; `main` is False on the processes that do not write (torchrun's other ranks)."""

    def __init__(self, path: str | Path, resume: bool, checkpoint_name: str, framework: str = "",
                 main: bool = True):
        self.path = Path(path)
        self.checkpoint = self.path / checkpoint_name
        self.framework, self.main, self.resume, self._lock, self._created = framework, main, resume, None, False
        self._identity: tuple[int, int] | None = None
        if main:
            self.check_contents()

    def check_contents(self) -> None:
        kind = path_kind(self.path)
        if kind == "below a file":
            raise UserError(f"cannot write the run folder {self.path}: a part of it is a file; choose another --out")
        if kind not in ("missing", "a folder"):
            raise UserError(f"--out {self.path} is {'a file' if kind == 'file' else kind}; give a folder for the run")
        ignored = {LOCK, *LAUNCHER_FILES}
        contents = sorted(p.name for p in self.path.iterdir() if p.name not in ignored and not self._stale(p)) \
            if self.path.is_dir() else []
        if self.resume and not self.checkpoint.exists():
            held = f"holds {self.describe(contents)} but" if contents else "has"
            raise UserError(f"--resume: {self.path} {held} no {self.framework or 'training'} checkpoint to resume "
                            f"from; start without --resume, or give the --out of an interrupted run")
        if not self.resume and contents:
            hint = "pass --resume to continue it" if self.checkpoint.exists() else "choose another --out"
            raise UserError(f"--out {self.path} already holds {self.describe(contents)}; {hint}")

    @staticmethod
    def _stale(p: Path) -> bool:
        return any(p.match(pattern) for pattern in STALE)

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
        except OSError as e:
            raise UserError(f"cannot write the run folder {self.path} ({e.strerror}); choose another --out") from None
        try:
            self._lock = take_lock(self.path)
        except UserError:
            if self._created:
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        try:
            self.check_contents()  # again, under the lock: nobody changes the folder from here on
        except UserError:
            self.__exit__()
            raise
        for pattern in STALE:  # left by a write that was killed half-way; nothing of a whole run
            for p in self.path.glob(pattern):
                remove_own(p)
        info = os.stat(self.path)
        self._identity = (info.st_dev, info.st_ino)
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is None:
            return
        if self._created and self.alive() and not (self.path / "config.json").exists():  # never started
            shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()
        self._lock = None

    def alive(self) -> bool:
        """Whether the folder the run locked is still there (not removed, not replaced by another)."""
        try:
            info = os.stat(self.path)
        except OSError:
            return False
        return self._identity is None or (info.st_dev, info.st_ino) == self._identity

    def check_space(self, need_bytes: int) -> None:
        """Refuse a write that cannot fit before it starts, rather than leave it half-done on a full disk."""
        if not self.main:
            return
        free = shutil.disk_usage(self.path).free
        if free < need_bytes:
            raise UserError(f"the run folder {self.path} has {free / 2**20:.1f} MiB free, and this run's checkpoint "
                            f"needs about {need_bytes / 2**20:.1f} MiB; free some space or choose another --out")

    def check_alive(self) -> None:
        """Before every write: a run whose folder was removed or replaced stops, writing nothing elsewhere."""
        if self.main and not self.alive():
            raise RunFolderLost(f"the run folder {self.path} was removed or replaced while the run was writing it; "
                                f"the run stopped and wrote nothing more (start it again with a new --out)")

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write(self, name: str, data: str | bytes) -> None:
        """A whole file of the run folder, atomically; never into a folder that is no longer the run's."""
        self.check_alive()
        atomic_write(self.path / name, data, make_parents=False, own=True)

    def write_config(self, cfg: Config, framework: str) -> None:
        """The first write of a run: the folder appears only once the run has really started."""
        self.write("config.json", json.dumps({"framework": framework, **cfg.to_dict()}, indent=2))

    @property
    def steps_path(self) -> Path:
        return self.path / "steps.jsonl"

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def read_steps(self) -> list[dict[str, Any]]:
        return read_jsonl(self.steps_path)

    def keep_metrics_through(self, epoch: int, step: int) -> None:
        """On resume: drop any epoch (and step line) the checkpoint does not include (written after it)."""
        for path, key, last in ((self.metrics_path, "epoch", epoch), (self.steps_path, "step", step)):
            kept = [m for m in read_jsonl(path) if m[key] <= last]
            self.write(path.name, "".join(json.dumps(m) + "\n" for m in kept))

    def append_metrics(self, row: dict[str, Any]) -> None:
        self.check_alive()
        append_jsonl(self.metrics_path, {k: row[k] for k in METRIC_KEYS})

    def append_steps(self, row: dict[str, Any]) -> None:
        self.check_alive()
        append_jsonl(self.steps_path, {k: row[k] for k in STEP_KEYS})

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.write("summary.json", json_text(summary, indent=2))
