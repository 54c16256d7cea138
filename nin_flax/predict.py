"""`python -m nin_flax.predict IMAGE... [--weights W]`: the top-3 Fashion-MNIST classes of your own images.
Twin of nin_torch/predict.py (the two print the same classes and probabilities); `load_model` and
`logits_of` are also what compare.evaluate runs on the test set."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from nin_flax.data import preprocess
from nin_flax.model import build_model
from nin_flax.weights import load_into
from shared.errors import run_cli
from shared.images import predict
from shared.weights import check_inference_fits, recorded_model

FRAMEWORK = "flax"
BATCH = 500


def load_model(path: str | Path) -> tuple[nnx.Module, int, bool]:
    """(model in eval mode, image size, normalize) as recorded in a portable weights file."""
    cfg, size, normalize = recorded_model(path)
    check_inference_fits(cfg, size, BATCH, "the weights file's")
    model = build_model(cfg, size)
    load_into(model, path, cfg, size, normalize)
    model.eval()
    return model, size, normalize


def logits_of(model: nnx.Module, images: np.ndarray, image_size: int, normalize: bool) -> np.ndarray:
    """float32 [N, classes] for uint8 [N, 28, 28] images, through the trained preprocessing."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, batch):
        return nnx.merge(graphdef, state)(preprocess(batch, image_size, normalize))

    out = [np.asarray(forward(state, images[start:start + BATCH])) for start in range(0, len(images), BATCH)]
    return np.concatenate(out)


@run_cli
def main(argv: list[str] | None = None) -> None:
    predict(FRAMEWORK, load_model, logits_of, argv)


if __name__ == "__main__":
    sys.exit(main())
