"""`python -m bench.memory`: peak memory of one framework's real training or inference step, in a fresh process.

On a GPU: the device's peak allocation. On the CPU: the process's peak resident memory (VmHWM) after a few
steps, and its resident memory (VmRSS) just before the first step, once the framework, the model and the
dataset are loaded; the difference is what the steps themselves added (activations, gradients, optimizer
state, workspace), which is what compare.summary's analytic estimate counts beyond the weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from shared.cli import add_config_flags, config_from_args
from shared.config import ArgumentParser
from shared.errors import run_cli
from shared.files import atomic_write, check_writable, json_text

STEPS = 3


def _status_kib(key: str) -> int:
    lines = Path("/proc/self/status").read_text().splitlines()
    line = next(line for line in lines if line.startswith(key))
    return int(line.split()[1])


def measure(framework: str, kind: str, cfg) -> dict:
    from bench.benchmark import device_peak_memory
    from compare.backends import make_backend

    backend = make_backend(framework, cfg)
    batch = np.arange(cfg.data.batch_size)
    before = _status_kib("VmRSS") * 1024
    step = backend.train_step if kind == "train" else backend.eval_batch
    for _ in range(STEPS):
        backend.fetch([step(batch)])
    return {"framework": framework, "kind": kind, "device": backend.device_name,
            "image_size": cfg.data.image_size, "batch_size": cfg.data.batch_size,
            "rss_before_bytes": before, "peak_rss_bytes": _status_kib("VmHWM") * 1024,
            "device_peak_bytes": device_peak_memory(framework, backend)}


@run_cli
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--framework", choices=("torch", "flax"), required=True)
    parser.add_argument("--kind", choices=("train", "infer"), required=True)
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    if args.json:
        check_writable(Path(args.json))
    cfg = config_from_args(args)
    cfg.data.train_limit = cfg.data.test_limit = max(cfg.data.batch_size, 1024)
    result = measure(args.framework, args.kind, cfg)
    print(json.dumps(result))
    if args.json:
        atomic_write(Path(args.json), json_text(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
