"""`python -m compare.convert SRC DST`: NiN weights from one format into another, both ways.

    python -m compare.convert nin.pt weights.safetensors          # the book's PyTorch state_dict -> portable
    python -m compare.convert weights.safetensors nin.msgpack     # -> the book's JAX (flax.linen) parameters
    python -m compare.convert weights.safetensors nin.onnx        # -> ONNX, for ONNX Runtime and others

Formats, from the file's extension, then from its contents:
  .safetensors      this project's portable weights (PyTorch names and layout; architecture, image size and
                    normalisation in the metadata): what both trainers, predict, evaluate and parity read
  .pt / .pth        a state_dict for the book's nn.Sequential: net.load_state_dict(torch.load(PATH))
  .msgpack          the book's flax.linen variables, flax.serialization.to_bytes / from_bytes(variables, data)
  .npz              the same as a flat archive keyed by '/'-joined paths (params/net/layers_0/layers_0/kernel)
  a folder          the same as an orbax checkpoint (orbax.checkpoint.StandardCheckpointer)
  .onnx             (out only) ONNX, float32 NCHW input with a dynamic batch axis, opset 18

The book's formats record no image size: --image-size says it (default 224, the book's); the portable file
and the ONNX file record it, and the architecture, which the others carry in their shapes. Conversion is a pure
function of dicts of arrays (compare/formats.py) with loud shape checks; round trips are bit-exact.
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path

import numpy as np

from compare import formats
from shared.arch import nin_spec
from shared.config import ModelConfig
from shared.errors import UserError, first_line, run_cli
from shared.files import atomic_write, check_writable, fresh_folder, path_kind, swap_in
from shared.weights import (
    State,
    canonical_to_flax,
    check_state,
    check_values,
    flax_to_canonical,
    load_portable,
    save_portable,
    saved_model_config,
    saved_normalize,
)

EXTENSIONS = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".msgpack": "msgpack", ".npz": "npz",
              ".onnx": "onnx"}
NAMES = {"safetensors": "portable weights", "torch": "the book's PyTorch state_dict", "msgpack": "the book's JAX "
         "parameters (msgpack)", "npz": "the book's JAX parameters (npz)", "orbax": "the book's JAX parameters "
         "(orbax checkpoint)", "onnx": "ONNX"}
EXPECTED = ("expected .safetensors, .pt/.pth (a state_dict), .msgpack, .npz or an orbax folder (flax.linen "
            "parameters)")
Loaded = tuple[State, ModelConfig, int | None, bool]  # canonical, architecture, recorded image size, normalize


def torch_to_flax(state: State, cfg: ModelConfig, image_size: int) -> State:
    """A torch NiN state_dict (numpy) -> flax.nnx parameter names and layout."""
    check_state(state, nin_spec(cfg, image_size), "the torch weights")
    return canonical_to_flax(state)


def flax_to_torch(state: State, cfg: ModelConfig, image_size: int) -> State:
    """flax.nnx parameters (flat names, numpy) -> a torch NiN state_dict (numpy)."""
    canonical = flax_to_canonical(state)
    check_state(canonical, nin_spec(cfg, image_size), "the flax weights")
    return canonical


def sniff(path: Path) -> str | None:
    """The format of a file without a known extension, from its first bytes."""
    head = path.read_bytes()[:16]
    if head[:4] == b"PK\x03\x04":
        import zipfile

        names = zipfile.ZipFile(path).namelist()
        return "npz" if all(n.endswith(".npy") for n in names) else "torch"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"
    if len(head) > 8 and int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
        return "msgpack"
    return None


def source_format(path: Path) -> str:
    kind = path_kind(path)
    if kind == "missing":
        raise UserError(f"{path} does not exist; give a weights file ({EXPECTED})")
    if kind == "a folder":
        if not any((path / name).exists() for name in ("_CHECKPOINT_METADATA", "_METADATA", "manifest.ocdbt")):
            raise UserError(f"{path} is a folder but not an orbax checkpoint; {EXPECTED}")
        return "orbax"
    if kind != "file":
        raise UserError(f"{path} is {kind}, not a weights file; {EXPECTED}")
    found = EXTENSIONS.get(path.suffix.lower()) or sniff(path)
    if found is None:
        raise UserError(f"cannot tell what {path} holds; {EXPECTED}")
    if found == "onnx":
        raise UserError(f"{path} is ONNX, which converts out only (ONNX holds a graph, not a NiN's parameters); "
                        f"convert from the file it was exported from")
    return found


def target_format(path: Path) -> str:
    if path.suffix.lower() in EXTENSIONS:
        return EXTENSIONS[path.suffix.lower()]
    if path.suffix == "" or path_kind(path) == "a folder":
        return "orbax"
    raise UserError(f"cannot tell which format to write from the name {path.name}; end it in .safetensors, .pt, "
                    f".pth, .msgpack, .npz or .onnx, or give a folder name (no extension) for an orbax checkpoint")


def load_torch_file(path: Path) -> dict[str, np.ndarray]:
    """A state_dict saved with torch.save, loaded without running pickled code (weights_only); what is not a
    plain state_dict is refused in this project's words, never with advice to unpickle it."""
    import pickle
    import re

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        wanted = re.search(r"GLOBAL ([\w.]+)", str(e))
        if wanted and wanted[1].startswith(("torch.nn.", "nin_torch.", "__main__.")):
            raise UserError(f"{path} holds a pickled model object, not a state_dict; save "
                            f"torch.save(net.state_dict(), PATH) and convert that") from None
        if not wanted:  # not a whole pickle of tensors: damaged, truncated, or of another program
            raise UserError(f"cannot read {path} as a torch state_dict (a file of torch.save): its pickle is damaged, "
                            f"truncated, or holds more than tensors") from None
        raise UserError(f"{path} is a pickle that is not a plain state_dict (it asks to import {wanted[1]}); it was "
                        f"not unpickled, since that could run code: give a file written by "
                        f"torch.save(net.state_dict(), PATH)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise UserError(f"cannot read {path} as a torch state_dict (a file of torch.save): "
                        f"{first_line(e)[:160]}") from None
    if isinstance(state, dict) and {"model", "optimizer", "progress"} <= set(state):
        raise UserError(f"{path} is a nin_torch training checkpoint; its run's weights.safetensors is already "
                        f"portable: use that (--init-from, --weights), or convert it")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state_dict (a dict of tensors); save torch.save(net.state_dict(), PATH)")
    tensors = {k: v.detach().cpu() for k, v in state.items()}
    if any(not v.is_floating_point() for v in tensors.values()):
        name = next(k for k, v in tensors.items() if not v.is_floating_point())
        raise UserError(f"{path}: {name} is {tensors[name].dtype}, not floating point; weights are float16, "
                        f"float32 or float64")
    return {k: v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy() for k, v in tensors.items()}


