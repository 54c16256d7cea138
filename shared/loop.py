"""The training loop both trainers share: epochs in the shared order, progress, guards, outputs, resume.

A framework plugs in through `Backend` (nin_torch/train.py, nin_flax/train.py). The host reads the
device only every SYNC_EVERY steps (progress bar, divergence and collapse guards), never per step.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared import schedule
from shared.config import Config
from shared.data import batches_per_epoch, epoch_order
from shared.errors import UserError
from shared.plots import curves_png
from shared.rundir import RunDir

SYNC_EVERY = 20
COLLAPSE_STEPS = 100  # predictions of one class (or all-zero logits) for this long: warn
BLOWUP_FACTOR, BLOWUP_SYNCS = 10.0, 2  # a loss over 10x chance (ln K) for two host syncs in a row has diverged
EXIT_DIVERGED, EXIT_INTERRUPTED = 3, 130


class Backend(Protocol):
    framework: str
    device_name: str
    is_main: bool  # the one process (of several under torchrun) that prints and writes files
    param_count: int
    n_train: int
    n_test: int

    def train_step(self, indices: np.ndarray) -> Any: ...  # device (loss_sum, correct, collapsed)
    def eval_batch(self, indices: np.ndarray) -> Any: ...  # device (loss_sum, correct)
    def fetch(self, values: list[Any]) -> np.ndarray: ...  # host sync: [len(values), k] float64
    def lr_at(self, step: int) -> float: ...
    def save_checkpoint(self, path: Path, progress: dict) -> None: ...  # all processes call it
    def load_checkpoint(self, path: Path) -> dict: ...
    def save_weights(self, path: Path) -> None: ...


@dataclass
class Progress:
    """Where the run stands; saved in every checkpoint as plain JSON-safe numbers."""

    epoch: int = 0  # the epoch under way (0-based)
    batch: int = 0  # next batch within it
    step: int = 0  # optimizer steps done in total
    loss_sum: float = 0.0  # over this epoch so far
    correct: float = 0.0
    seen: int = 0
    train_seconds: float = 0.0  # this epoch so far
    total_seconds: float = 0.0


@dataclass
class Guards:
    """The watch kept at every host sync: a loss that is not finite or has blown up ends the run; predictions of
    one class for COLLAPSE_STEPS steps are warned about once. Saved in the checkpoint beside the progress."""

    collapsed_steps: int = 0
    warned_collapse: bool = False
    blowup_syncs: int = 0
    diverged: str = ""  # why the run diverged, in words

    def check(self, values: np.ndarray, batch: int, step: int, num_classes: int, warn) -> str | None:
        """The reason the run has diverged, or None; `warn()` is called once when the predictions collapse."""
        if not np.isfinite(values[:, 0]).all():
            return f"the loss is not finite near step {step}"
        loss, chance = values[:, 0].sum() / (len(values) * batch), math.log(num_classes)
        self.blowup_syncs = self.blowup_syncs + 1 if loss > BLOWUP_FACTOR * chance else 0
        if self.blowup_syncs >= BLOWUP_SYNCS:
            return (f"the training loss is {loss:.3g} at step {step}, over {BLOWUP_FACTOR:g}x chance "
                    f"(ln {num_classes} = {chance:.2f}) for {BLOWUP_SYNCS * SYNC_EVERY} steps")
        self.collapsed_steps = self.collapsed_steps + len(values) if (values[:, 2] >= 1).all() else 0
        if self.collapsed_steps >= COLLAPSE_STEPS and not self.warned_collapse:
            self.warned_collapse = True
            warn()
        return None


def checkpoint_state(p: Progress, guards: Guards) -> dict[str, Any]:
    """The progress and the guards as one dict of plain Python numbers, strings and bools (never numpy's)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in {**asdict(p), **asdict(guards)}.items()}


def from_checkpoint_state(state: dict[str, Any]) -> tuple[Progress, Guards]:
    pick = lambda cls: cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})  # noqa: E731
    return pick(Progress), pick(Guards)


