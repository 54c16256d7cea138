"""`python -m compare.init_weights OUT.safetensors`: a config's initial weights as a portable file.

Both trainers draw their init from the same law (--init) but each from its own RNG; to start torch and flax
from the very same weights, write one draw here and give it to both with --init-from:

    python -m compare.init_weights --preset cpu runs/init.safetensors
    python -m nin_torch.train --preset cpu --init-from runs/init.safetensors
    python -m nin_flax.train  --preset cpu --init-from runs/init.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.cli import add_config_flags, config_from_args
from shared.config import ArgumentParser
from shared.errors import run_cli
from shared.files import check_writable


@run_cli
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m compare.init_weights", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the weights.safetensors to write")
    parser.add_argument("--framework", choices=("torch", "flax"), default="torch", help="whose RNG draws the init")
    add_config_flags(parser, sections=("model", "data", "train"))
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    out = Path(args.out)
    check_writable(out)
    size, seed = cfg.data.image_size, cfg.train.seed
    if args.framework == "torch":
        from nin_torch import model, weights
    else:
        from nin_flax import model, weights
    weights.save(model.build_model(cfg.model, size, seed), out, cfg.model, size, cfg.data.normalize)
    print(f"wrote {out}: {args.framework}'s {cfg.model.init} init, seed {seed}, for {size} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
