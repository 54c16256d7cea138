"""Weight conversion between the frameworks, as pure functions over dicts of arrays, and the d2l reader.

    python -m compare.convert d2l_nin.pt weights.safetensors   # a d2l nn.Sequential state_dict -> portable

torch <-> flax goes through the canonical (PyTorch) layout of shared.weights: OIHW <-> HWIO for conv
kernels, (out, in) <-> (in, out) for the fc head, with loud shape checks against the architecture.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from shared.arch import nin_spec
from shared.config import ModelConfig
from shared.errors import UserError, run_cli
from shared.files import check_writable
from shared.weights import State, canonical_to_flax, check_state, flax_to_canonical, save_portable

D2L_KEY = re.compile(r"^(\d+)\.(\d+)\.(weight|bias)$")


def torch_to_flax(state: State, cfg: ModelConfig, image_size: int) -> State:
    """A torch NiN state_dict (numpy) -> flax.nnx parameter names and layout."""
    check_state(state, nin_spec(cfg, image_size), "the torch weights")
    return canonical_to_flax(state)


def flax_to_torch(state: State, cfg: ModelConfig, image_size: int) -> State:
    """flax.nnx parameters (flat names, numpy) -> a torch NiN state_dict (numpy)."""
    canonical = flax_to_canonical(state)
    check_state(canonical, nin_spec(cfg, image_size), "the flax weights")
    return canonical


def d2l_to_canonical(state: dict[str, np.ndarray], image_size: int = 224) -> tuple[State, ModelConfig]:
    """A d2l NiN state_dict (nn.Sequential of nin_blocks: `0.0.weight`, `0.2.weight`, `2.0.weight`, ...)
    -> (canonical state, the ModelConfig it implies). Blocks and convs are taken in index order."""
    blocks: dict[int, dict[int, dict[str, np.ndarray]]] = {}
    for key, array in state.items():
        match = D2L_KEY.match(key)
        if not match:
            raise UserError(f"'{key}' is not a d2l NiN parameter name (expected like 0.0.weight)")
        top, inner, kind = int(match[1]), int(match[2]), match[3]
        blocks.setdefault(top, {}).setdefault(inner, {})[kind] = np.asarray(array, dtype=np.float32)
    if len(blocks) != 4:
        raise UserError(f"a d2l NiN has 4 nin_blocks with weights, this state_dict has {len(blocks)}")
    canonical: State = {}
    convs_per_block = set()
    for b, top in enumerate(sorted(blocks)):
        convs = blocks[top]
        convs_per_block.add(len(convs))
        for c, inner in enumerate(sorted(convs)):
            for kind, array in convs[inner].items():
                canonical[f"blocks.{b}.conv{c}.{kind}"] = array
    if len(convs_per_block) != 1:
        raise UserError("the d2l nin_blocks have different numbers of convs; this NiN needs the same in each")
    num_1x1 = convs_per_block.pop() - 1
    first = [canonical[f"blocks.{b}.conv0.weight"] for b in range(4)]
    mid_kernel = canonical["blocks.0.conv1.weight"].shape[-1] if num_1x1 else 1
    last = canonical[f"blocks.3.conv{num_1x1}.weight"]
    cfg = ModelConfig(in_channels=first[0].shape[1], num_classes=last.shape[0],
                      widths=tuple(int(w.shape[0]) for w in first[:3]), last_width=int(first[3].shape[0]),
                      num_1x1=num_1x1, mid_kernel=int(mid_kernel))
    if cfg.last_width == cfg.num_classes:
        cfg.last_width = None
    check_state(canonical, nin_spec(cfg, image_size), "the d2l state_dict")
    return canonical, cfg


def load_torch_file(path: str | Path) -> dict[str, np.ndarray]:
    """A state_dict saved with torch.save, loaded without running pickled code (weights_only)."""
    import pickle

    import torch

    if not Path(path).is_file():
        raise UserError(f"{path} does not exist; give a file written by torch.save(net.state_dict(), ...)")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # a pickled class: the whole module, not its state_dict
            raise UserError(f"{path} holds a pickled model object, not a state_dict; save "
                            f"torch.save(net.state_dict(), PATH) and convert that") from None
        raise UserError(f"cannot read {path} as a torch state_dict ({str(e).splitlines()[0]})") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise UserError(f"cannot read {path} as a torch state_dict ({str(e).splitlines()[0]})") from None
    if isinstance(state, dict) and {"model", "optimizer", "progress"} <= set(state):
        raise UserError(f"{path} is a nin_torch training checkpoint; its run's weights.safetensors is already "
                        f"portable: use that (--init-from, --weights)")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state_dict (a dict of tensors); save torch.save(net.state_dict(), PATH)")
    return {k: v.detach().float().numpy() for k, v in state.items()}


@run_cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m compare.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a d2l NiN state_dict saved with torch.save (.pt / .pth)")
    parser.add_argument("target", help="the portable weights.safetensors to write")
    parser.add_argument("--image-size", type=int, default=224, help="image size recorded in the file")
    args = parser.parse_args(argv)
    check_writable(Path(args.target))
    state, cfg = d2l_to_canonical(load_torch_file(args.source), args.image_size)
    save_portable(args.target, state, cfg, args.image_size, False, framework="torch (d2l nn.Sequential)")
    print(f"wrote {args.target}: {len(state)} tensors, num_1x1={cfg.num_1x1}, widths={cfg.widths}")


if __name__ == "__main__":
    main()
