"""`python -m nin_flax.train`: train NiN on Fashion-MNIST with Flax (nnx). Twin of nin_torch/train.py; the
flags, the loop (shared.loop) and the output files are the same; the work is nin_flax/backend.py's.

Data-parallel without a launcher: every visible device (or --devices N of them) forms a 1-D mesh.
--batch-size stays the GLOBAL batch.
"""

from __future__ import annotations

import sys

from nin_flax.backend import CHECKPOINT, FRAMEWORK, FlaxBackend
from shared.cli import parse_train_args
from shared.errors import run_cli
from shared.loop import train
from shared.rundir import RunDir


@run_cli
def main(argv: list[str] | None = None) -> int:
    cfg = parse_train_args(argv, FRAMEWORK)
    with RunDir(cfg.run.out, cfg.run.resume, CHECKPOINT, FRAMEWORK) as run:
        return train(FlaxBackend(cfg), cfg, run)


if __name__ == "__main__":
    sys.exit(main())
