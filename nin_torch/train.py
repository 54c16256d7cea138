"""`python -m nin_torch.train`: train NiN on Fashion-MNIST with PyTorch. Twin of nin_flax/train.py; the
flags, the loop (shared.loop) and the output files are the same; the work is nin_torch/backend.py's.

Data-parallel: `torchrun --nproc_per_node=N -m nin_torch.train ...` (DistributedDataParallel; NCCL on GPUs,
gloo on the CPU). --batch-size stays the GLOBAL batch.
"""

from __future__ import annotations

import os
import sys

import torch.distributed as dist

from nin_torch.backend import CHECKPOINT, FRAMEWORK, TorchBackend
from shared.cli import parse_train_args
from shared.errors import UserError, run_cli
from shared.loop import train
from shared.rundir import RunDir


@run_cli
def main(argv: list[str] | None = None) -> int:
    cfg = parse_train_args(argv, FRAMEWORK)
    if cfg.run.devices is not None or cfg.run.coordinator is not None:
        raise UserError("--devices and --coordinator are nin_flax's; with torch start one process per device: "
                        "torchrun --nproc_per_node=N [--nnodes=M --rdzv-endpoint=HOST:PORT] -m nin_torch.train ...")
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if not main_rank:  # torchrun: rank 0 alone talks and writes
        cfg.run.progress = False
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    try:
        with RunDir(cfg.run.out, cfg.run.resume, CHECKPOINT, FRAMEWORK, main_rank) as run:
            code = train(TorchBackend(cfg), cfg, run)
        if dist.is_initialized():  # leave together: under load, gloo aborted a rank whose peer was still writing
            dist.barrier()
        return code
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
