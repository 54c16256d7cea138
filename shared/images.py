"""Your own pictures as Fashion-MNIST examples, and the predictions printed the same way by both frameworks
(`python -m nin_torch.predict` / `python -m nin_flax.predict`).

Fashion-MNIST is a light object on a black background, centred in 28 x 28. A picture is turned upright (its
EXIF orientation), made grayscale as a person sees it (16-bit images scaled, transparency composited onto
white, an animation's first frame), inverted when its background is light (a product photo on white), padded
to a square with black, and shrunk to 28 px with antialiasing; the trained preprocessing (resize to the model's
size, normalisation) then runs in the framework, as for the test set. Pictures over 10,000 px on a side or
longer than 20:1 are refused before they are decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.data import CLASS_NAMES
from shared.errors import UserError, first_line
from shared.files import path_kind

SOURCE_SIZE = 28
LIGHT_BACKGROUND = 128  # a border brighter than this on average is a light background: the image is inverted
MAX_SIDE, MAX_ASPECT = 10_000, 20  # checked from the header, before any pixel is decoded
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "nin-fashion-mnist-best.safetensors"


@dataclass(frozen=True)
class Prepared:
    path: str
    pixels: np.ndarray  # uint8 [28, 28], light object on black
    inverted: bool
    original_size: tuple[int, int]  # (width, height)


def _border_mean(gray: np.ndarray) -> float:
    return float(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]).mean())


def check_image_path(path: Path) -> None:
    kind = path_kind(path)
    if kind == "missing":
        raise UserError(f"image {path} does not exist")
    if kind != "file":
        raise UserError(f"image {path} is {kind}, not an image file; give a PNG, JPEG or other image file")
    if path.stat().st_size == 0:
        raise UserError(f"image {path} is an empty file")


def check_geometry(path: Path, width: int, height: int) -> None:
    """Before a pixel is decoded: the padded square must be allocatable, and the picture a picture."""
    if min(width, height) == 0:
        raise UserError(f"image {path} has no pixels ({width}x{height})")
    if max(width, height) > MAX_SIDE:
        raise UserError(f"image {path} is {width}x{height} px; its longest side may be at most {MAX_SIDE:,} px "
                        f"(it is padded to a square before it is shrunk to 28 px): scale it down first")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise UserError(f"image {path} is {width}x{height} px, more than {MAX_ASPECT}:1; a Fashion-MNIST item "
                        f"fills a square: crop it to the item first")


def to_gray(image) -> np.ndarray:
    """uint8 grayscale as a person sees the picture: 16-bit and float modes scaled (not clipped), transparent
    pixels composited onto white (as a page shows them), colour by luminance."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if image.mode == "I" and values.max(initial=0) <= 255:  # 8-bit data in a 32-bit mode
            return np.clip(values, 0, 255).astype(np.uint8)
        return ((np.clip(values, 0, 65535) + 128) // 257).astype(np.uint8)  # 16 -> 8 bit, inverse of v * 257
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def prepare_image(path: str | Path) -> Prepared:
    """Any image PIL reads (PNG, JPEG, ...) -> a 28 x 28 uint8 Fashion-MNIST-like example: upright as its EXIF
    orientation says, an animation by its first frame."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    check_image_path(path)
    try:
        with Image.open(path) as opened:
            check_geometry(path, *opened.size)
            opened.seek(0)
            image = ImageOps.exif_transpose(opened)
            gray = to_gray(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(f"{path} is not an image PIL can read (PNG, JPEG, ...): {first_line(e)}") from None
    inverted = _border_mean(gray) > LIGHT_BACKGROUND
    if inverted:
        gray = 255 - gray
    height, width = gray.shape
    side = max(height, width)
    square = np.zeros((side, side), np.uint8)  # the background, after inversion, is dark
    square[(side - height) // 2:(side - height) // 2 + height, (side - width) // 2:(side - width) // 2 + width] = gray
    resized = Image.fromarray(square).resize((SOURCE_SIZE, SOURCE_SIZE), Image.Resampling.LANCZOS)
    return Prepared(str(path), np.asarray(resized, dtype=np.uint8), inverted, (width, height))


def top_k(logits: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
    """Per row of logits: the k most probable classes with their softmax probabilities (float64)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(CLASS_NAMES[c], float(row[c])) for c in best] for row, best in zip(probs, order, strict=True)]


def print_predictions(images: list[Prepared], logits: np.ndarray, k: int = 3) -> None:
    for image, best in zip(images, top_k(logits, k), strict=True):
        width, height = image.original_size
        note = "; light background, inverted to a light object on black as in Fashion-MNIST" if image.inverted else ""
        print(f"{image.path} ({width}x{height}{note})")
        for rank, (name, prob) in enumerate(best, 1):
            print(f"  {rank}. {name:<12} {prob:.4f}")


def predict(framework: str, load_model, logits_of, argv: list[str] | None) -> None:
    """`python -m nin_<framework>.predict`: both twins run this with their own load_model and logits_of."""
    from shared.config import ArgumentParser

    parser = ArgumentParser(prog=f"python -m nin_{framework}.predict",
                            description=f"The top Fashion-MNIST classes of your own images, with {framework}. "
                                        + __doc__.split("\n\n")[1].replace("\n", " "))
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG or any image PIL reads; any size")
    parser.add_argument("--weights", default=str(SHIPPED_WEIGHTS),
                        help="a weights.safetensors of either framework (default: the shipped weights, "
                             f"{SHIPPED_WEIGHTS.relative_to(SHIPPED_WEIGHTS.parents[1])})")
    parser.add_argument("--top", type=int, default=3, help="how many classes to show (default 3)")
    args = parser.parse_args(argv)
    if not 1 <= args.top <= len(CLASS_NAMES):
        parser.error(f"--top must be in [1, {len(CLASS_NAMES)}]")
    model, size, normalize = load_model(args.weights)
    images = [prepare_image(path) for path in args.images]
    print_predictions(images, logits_of(model, np.stack([i.pixels for i in images]), size, normalize), args.top)