def read_jax_tree(path: Path, fmt: str) -> dict:
    try:
        if fmt == "msgpack":
            from flax import serialization

            tree = serialization.msgpack_restore(path.read_bytes())
        elif fmt == "npz":
            with np.load(path, allow_pickle=False) as archive:
                tree = formats.nested({key: archive[key] for key in archive.files})
        else:
            import orbax.checkpoint as ocp

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ocp.StandardCheckpointer().restore(path.resolve())
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 (msgpack, zipfile and orbax raise many kinds for a damaged file)
        raise UserError(f"cannot read {path} as {NAMES[fmt]}: {first_line(e)[:160]}") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path} holds a {type(tree).__name__}, not the tree of a flax.linen NiN's parameters")
    return tree


def load_source(path: Path, fmt: str, image_size: int) -> Loaded:
    """(canonical state, architecture, the image size the file records or None, normalize) of any source."""
    if fmt == "safetensors":
        state, metadata = load_portable(path)
        recorded = saved_model_config(metadata)
        if recorded is not None:
            check_state(state, nin_spec(recorded[0], recorded[1]), str(path))
            return state, recorded[0], recorded[1], bool(saved_normalize(metadata))
        if all(k.startswith("blocks.") for k in state):  # a plain dump of this project's names, no metadata
            return (*formats.book_torch_to_canonical(formats.canonical_to_book_torch(state), image_size),
                    None, False)
        return (*formats.book_torch_to_canonical(state, image_size), None, False)
    if fmt == "torch":
        state = load_torch_file(path)
        if all(k.startswith("blocks.") for k in state):  # this project's nin_torch state_dict
            state = formats.canonical_to_book_torch(state)
        return (*formats.book_torch_to_canonical(state, image_size), None, False)
    return (*formats.book_jax_to_canonical(read_jax_tree(path, fmt), image_size), None, False)


