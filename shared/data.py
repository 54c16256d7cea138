"""The Fashion-MNIST data spec, framework-neutral: locating and verifying the IDX files, reading them,
the order of examples in each epoch, and the one definition of preprocessing (in numpy, as a reference)."""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from shared.errors import UserError, run_cli
from shared.files import path_kind

# sha256 of the DECOMPRESSED files (Debian's .gz differ from upstream's in the gzip header only).
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SIZES = {"train": 60000, "test": 10000}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = 0.2860, 0.3530  # of the training images scaled to [0, 1]
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
DEFAULT_DIRS = ("data/fashion-mnist", "/usr/share/datasets/fashion-mnist")
INSTALL_HINT = ("install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or `make data`, "
                "or point --data-dir / $NIN_DATA_DIR at a folder with the four IDX files")


def cache_dir() -> Path:
    """Where derived copies live (torchvision's raw layout, the prepared TFDS dataset, XLA's compiled steps):
    $NIN_CACHE_DIR, else $XDG_CACHE_HOME/nin-two-ways, else ~/.cache/nin-two-ways; never the current folder."""
    if os.environ.get("NIN_CACHE_DIR"):
        return Path(os.environ["NIN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nin-two-ways"


def split_limit(split: str, limit: int | None) -> int:
    """How many examples of a split a run uses: the first `limit`, or all."""
    return min(limit, SPLIT_SIZES[split]) if limit else SPLIT_SIZES[split]


def _file_in(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _has_all_files(folder: Path) -> bool:
    return all(_file_in(folder, name) for name in SHA256)


def locate_data_dir(data_dir: str | None = None) -> Path:
    """--data-dir, then $NIN_DATA_DIR, then ./data/fashion-mnist, then Debian's dataset-fashion-mnist."""
    explicit = data_dir if data_dir is not None else os.environ.get("NIN_DATA_DIR")
    if explicit is not None and not explicit.strip():
        raise UserError(f"the data dir is empty ({'--data-dir' if data_dir is not None else '$NIN_DATA_DIR'} \"\"); "
                        f"give the folder with the Fashion-MNIST files, or leave it out to use the default folders")
    if explicit:
        folder = Path(explicit)
        kind = path_kind(folder)
        if kind != "a folder":
            what = "does not exist" if kind == "missing" else f"is {'a file' if kind == 'file' else kind}, not a folder"
            raise UserError(f"data dir {folder} {what}; {INSTALL_HINT}")
        missing = [name for name in SHA256 if not _file_in(folder, name)]
        if missing:
            raise UserError(f"{folder} lacks {', '.join(missing)} (.gz or not); {INSTALL_HINT}")
        return folder
    for candidate in DEFAULT_DIRS:
        if _has_all_files(Path(candidate)):
            return Path(candidate)
    raise UserError(f"Fashion-MNIST not found in {' or '.join(DEFAULT_DIRS)}; {INSTALL_HINT}")


def read_raw(path: Path) -> bytes:
    """The decompressed bytes of an IDX file, .gz or not."""
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path} is not a readable (gzip) file ({e}); re-install the dataset") from None


def parse_idx(raw: bytes, expected_magic: int, where: str) -> np.ndarray:
    """An IDX array (uint8 payload) from its bytes, with the header checked against the payload size."""
    if len(raw) < 8:
        raise UserError(f"{where} is truncated ({len(raw)} bytes); re-install the dataset")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise UserError(f"{where} has magic number {magic}, expected {expected_magic}: not an IDX "
                        f"{'image' if expected_magic == IMAGE_MAGIC else 'label'} file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise UserError(f"{where} is truncated or padded: header says {dims}, payload has "
                        f"{len(raw) - header} bytes; re-install the dataset")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array (the inverse of parse_idx): magic, dimensions, payload."""
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def read_idx_file(folder: Path, name: str, verify: bool = True) -> np.ndarray:
    path = _file_in(folder, name)
    if path is None:
        raise UserError(f"{folder} lacks {name}; {INSTALL_HINT}")
    raw = read_raw(path)
    magic = IMAGE_MAGIC if "images" in name else LABEL_MAGIC
    array = parse_idx(raw, magic, str(path))
    if verify and hashlib.sha256(raw).hexdigest() != SHA256[name]:
        raise UserError(f"{path} fails its sha256 check (corrupt or not Fashion-MNIST); re-install the dataset")
    return array


def load_split(split: str, data_dir: str | Path | None = None, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of 'train' or 'test', checksums verified. Read once per
    process (read-only arrays): the two backends of a parity check, or a test session, share them."""
    folder = locate_data_dir(str(data_dir) if data_dir else None)
    stamps = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in (_file_in(folder, n) for n in SPLIT_FILES[split]))
    return _read_split(split, str(folder.resolve()), verify, stamps)


@functools.lru_cache(maxsize=4)
def _read_split(split: str, folder: str, verify: bool, stamps: tuple) -> tuple[np.ndarray, np.ndarray]:
    """`stamps` (the files' mtime and size) keys the cache: a file replaced on disk is read again."""
    images_name, labels_name = SPLIT_FILES[split]
    images = read_idx_file(Path(folder), images_name, verify)
    labels = read_idx_file(Path(folder), labels_name, verify).astype(np.int64)
    labels.flags.writeable = False
    if len(images) != len(labels):
        raise UserError(f"{folder}: {len(images)} {split} images but {len(labels)} labels; re-install the dataset")
    return images, labels


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The IDX indices of one training epoch, in order: the same for both frameworks."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Training drops the last partial batch, so every compiled step sees one batch shape."""
    return n // batch_size


def _bilinear_weights(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] interpolation matrix: half-pixel centres, edge clamped, no antialiasing."""
    scale = size_in / size_out
    src = np.clip((np.arange(size_out) + 0.5) * scale - 0.5, 0, size_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = src - lo
    weights = np.zeros((size_out, size_in), dtype=np.float64)
    weights[np.arange(size_out), lo] += 1 - frac
    weights[np.arange(size_out), hi] += frac
    return weights


def preprocess_reference(images: np.ndarray, image_size: int, normalize: bool = False) -> np.ndarray:
    """THE preprocessing: uint8 -> float32 / 255 -> bilinear resize -> optional (x - mean) / std. [N, S, S]."""
    x = images.astype(np.float64) / 255.0
    w = _bilinear_weights(images.shape[-1], image_size)
    x = np.einsum("oh,nhw,pw->nop", w, x, w)
    if normalize:
        x = (x - MEAN) / STD
    return x.astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.data",
                                     description="Locate Fashion-MNIST and verify the sha256 of its four files.")
    parser.add_argument("--data-dir", help="folder with the four IDX files (.gz or not)")
    args = parser.parse_args(argv)

    @run_cli
    def check() -> None:
        folder = locate_data_dir(args.data_dir)
        for split in SPLIT_FILES:
            images, labels = load_split(split, folder)
            print(f"{split}: {len(images)} images {images.shape[1:]} from {folder}, sha256 ok")

    check()


if __name__ == "__main__":
    main()
