"""`python -m experiments.run`: the grid behind docs/RESULTS.md, through both trainers.

Every cell of experiments/grid.py runs as the real trainer command, once per framework and seed, into
results/<protocol>/<cell>/<framework>-seed<k>/ (its command in command.txt, its output in train.log).
A run that finished (status ok or diverged) is skipped, an interrupted one resumed, so the grid can be
stopped with Ctrl-C and started again. Checkpoints and weights are deleted once a run has finished (the
best cell keeps its weights.safetensors). Then docs/RESULTS.md and its figures are rebuilt from the run
directories alone (`--report-only` does only that).
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.grid import (
    EXPERIMENTS,
    FRAMEWORKS,
    NOISE_FLOOR_FLAGS,
    PROTOCOLS,
    Cell,
    Protocol,
    all_cells,
    cell_config,
    seed_count,
)
from shared.config import ArgumentParser
from shared.errors import UserError, run_cli
from shared.files import atomic_write, check_writable, open_own, remove_own
from shared.rundir import LOCK, take_lock

RESULTS = Path("results")
DONE = ("ok", "diverged")  # a diverged run is a result (the lr experiment looks for them)
CHECKPOINTS = ("checkpoint.pt", "checkpoint")


def run_path(root: Path, protocol: str, cell: str, framework: str, seed: int) -> Path:
    return root / protocol / cell / f"{framework}-seed{seed}"


def run_status(path: Path) -> str | None:
    """How the run in `path` ended: None if it has not (a summary torn by a crash counts as not ended)."""
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return summary.get("status") if isinstance(summary, dict) else None


def train_command(protocol: Protocol, cell: Cell, framework: str, seed: int, out: Path) -> list[str]:
    flags = [*protocol.base, *cell.flags, "--seed", str(seed), "--no-progress", "--out", str(out)]
    if cell.same_init:
        flags += ["--init-from", str(out.parent / f"init-seed{seed}.safetensors")]
    return [sys.executable, "-m", f"nin_{framework}.train", *flags]


def write_same_init(protocol: Protocol, cell: Cell, seed: int, path: Path) -> None:
    """One init draw (torch's RNG) of the cell's network, for both frameworks' --init-from."""
    from nin_torch.model import build_model
    from nin_torch.weights import save

    cfg = cell_config(protocol, cell)
    save(build_model(cfg.model, cfg.data.image_size, seed), path, cfg.model, cfg.data.image_size)


def tidy(path: Path, keep_weights: bool) -> None:
    for name in CHECKPOINTS:
        remove_own(path / name)
    if not keep_weights:
        remove_own(path / "weights.safetensors")


def finalize(protocol: Protocol, cell: Cell, framework: str, out: Path) -> None:
    """A finished run's last work: its evaluation (evaluate.json, confusion.png; the trained protocol's dead
    classes), then its checkpoints and (unless kept) its weights go. Safe to repeat after an interruption."""
    weights = out / "weights.safetensors"
    if protocol.evaluate_runs and weights.exists() and not (out / "evaluate.json").exists():
        subprocess.run([sys.executable, "-m", "compare.evaluate", str(weights), "--framework", framework,
                        "--json", str(out / "evaluate.json"), "--out", str(out)], capture_output=True)
    tidy(out, cell.keep_weights)


def run_one(protocol: Protocol, cell: Cell, framework: str, seed: int, root: Path) -> str:
    """Run (or resume) one training; returns its status, 'skipped' if it had finished, or 'failed'."""
    out = run_path(root, protocol.name, cell.name, framework, seed)
    status = run_status(out)
    if status in DONE:
        finalize(protocol, cell, framework, out)
        return "skipped"
    resume = any((out / name).exists() for name in CHECKPOINTS)
    out.mkdir(parents=True, exist_ok=True)
    with take_lock(out, "a trainer") as lock:  # nothing in the folder changes while another holds it
        if not resume:  # died before its first checkpoint: start again
            for stale in out.iterdir():
                if stale.name != LOCK:
                    remove_own(stale)
        if cell.same_init and not (init := out.parent / f"init-seed{seed}.safetensors").exists():
            write_same_init(protocol, cell, seed, init)
        command = train_command(protocol, cell, framework, seed, out)
        atomic_write(out / "command.txt", shlex.join(["python", *command[1:]]) + "\n", own=True)
        log = open_own(out / "train.log")
        lock.close()  # the trainer takes it over
    command += ["--resume"] if resume else []
    # Ctrl-C reaches the trainer too (same process group): it checkpoints and exits 130, and only then does the
    # grid stop; a Python handler, unlike SIG_IGN, is not inherited by the child.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        with log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    finally:
        signal.signal(signal.SIGINT, previous)
    if code == 130:
        raise KeyboardInterrupt
    status = run_status(out)
    if status in DONE:
        finalize(protocol, cell, framework, out)
        return status
    return "failed"


def run_extras(protocol: Protocol, root: Path) -> list[str]:
    """The non-training measurements (JSON files in extras/): the K-step parity drift, the noise floor, peak
    memory, and the per-class accuracy and dead classes of the runs that keep their weights."""
    extras = root / protocol.name / "extras"
    jobs = {"parity-drift.json": ["compare.parity", "--preset", "cpu", *protocol.parity_flags],
            "noise-floor.json": ["compare.noise_floor", *NOISE_FLOOR_FLAGS, "--no-progress"]}
    for size in protocol.memory_sizes:
        for framework in FRAMEWORKS:
            for kind in ("train", "infer"):
                jobs[f"memory-{framework}-{kind}-{size}.json"] = [
                    "bench.memory", "--framework", framework, "--kind", kind, *protocol.base,
                    "--image-size", str(size), "--batch-size", str(protocol.memory_batch)]
    for cell in (c for c in all_cells(protocol) if c.keep_weights):
        for framework in FRAMEWORKS:
            weights = run_path(root, protocol.name, cell.name, framework, 0) / "weights.safetensors"
            if weights.exists():
                jobs[f"classes-{cell.name}-{framework}.json"] = [
                    "compare.evaluate", str(weights), "--framework", "torch",
                    "--out", str(extras / f"confusion-{cell.name}-{framework}")]
    failed = []
    for name, args in jobs.items():
        path = extras / name
        if path.exists():
            continue
        extras.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", *args, "--json", str(path)]
        started = time.perf_counter()
        code = subprocess.run(command, capture_output=True, text=True).returncode
        print(f"  extras/{name}: {'ok' if path.exists() else f'failed (exit {code})'} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        if not path.exists():
            failed.append(name)
    return failed


def run_grid(protocol: Protocol, only: str | None, seeds: int | None, root: Path) -> list[str]:
    (root / protocol.name).mkdir(parents=True, exist_ok=True)
    with take_lock(root / protocol.name, f"another `python -m experiments.run --protocol {protocol.name}`"):
        return run_jobs(protocol, only, seeds, root)


def run_jobs(protocol: Protocol, only: str | None, seeds: int | None, root: Path) -> list[str]:
    jobs = [(cell, seed, fw) for cell in all_cells(protocol, only)
            for seed in range(seed_count(cell, protocol, seeds)) for fw in FRAMEWORKS]
    failed, ran, started, stopped = [], 0, time.perf_counter(), False
    print(f"{protocol.name} protocol: {len(jobs)} training runs under {root / protocol.name}", flush=True)
    try:
        for n, (cell, seed, fw) in enumerate(jobs, 1):
            t0 = time.perf_counter()
            status = run_one(protocol, cell, fw, seed, root)
            if status != "skipped":
                ran += 1
                summary = run_path(root, protocol.name, cell.name, fw, seed) / "summary.json"
                acc = json.loads(summary.read_text()).get("test_acc") if summary.exists() else None
                print(f"[{n}/{len(jobs)}] {cell.name} {fw} seed {seed}: {status}"
                      + (f", test acc {acc:.4f}" if acc is not None else "")
                      + f" ({time.perf_counter() - t0:.0f} s; {(time.perf_counter() - started) / 60:.1f} min so far)",
                      flush=True)
            if status == "failed":
                failed.append(f"{cell.name}/{fw}-seed{seed}")
        if protocol.extras and only in (None, "frameworks", "resources", "best"):
            failed += run_extras(protocol, root)
    except KeyboardInterrupt:
        stopped = True
        raise
    finally:  # also on Ctrl-C: the wall time spent is part of the grid's cost
        minutes = (time.perf_counter() - started) / 60
        print(f"grid {'stopped' if stopped else 'done'} after {minutes:.1f} min", flush=True)
        with open_own(root / protocol.name / "grid.jsonl") as log:
            log.write(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "only": only, "seeds": seeds,
                                  "runs": len(jobs), "ran": ran, "failed": len(failed), "stopped": stopped,
                                  "minutes": minutes}) + "\n")
    return failed