class StopFlag:
    """Ctrl-C (or SIGTERM) asks the loop to stop after the current step; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))


def collapse_hint(cfg: Config) -> str:
    return (f"warning: the predictions have been one class (or the logits all zero) for {COLLAPSE_STEPS} steps: "
            f"the net is stuck at chance (loss ln 10 = 2.303, accuracy 10%)"
            + (", typically because the final ReLU before global pooling has zeroed the logits" if
               cfg.model.final_relu else "")
            + ". Try --init kaiming_normal, a lower --lr" + (", or --no-final-relu" if cfg.model.final_relu else ""))


def evaluate(backend: Backend, batch_size: int) -> tuple[float, float]:
    indices = np.arange(backend.n_test)
    results = [backend.eval_batch(indices[i:i + batch_size]) for i in range(0, backend.n_test, batch_size)]
    totals = backend.fetch(results).sum(axis=0)
    return totals[0] / backend.n_test, totals[1] / backend.n_test


def checkpoint_bytes(cfg: Config, param_count: int) -> int:
    """A generous estimate of one checkpoint on disk: the weights and the optimizer's slots in float32, with room
    for a second copy while the new one is written (and for the weights file at the end)."""
    slots = {"sgd": 0, "momentum": 1}.get(cfg.train.optimizer, 2)
    return int(4 * param_count * (1 + slots) * 2.2) + 2**20


def account(p: Progress, values: np.ndarray, batch: int) -> None:
    """Add synced step results (rows of loss_sum, correct, ...) to the epoch's running totals."""
    p.loss_sum += float(values[:, 0].sum())
    p.correct += float(values[:, 1].sum())
    p.seen += len(values) * batch


def log_sync(run: RunDir, backend: Backend, bar, p: Progress, values: np.ndarray, batch: int, elapsed: float) -> None:
    """One line of steps.jsonl per host sync, and the progress bar."""
    n = len(values)
    if backend.is_main:
        run.append_steps({"step": p.step, "train_loss": values[:, 0].sum() / (n * batch),
                          "train_acc": values[:, 1].sum() / (n * batch), "lr": backend.lr_at(p.step - 1)})
    bar.set_postfix(loss=f"{p.loss_sum / p.seen:.3f}", acc=f"{p.correct / p.seen:.3f}", ex_s=f"{p.seen / elapsed:.0f}")
    bar.update(n)


def run_epoch(backend: Backend, cfg: Config, run: RunDir, p: Progress, guards: Guards, total_steps: int,
              stop: StopFlag) -> str:
    """Train until the epoch ends, the step budget is spent, a guard stops the run, or a stop is asked."""
    batch, steps_per_epoch = cfg.data.batch_size, batches_per_epoch(backend.n_train, cfg.data.batch_size)
    order = epoch_order(cfg.train.seed, p.epoch, backend.n_train)
    bar = progress_bar(min(steps_per_epoch, p.batch + total_steps - p.step), p.batch, cfg.run.progress,
                       f"epoch {p.epoch + 1}/{cfg.train.epochs}")
    warn = lambda: bar.write(collapse_hint(cfg), file=sys.stderr)  # noqa: E731
    pending, start = [], time.perf_counter()
    try:
        while p.batch < steps_per_epoch and p.step < total_steps and not stop.requested:
            pending.append(backend.train_step(order[p.batch * batch:(p.batch + 1) * batch]))
            p.batch, p.step = p.batch + 1, p.step + 1
            if len(pending) < SYNC_EVERY and p.batch < steps_per_epoch and p.step < total_steps:
                continue
            values, pending = backend.fetch(pending), []
            reason = guards.check(values, batch, p.step, cfg.model.num_classes, warn)
            if reason is not None:
                guards.diverged = reason
                return "diverged"
            account(p, values, batch)
            log_sync(run, backend, bar, p, values, batch, p.train_seconds + time.perf_counter() - start)
        if pending:  # stopped between syncs: account for the steps already taken
            account(p, backend.fetch(pending), batch)
    finally:
        bar.close()
        p.train_seconds += time.perf_counter() - start
    return "interrupted" if stop.requested and p.batch < steps_per_epoch else "ok"


def end_epoch(backend: Backend, cfg: Config, run: RunDir, p: Progress, eval_start: float) -> None:
    test_loss, test_acc = evaluate(backend, cfg.data.batch_size)
    row = {"epoch": p.epoch + 1, "step": p.step, "train_loss": p.loss_sum / max(p.seen, 1),
           "train_acc": p.correct / max(p.seen, 1), "test_loss": test_loss, "test_acc": test_acc,
           "examples_per_sec": p.seen / max(p.train_seconds, 1e-9), "lr": backend.lr_at(max(p.step - 1, 0)),
           "seconds": p.total_seconds + time.perf_counter() - eval_start}
    if backend.is_main:
        run.append_metrics(row)
        print(f"epoch {row['epoch']}  loss {row['train_loss']:.3f}  train acc {row['train_acc']:.3f}  "
              f"test acc {row['test_acc']:.3f}  {row['examples_per_sec']:.1f} examples/sec on "
              f"{backend.device_name}", flush=True)


