"""NiN as ONNX, and ONNX Runtime as a third referee of the port.

The export is torch's (`torch.onnx.export(..., dynamo=True)`, through onnxscript) of the model in eval mode:
input `image`, float32 NCHW [N, 1, S, S] (N dynamic; the picture already resized to the S px the weights were
trained at, in [0, 1], normalised if the weights say so), output `logits` [N, 10], opset OPSET. The
architecture and preprocessing go into the file's metadata_props. flax's export (jax2onnx) is optional: see
`export_flax`.

ONNX Runtime runs it with its graph optimisations off, so that what is checked is what was exported (its
default optimiser silently drops a Dropout exported in training mode, which would make a wrong export look
right); `check_graph` refuses a graph that still holds a Dropout in training mode.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from shared.config import Config, ModelConfig
from shared.data import CLASS_NAMES
from shared.errors import UserError
from shared.weights import FORMAT, State

OPSET = 18


def _quiet():
    """The exporters print progress and warnings of their own; the tools speak for themselves."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    import warnings

    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("torch.onnx", "onnxscript", "jax2onnx", "onnx_ir"):
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.CRITICAL)
    return stack


def metadata(cfg: ModelConfig, image_size: int, normalize: bool, framework: str) -> dict[str, str]:
    return {"format": FORMAT, "framework": framework, "image_size": str(image_size), "normalize": json.dumps(normalize),
            "model_config": json.dumps(Config(model=cfg).to_dict()["model"], sort_keys=True),
            "input": f"image: float32 NCHW [N, 1, {image_size}, {image_size}], in [0, 1]"
                     + (", normalised (x - 0.2860) / 0.3530" if normalize else ""),
            "classes": json.dumps(list(CLASS_NAMES))}


def export_torch(state: State, cfg: ModelConfig, image_size: int, normalize: bool) -> bytes:
    """The ONNX bytes of the torch NiN holding `state` (canonical), exported in eval mode."""
    import torch

    from nin_torch.model import build_model
    from nin_torch.weights import load_state

    model = build_model(cfg, image_size)
    load_state(model, state)
    model.eval()
    example = torch.zeros(2, cfg.in_channels, image_size, image_size)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET, input_names=["image"],
                                    output_names=["logits"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    proto = program.model_proto
    return finish(proto, metadata(cfg, image_size, normalize, "torch"))


def flax_export_available() -> bool:
    """jax2onnx is optional: its metadata pins orbax-checkpoint below this project's, so `make onnx-flax` installs
    it without its declared dependencies (what it needs at import time, onnx and onnx-ir, this project already
    depends on)."""
    try:
        with _quiet():
            import jax2onnx  # noqa: F401
    except ImportError:
        return False
    return True


def export_flax(state: State, cfg: ModelConfig, image_size: int, normalize: bool) -> bytes:
    """The ONNX bytes of the flax NiN holding `state`, through jax2onnx, with the same NCHW input as torch's.
    The pool is XLA's (`nn.max_pool`): the CPU kernel of nin_flax.kernels is a training speed-up that ONNX
    Runtime could not run (a raw 4-D reduce_window exports as a MaxPool it rejects)."""
    import jax.numpy as jnp

    from nin_flax.model import build_model
    from nin_flax.weights import load_state

    model = build_model(cfg, image_size)
    load_state(model, state)
    model.eval()
    with _quiet():
        from jax2onnx import to_onnx

        proto = to_onnx(lambda x: model(jnp.transpose(x, (0, 2, 3, 1))),
                        [("batch", cfg.in_channels, image_size, image_size)], opset=OPSET, return_mode="proto",
                        input_names=["image"], output_names=["logits"])
    return finish(proto, metadata(cfg, image_size, normalize, "flax"))


def finish(proto, props: dict[str, str]) -> bytes:
    check_graph(proto)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def check_graph(proto) -> None:
    """No Dropout that would run in training mode (its third input, `training_mode`, a true constant)."""
    constants = {n.output[0]: n for n in proto.graph.node if n.op_type == "Constant"}
    initialisers = {t.name: t for t in proto.graph.initializer}
    from onnx import numpy_helper

    for node in proto.graph.node:
        if node.op_type != "Dropout" or len(node.input) < 3 or not node.input[2]:
            continue
        flag = node.input[2]
        value = (numpy_helper.to_array(initialisers[flag]) if flag in initialisers else
                 numpy_helper.to_array(constants[flag].attribute[0].t) if flag in constants else True)
        if bool(np.asarray(value)):
            raise UserError("the exported graph keeps a Dropout in training mode; export the model in eval mode")


def session(model: bytes | str | Path, optimize: bool = False):
    """An ONNX Runtime session on the CPU that runs exactly the given graph (optimisations off), or as users run
    it (`optimize`: ONNX Runtime's defaults, its graph optimisations on)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(model, images_nchw: np.ndarray, batch: int = 500, optimize: bool = False) -> np.ndarray:
    """Logits from ONNX Runtime for float32 NCHW model inputs."""
    sess = model if hasattr(model, "run") else session(model, optimize)
    name = sess.get_inputs()[0].name
    x = np.ascontiguousarray(images_nchw, dtype=np.float32)
    return np.concatenate([sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def recorded(model_path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file that compare.convert or compare.parity wrote."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(model_path), load_external_data=False).metadata_props}


EXPORTERS = ("torch", "both", "none")


def referee(state: State, cfg: Config, x_nchw: np.ndarray, torch_logits: np.ndarray, flax_logits: np.ndarray,
            relative_tolerance: float, export: str = "torch") -> dict:
    """ONNX Runtime as compare.parity's third referee: the ported weights exported to ONNX from torch (`both`:
    from flax as well, through jax2onnx), run on the same batch, against each framework's logits (within
    relative_tolerance * max(1, max |logit|), as the logits checks)."""
    if export == "none":
        return {"ok": True, "skipped": "--onnx none"}
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"ok": True, "skipped": "onnxruntime is not installed"}
    if export == "both" and not flax_export_available():
        raise UserError("--onnx both exports from flax too, through jax2onnx, which is not installed: `make "
                        "onnx-flax` installs it (README, ONNX), or use --onnx torch")
    size, normalize = cfg.data.image_size, cfg.data.normalize
    exported = {"torch": export_torch(state, cfg.model, size, normalize)}
    if export == "both":
        exported["flax"] = export_flax(state, cfg.model, size, normalize)
    tol = relative_tolerance * max(1.0, float(np.max(np.abs(torch_logits))))
    result: dict = {"tolerance": tol, "exported_from": list(exported), "opset": OPSET}
    for source, model in exported.items():
        logits = run(model, x_nchw)
        prefix = "" if source == "torch" else "flax_export_"
        result[f"{prefix}max_abs_diff_torch"] = float(np.max(np.abs(logits - torch_logits)))
        result[f"{prefix}max_abs_diff_flax"] = float(np.max(np.abs(logits - flax_logits)))
    result["ok"] = all(v <= tol for k, v in result.items() if k.endswith(("_torch", "_flax")))
    return result
