"""`python -m nin_flax.train`: train NiN on Fashion-MNIST with Flax (nnx). Twin of nin_torch/train.py; the
flags, the loop (shared.loop) and the output files are the same; the work is nin_flax/backend.py's.

Data-parallel without a launcher: every visible device (or --devices N of them) forms a 1-D mesh.
Several processes (hosts): --coordinator HOST:PORT --num-processes N --process-id I in each (or --coordinator
auto inside a cluster job); the mesh then spans every process's devices. --batch-size stays the GLOBAL batch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax

from nin_flax.backend import CHECKPOINT, FRAMEWORK, FlaxBackend
from nin_flax.runtime import join_processes
from shared.cli import parse_train_args
from shared.errors import run_cli
from shared.files import recover_folder
from shared.loop import train
from shared.rundir import RunDir
from shared.runtime import keep_freed_memory


@run_cli
def main(argv: list[str] | None = None) -> int:
    cfg = parse_train_args(argv, FRAMEWORK)
    keep_freed_memory()  # before jax's first call starts XLA's threads (FlaxBackend would be too late here)
    join_processes(cfg.run.coordinator, cfg.run.num_processes, cfg.run.process_id)
    main_process = jax.process_index() == 0
    if not main_process:  # process 0 alone talks and writes
        cfg.run.progress = False
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    if main_process:  # a crash between the checkpoint folders' swap leaves the previous one aside
        recover_folder(Path(cfg.run.out) / CHECKPOINT)
    with RunDir(cfg.run.out, cfg.run.resume, CHECKPOINT, FRAMEWORK, main_process) as run:
        return train(FlaxBackend(cfg), cfg, run)


if __name__ == "__main__":
    sys.exit(main())
