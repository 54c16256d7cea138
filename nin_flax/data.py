"""Fashion-MNIST for flax: tensorflow-datasets' data_source (the reference loader, no TensorFlow) and the
device-resident fast path. Twin of nin_torch/data.py."""

from __future__ import annotations

import importlib.util
import io
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from shared.data import MEAN, STD, cache_dir, load_split, split_limit
from shared.errors import UserError

TFDS_NAME, TFDS_VERSION = "fashion_mnist", "3.0.1"


def tfds_available() -> bool:
    """tensorflow-datasets is the reference loader only: training and the fast path do not need it."""
    return importlib.util.find_spec("tensorflow_datasets") is not None


def _require_tfds() -> None:
    if not tfds_available():
        raise UserError("tensorflow-datasets is not installed: pip install tensorflow-datasets (only the TFDS "
                        "reference loader needs it; training does not)")


def _local_builder_class():
    """TFDS's FashionMNIST builder, fed from the local IDX files (PNG-encoded with PIL: no TensorFlow),
    in IDX order (disable_shuffling), so TFDS index i is IDX index i."""
    import tensorflow_datasets as tfds
    from PIL import Image
    from tensorflow_datasets.image_classification import mnist

    class LocalFashionMNIST(mnist.FashionMNIST, skip_registration=True):
        name = TFDS_NAME

        def __init__(self, *, idx_dir: str | None, **kwargs):
            self.idx_dir = idx_dir
            super().__init__(**kwargs)

        def _info(self):
            info = super()._info()
            return tfds.core.DatasetInfo(builder=self, description=info.description, features=info.features,
                                         supervised_keys=info.supervised_keys, homepage=info.homepage,
                                         citation=info.citation, disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return [tfds.core.SplitGenerator(name=split, gen_kwargs={"split": split}) for split in ("train", "test")]

        def _generate_examples(self, split):
            images, labels = load_split(split, self.idx_dir)
            for index, (image, label) in enumerate(zip(images, labels, strict=True)):
                png = io.BytesIO()
                Image.fromarray(image).save(png, format="PNG")
                yield index, {"image": png.getvalue(), "label": int(label)}

    return LocalFashionMNIST


def tfds_dir(data_dir: str | None = None) -> Path:
    """The TFDS data_dir holding fashion_mnist/3.0.1 as array_record, prepared once from the IDX files."""
    _require_tfds()
    root = cache_dir() / "tfds"
    if not (root / TFDS_NAME / TFDS_VERSION / "dataset_info.json").is_file():
        import tensorflow_datasets as tfds

        print(f"preparing TFDS {TFDS_NAME}/{TFDS_VERSION} in {root} (once, about 10 s)")
        logging.getLogger("absl").setLevel(logging.ERROR)
        tfds.disable_progress_bar()
        builder = _local_builder_class()(idx_dir=data_dir, data_dir=str(root), file_format="array_record")
        builder.download_and_prepare()
    return root


def tfds_source(split: str, data_dir: str | None = None):
    """tfds.data_source over the prepared dataset: random access by IDX index, records {image, label}."""
    _require_tfds()
    import tensorflow_datasets as tfds

    logging.getLogger("absl").setLevel(logging.ERROR)  # "OpenCV is not installed ... PIL" once per process
    return tfds.data_source(TFDS_NAME, split=split, data_dir=str(tfds_dir(data_dir)), download=False)


def preprocess(images: jax.Array, image_size: int, normalize: bool = False, dtype=jnp.float32) -> jax.Array:
    """uint8 [N, 28, 28] -> float [N, S, S, 1]: / 255, bilinear (half-pixel, no antialias), (x - mean) / std."""
    x = images[..., None].astype(dtype) / 255.0
    x = jax.image.resize(x, (x.shape[0], image_size, image_size, 1), method="bilinear", antialias=False)
    return (x - MEAN) / STD if normalize else x


def augment(images: jax.Array, params: jax.Array) -> jax.Array:
    """uint8 [B, 28, 28] -> uint8 [B, 28, 28] by int32 [B, 7] parameters: shift (zero fill), flip, erase
    (shared.augment defines it; this is its gather form, exact in integers)."""
    size = images.shape[-1]
    grid = jnp.arange(size)[None, :]
    dy, dx, flip = params[:, 0:1], params[:, 1:2], params[:, 2:3]
    rows = grid - dy
    cols = jnp.where(flip == 1, size - 1 - grid, grid) - dx
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    batch = jnp.arange(images.shape[0])[:, None, None]
    out = images[batch, jnp.clip(rows, 0, size - 1)[:, :, None], jnp.clip(cols, 0, size - 1)[:, None, :]]
    in_rows = (grid >= params[:, 3:4]) & (grid < params[:, 4:5])
    in_cols = (grid >= params[:, 5:6]) & (grid < params[:, 6:7])
    erased = in_rows[:, :, None] & in_cols[:, None, :]
    return jnp.where(inside & ~erased, out, jnp.zeros_like(out))


class DeviceData:
    """One split as uint8 on the device; batches are gathered by IDX index."""

    def __init__(self, split: str, data_dir: str | None, limit: int | None,
                 placement: jax.Device | jax.sharding.Sharding | None = None):
        """`placement`: a device, or a sharding (replicated over a data-parallel mesh)."""
        images, labels = load_split(split, data_dir)
        n = split_limit(split, limit)
        self.images = jax.device_put(np.ascontiguousarray(images[:n]), placement)
        self.labels = jax.device_put(labels[:n].astype(np.int32), placement)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(uint8 images [B, 28, 28], int32 labels [B]); preprocessing runs inside the compiled step."""
        return self.images[indices], self.labels[indices]
