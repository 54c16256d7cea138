"""`python -m compare.per_class WEIGHTS`: per-class test accuracy of a portable weights file, and the classes
whose logit is exactly zero for (nearly) every test image — the mark of d2l's final ReLU before global
pooling: once a class's last-layer channel is negative for every input, the ReLU zeroes it and no gradient
ever reaches it again, so that class is never predicted. Weights from either framework (evaluated in torch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from shared.config import ArgumentParser
from shared.errors import run_cli
from shared.rundir import atomic_write, check_writable
from shared.weights import load_portable, saved_model_config, saved_normalize

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEAD = 0.99  # a class whose logit is 0 for at least this fraction of test images is dead


def per_class(weights: str, test_limit: int | None = None, data_dir: str | None = None) -> dict:
    import torch

    from nin_torch.model import build_model
    from nin_torch.weights import load_into
    from shared.data import load_split, preprocess_reference

    metadata = load_portable(weights)[1]
    saved = saved_model_config(metadata)
    if saved is None:
        from shared.errors import UserError

        raise UserError(f"{weights} has no model config in its metadata; give a weights.safetensors of a trainer")
    cfg, size = saved
    normalize = bool(saved_normalize(metadata))
    images, labels = load_split("test", data_dir)
    images, labels = images[:test_limit], labels[:test_limit]
    model = build_model(cfg, size)
    load_into(model, weights, cfg, size)
    model.eval()
    logits = []
    with torch.no_grad():
        for i in range(0, len(images), 500):
            x = preprocess_reference(images[i:i + 500], size, normalize).astype(np.float32)
            logits.append(model(torch.from_numpy(x).reshape(len(x), 1, size, size)).numpy())
    out = np.concatenate(logits)
    pred = out.argmax(1)
    zero = (out == 0).mean(axis=0)
    return {"weights": str(weights), "test_examples": len(labels), "test_acc": float((pred == labels).mean()),
            "classes": [{"class": c, "name": CLASSES[c], "acc": float((pred[labels == c] == c).mean()),
                         "zero_logit_fraction": float(zero[c])} for c in range(out.shape[1])],
            "dead_classes": [CLASSES[c] for c in range(out.shape[1]) if zero[c] >= DEAD]}


@run_cli
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m compare.per_class", description=__doc__)
    parser.add_argument("weights", help="a weights.safetensors written by either trainer")
    parser.add_argument("--test-limit", type=int, help="the first N test images (default all)")
    parser.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.test_limit is not None and args.test_limit < 1:
        parser.error("--test-limit must be >= 1")
    if args.json:
        check_writable(Path(args.json))
    result = per_class(args.weights, args.test_limit, args.data_dir)
    print(f"test acc {result['test_acc']:.4f} on {result['test_examples']} images; dead classes: "
          f"{', '.join(result['dead_classes']) or 'none'}")
    for c in result["classes"]:
        print(f"  {c['class']} {c['name']:<12} acc {c['acc']:.3f}  logit exactly 0 on {c['zero_logit_fraction']:.0%}")
    if args.json:
        atomic_write(Path(args.json), json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