def write_target(path: Path, fmt: str, state: State, cfg: ModelConfig, image_size: int, normalize: bool,
                 source: str) -> list[str]:
    """Write `state` as `fmt`; returns the notes to print (what the outside model does differently)."""
    notes: list[str] = []
    if fmt in ("torch", "msgpack", "npz", "orbax"):
        notes = formats.fits_the_book(cfg, NAMES[fmt])
    if fmt == "safetensors":
        save_portable(path, state, cfg, image_size, normalize, framework=source)
    elif fmt == "torch":
        import torch

        buffer = io.BytesIO()
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                    formats.canonical_to_book_torch(state).items()}, buffer)
        atomic_write(path, buffer.getvalue())
    elif fmt == "onnx":
        from compare.to_onnx import export_torch

        atomic_write(path, export_torch(state, cfg, image_size, normalize))
    else:
        notes += [n for n in [formats.book_pooling_note(image_size)] if n]
        write_jax_tree(path, fmt, formats.canonical_to_book_jax(state, cfg))
    return notes


def write_jax_tree(path: Path, fmt: str, tree: dict) -> None:
    if fmt == "msgpack":
        from flax import serialization

        atomic_write(path, serialization.msgpack_serialize(tree))
    elif fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, **formats.flat_paths(tree))
        atomic_write(path, buffer.getvalue())
    else:
        import orbax.checkpoint as ocp

        if path_kind(path) == "a folder" and any(path.iterdir()) and not (path / "_CHECKPOINT_METADATA").exists():
            raise UserError(f"{path} is a folder that holds files other than an orbax checkpoint; choose another")
        fresh = fresh_folder(path)
        with warnings.catch_warnings(), ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:
            warnings.simplefilter("ignore")
            checkpointer.save(fresh.resolve(), args=ocp.args.StandardSave(tree))
        swap_in(fresh, path)


def convert(source: Path, target: Path, image_size: int | None) -> tuple[str, str, ModelConfig, int, list[str]]:
    folder = target.suffix.lower() not in EXTENSIONS and (target.suffix == "" or path_kind(target) == "a folder")
    check_writable(target / "_CHECKPOINT_METADATA" if folder else target)  # outputs first, before any work
    fmt_out = target_format(target)
    fmt_in = source_format(source)
    state, cfg, recorded, normalize = load_source(source, fmt_in, image_size or 224)
    if recorded is not None and image_size is not None and image_size != recorded:
        raise UserError(f"{source} records image size {recorded}; --image-size {image_size} would contradict it: "
                        f"leave it out")
    size = recorded or image_size or 224
    check_values(state, str(source))
    check_state(state, nin_spec(cfg, size), str(source))
    framework = {"safetensors": "portable", "torch": "torch (the book's nn.Sequential)"}.get(fmt_in,
                                                                                           "flax.linen (the book)")
    notes = write_target(target, fmt_out, state, cfg, size, normalize, framework)
    return fmt_in, fmt_out, cfg, size, notes


@run_cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m compare.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the weights to read")
    parser.add_argument("target", help="the file (or orbax folder) to write")
    parser.add_argument("--image-size", type=int, help="the image size the weights are for, where the source does "
                        "not record it (the book's formats); default 224, the book's")
    args = parser.parse_args(argv)
    if args.image_size is not None and args.image_size < 1:
        parser.error("--image-size must be >= 1")
    fmt_in, fmt_out, cfg, size, notes = convert(Path(args.source), Path(args.target), args.image_size)
    shape = (f"widths {','.join(map(str, cfg.widths))}, {cfg.num_1x1} x {cfg.mid_kernel}x{cfg.mid_kernel} mid "
             f"conv(s), {cfg.head} head" + (f", last width {cfg.last_width}" if cfg.last_width else ""))
    print(f"wrote {args.target} ({NAMES[fmt_out]}) from {NAMES[fmt_in]}: {shape}, {size} px")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