def train(backend: Backend, cfg: Config, run: RunDir) -> int:
    """Run (or resume) the whole training; returns the exit code (0, 3 diverged, 130 interrupted)."""
    steps_per_epoch = batches_per_epoch(backend.n_train, cfg.data.batch_size)
    total_steps = schedule.total_steps(cfg, backend.n_train)
    p, guards, main = Progress(), Guards(), backend.is_main
    if cfg.run.resume:
        p, guards = from_checkpoint_state(backend.load_checkpoint(run.checkpoint))
        if p.step > total_steps or p.epoch > cfg.train.epochs:
            raise UserError(f"--resume: the run in {run.path} has already taken {p.step} steps ({p.epoch} epochs); "
                            f"--epochs {cfg.train.epochs} / --max-steps {cfg.train.max_steps} would end it before "
                            f"that: leave them out or raise them")
        if main:
            run.keep_metrics_through(p.epoch, p.step)
            print(f"resuming {run.path} at epoch {p.epoch + 1}, batch {p.batch}, step {p.step}")
    run.check_space(checkpoint_bytes(cfg, backend.param_count))
    if main:
        run.write_config(cfg, backend.framework)
        print(f"{backend.framework}: NiN with {backend.param_count:,} params on {backend.device_name}, "
              f"{cfg.run.precision}; {backend.n_train} training examples, {steps_per_epoch} steps per epoch, "
              f"{total_steps} steps in all; writing {run.path}", flush=True)
    status, clock = "ok", time.perf_counter()
    with StopFlag() as stop:
        while p.epoch < cfg.train.epochs and p.step < total_steps:
            status = run_epoch(backend, cfg, run, p, guards, total_steps, stop)
            if status != "ok":
                break
            end_epoch(backend, cfg, run, p, clock)
            p = Progress(epoch=p.epoch + 1, step=p.step, total_seconds=p.total_seconds + time.perf_counter() - clock)
            clock = time.perf_counter()
            run.check_alive()
            run.check_space(checkpoint_bytes(cfg, backend.param_count))
            backend.save_checkpoint(run.checkpoint, checkpoint_state(p, guards))
            if main:
                curves = [(f"{backend.framework}, {cfg.data.image_size} px", run.read_metrics(), run.read_steps())]
                run.write("curves.png", curves_png(curves))
        if status == "interrupted":
            p.total_seconds += time.perf_counter() - clock
            run.check_alive()
            backend.save_checkpoint(run.checkpoint, checkpoint_state(p, guards))
    return finish(backend, cfg, run, p, guards, status)


def finish(backend: Backend, cfg: Config, run: RunDir, p: Progress, guards: Guards, status: str) -> int:
    code = {"ok": 0, "diverged": EXIT_DIVERGED, "interrupted": EXIT_INTERRUPTED}[status]
    if not backend.is_main:
        return code
    metrics = run.read_metrics()
    last = metrics[-1] if metrics else {}
    if status == "ok":
        run.check_alive()
        backend.save_weights(run.path / "weights.safetensors")
    summary = {"framework": backend.framework, "device": backend.device_name, "precision": cfg.run.precision,
               "param_count": backend.param_count, "epochs": len(metrics), "steps": p.step,
               **{k: last.get(k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")},
               "examples_per_sec": (sum(m["examples_per_sec"] for m in metrics) / len(metrics)) if metrics else None,
               "seconds": last.get("seconds"), "status": status}
    run.write_summary(summary)
    if status == "diverged":
        kept = (f"the last checkpoint, from before the divergence, is kept in {run.path}" if run.checkpoint.exists()
                else "no checkpoint was written (it diverged in its first epoch)")
        print(f"diverged: {guards.diverged} (lr {backend.lr_at(max(p.step - 1, 0)):.3g}); lower --lr, or add "
              f"--warmup-steps or --clip-grad-norm; {kept}", file=sys.stderr)
    elif status == "interrupted":
        print(f"interrupted at epoch {p.epoch + 1}, step {p.step}: checkpoint written; continue with "
              f"--resume --out {run.path}", file=sys.stderr)
    if status == "ok":
        print(f"done: test acc {summary['test_acc']:.4f} after {summary['epochs']} epochs; {run.path}")
    return code