@run_cli
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m experiments.run", description=__doc__)
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="cpu",
                        help="cpu: 300-step cells sized for a 2-core CPU (minutes each); trained: every cell trained "
                             "to the end of its schedule on the full data (hours on 2 cores); gpu: the book's 224 px "
                             "setting")
    parser.add_argument("--only", choices=EXPERIMENTS, help="run the cells of this experiment only")
    parser.add_argument("--seeds", type=int, help="seeds per cell (default: the protocol's; init uses at least 5)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild docs/RESULTS.md and its figures")
    parser.add_argument("--results", type=Path, default=RESULTS, help="root of the run directories (default results)")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where RESULTS.md goes (default docs)")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        raise UserError(f"--seeds must be >= 1 (got {args.seeds})")
    check_writable(args.docs / "RESULTS.md")
    if args.report_only and not any(args.results.glob("*/*/*/summary.json")):
        raise UserError(f"--report-only: {args.results} holds no runs (no <protocol>/<cell>/<run>/summary.json); "
                        f"give the --results folder the grid wrote")
    try:
        failed = [] if args.report_only else run_grid(PROTOCOLS[args.protocol], args.only, args.seeds, args.results)
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept and the interrupted one checkpointed; run the same command "
              "again to continue", file=sys.stderr)
        return 130
    from experiments.doc import write_results

    path = write_results(args.results, args.docs)
    print(f"wrote {path}")
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}; see their train.log", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
