"""`python -m compare.evaluate WEIGHTS`: a portable weights file on the full Fashion-MNIST test set, in torch,
flax or both: test accuracy and loss, per-class accuracy, dead classes, a confusion matrix (PNG) and, with
both, the fraction of test images on which the two frameworks predict the same class.

A class is dead when the model (nearly) never gives it a chance: its logit is exactly 0 on at least 99% of
the test images (d2l's final ReLU before global pooling: once a class's last channel is negative for every
input, the ReLU zeroes it and no gradient reaches it again), or it is never predicted at all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from shared.config import ArgumentParser
from shared.data import CLASS_NAMES, load_split
from shared.errors import UserError, run_cli
from shared.files import atomic_write, check_writable, json_text, save_figure

FRAMEWORK_CHOICES = ("torch", "flax", "both")
DEAD_ZERO_FRACTION = 0.99


def onnx_logits(weights: str, images: np.ndarray) -> np.ndarray:
    """ONNX Runtime, with its default optimisations as users run it, on an ONNX file written by compare.convert;
    the preprocessing its metadata records (torch's, which equals shared.data's reference)."""
    import torch

    from compare import to_onnx
    from nin_torch.data import preprocess

    props = to_onnx.recorded(weights)
    if "image_size" not in props:
        raise UserError(f"{weights} records no image size: give an ONNX file written by compare.convert")
    size, normalize = int(props["image_size"]), json.loads(props.get("normalize", "false"))
    x = torch.cat([preprocess(torch.from_numpy(images[i:i + 1000].copy()), size, normalize)
                   for i in range(0, len(images), 1000)]).numpy()
    return to_onnx.run(weights, x, optimize=True)


def framework_logits(framework: str, weights: str, images: np.ndarray) -> np.ndarray:
    """The logits of each test image in one framework, through its own preprocessing on its device."""
    if framework == "onnx":
        return onnx_logits(weights, images)
    if framework == "torch":
        from nin_torch.predict import load_model, logits_of
    else:
        from nin_flax.predict import load_model, logits_of
    model, size, normalize = load_model(weights)
    return logits_of(model, images, size, normalize)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def confusion(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[true class, predicted class] counts."""
    k = len(CLASS_NAMES)
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)


def metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy and loss, and per class (only the classes that have test images: a class without any is absent,
    neither NaN nor dead) its accuracy and whether it is dead."""
    pred = logits.argmax(1)
    zero = (logits == 0).mean(axis=0)
    present = [c for c in range(len(CLASS_NAMES)) if (labels == c).any()]
    per_class = {CLASS_NAMES[c]: float((pred[labels == c] == c).mean()) for c in present}
    dead = [CLASS_NAMES[c] for c in present if zero[c] >= DEAD_ZERO_FRACTION or not (pred == c).any()]
    loss = cross_entropy(logits, labels)
    return {"test_acc": float((pred == labels).mean()), "test_loss": loss if np.isfinite(loss) else None,
            "per_class": per_class, "dead_classes": dead,
            "zero_logit_fraction": {CLASS_NAMES[c]: float(zero[c]) for c in present},
            "confusion": confusion(pred, labels).tolist()}


def evaluate(weights: str, frameworks: list[str], test_limit: int | None = None,
             data_dir: str | None = None) -> dict[str, Any]:
    """The JSON report: each framework's figures, and their agreement when both are evaluated."""
    images, labels = load_split("test", data_dir)
    images, labels = images[:test_limit], labels[:test_limit]
    report: dict[str, Any] = {"weights": str(weights), "test_examples": len(labels)}
    preds = {}
    for framework in frameworks:
        logits = framework_logits(framework, weights, images)
        report[framework] = metrics(logits, labels)
        preds[framework] = logits.argmax(1)
    if len(preds) == 2:
        report["agreement"] = float((preds["torch"] == preds["flax"]).mean())
    return report


def plot_confusion(report: dict[str, Any], frameworks: list[str], path: Path) -> None:
    """One confusion matrix per framework, row-normalised (each row: where that class's images went)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frameworks), figsize=(6.2 * len(frameworks), 5.6), squeeze=False)
    for ax, framework in zip(axes[0], frameworks, strict=True):
        counts = np.array(report[framework]["confusion"], dtype=np.float64)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for (i, j), rate in np.ndenumerate(rates):
            if rate >= 0.005:
                ax.text(j, i, f"{rate:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if rate > 0.6 else "black")
        ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true class")
        ax.set_title(f"{framework}: test acc {report[framework]['test_acc']:.4f}")
    fig.tight_layout()
    save_figure(fig, path)


def print_report(report: dict[str, Any], frameworks: list[str]) -> None:
    print(f"{report['weights']} on {report['test_examples']} test images")
    print(f"  {'':<12}" + "".join(f"{fw:>10}" for fw in frameworks))
    for key in ("test_acc", "test_loss"):
        print(f"  {key:<12}" + "".join(f"{report[fw][key]:>10.4f}" if report[fw][key] is not None else f"{'-':>10}"
                                       for fw in frameworks))
    for name in report[frameworks[0]]["per_class"]:
        print(f"  {name:<12}" + "".join(f"{report[fw]['per_class'][name]:>10.3f}" for fw in frameworks))
    for fw in frameworks:
        print(f"  {fw} dead classes: {', '.join(report[fw]['dead_classes']) or 'none'}")
    if "agreement" in report:
        print(f"  agreement: the two predict the same class on {report['agreement']:.4%} of the test images")


@run_cli
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m compare.evaluate", description=__doc__)
    parser.add_argument("weights", help="a weights.safetensors written by either trainer (or compare.convert); an "
                                        ".onnx file of compare.convert is evaluated in ONNX Runtime")
    parser.add_argument("--framework", choices=FRAMEWORK_CHOICES, default="both",
                        help="evaluate in torch, flax or both (default both: also their agreement)")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    parser.add_argument("--out", metavar="DIR", help="folder for confusion.png (default runs/evaluate-<weights name>)")
    parser.add_argument("--test-limit", type=int, help="the first N test images (default all 10,000)")
    parser.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    args = parser.parse_args(argv)
    if args.test_limit is not None and args.test_limit < 1:
        parser.error("--test-limit must be >= 1")
    frameworks = ["torch", "flax"] if args.framework == "both" else [args.framework]
    if Path(args.weights).suffix.lower() == ".onnx":
        frameworks = ["onnx"]
    out = Path(args.out or f"runs/evaluate-{Path(args.weights).stem}")
    png = out / "confusion.png"
    for path in [png, *([Path(args.json)] if args.json else [])]:
        check_writable(path)
    report = evaluate(args.weights, frameworks, args.test_limit, args.data_dir)
    print_report(report, frameworks)
    plot_confusion(report, frameworks, png)
    print(f"  confusion matrix: {png}")
    if args.json:
        atomic_write(Path(args.json), json_text(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
