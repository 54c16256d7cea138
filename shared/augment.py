"""Training-time augmentation from the shared spec: random translation (pad-and-crop on the 28 px source,
zero fill), horizontal flip and random erasing (a zero rectangle), all off by default (d2l has none).

What happens to an example is decided in numpy from (seed, epoch, example index) alone, so the two frameworks
see the same augmented images; they receive only the per-example parameters (a few int32 per example) and
apply them on the device to the uint8 batch, inside the step (nin_torch/data.py, nin_flax/data.py).
`augment_reference` is the numpy definition both are tested against, bit for bit.
"""

from __future__ import annotations

import functools

import numpy as np

from shared.config import Config, DataConfig
from shared.data import batches_per_epoch

AUGMENT_STREAM = 0xA06  # keeps these draws apart from the epoch order's and the dropout masks' streams
SOURCE_SIZE = 28  # augmentation acts on the dataset's own pixels, before the resize
ERASE_AREA = (0.02, 0.25)  # fraction of the image a random-erasing rectangle covers (Zhong et al. 2017: 0.4)
ERASE_RATIO = (0.3, 1 / 0.3)  # its aspect ratio, log-uniform
# the columns of a parameter row: shift down, shift right, flip, then the erased rectangle [top, bottom) x [left, right)
COLUMNS = ("dy", "dx", "flip", "top", "bottom", "left", "right")


def enabled(data: DataConfig) -> bool:
    return bool(data.augment_shift or data.augment_flip or data.augment_erase)


@functools.lru_cache(maxsize=2)
def _epoch_params(seed: int, epoch: int, n: int, shift: int, flip: bool, erase: float) -> np.ndarray:
    """int32 [n, 7]: the parameters of every training example of one epoch, indexed by IDX index."""
    rng = np.random.default_rng([seed, epoch, AUGMENT_STREAM])
    params = np.zeros((n, len(COLUMNS)), np.int32)
    params[:, :2] = rng.integers(-shift, shift + 1, size=(n, 2))
    params[:, 2] = rng.random(n) < 0.5 if flip else 0
    area = rng.uniform(*ERASE_AREA, n) * SOURCE_SIZE**2
    ratio = np.exp(rng.uniform(*np.log(ERASE_RATIO), n))
    height = np.clip(np.round(np.sqrt(area * ratio)), 1, SOURCE_SIZE).astype(np.int32)
    width = np.clip(np.round(np.sqrt(area / ratio)), 1, SOURCE_SIZE).astype(np.int32)
    top = (rng.random(n) * (SOURCE_SIZE - height + 1)).astype(np.int32)
    left = (rng.random(n) * (SOURCE_SIZE - width + 1)).astype(np.int32)
    erased = rng.random(n) < erase
    params[erased, 3], params[erased, 4] = top[erased], top[erased] + height[erased]
    params[erased, 5], params[erased, 6] = left[erased], left[erased] + width[erased]
    return params


def augment_params(cfg: Config, epoch: int, indices: np.ndarray, n_train: int) -> np.ndarray:
    """int32 [len(indices), 7] for these examples in this epoch (rows of zeros change nothing)."""
    data = cfg.data
    table = _epoch_params(cfg.train.seed, epoch, n_train, data.augment_shift, data.augment_flip,
                          float(data.augment_erase))
    return table[indices]


def step_params(cfg: Config, step: int, indices: np.ndarray, n_train: int) -> np.ndarray | None:
    """The parameters of one training step's batch (its epoch follows from the step), or None when
    augmentation is off."""
    if not enabled(cfg.data):
        return None
    epoch = step // batches_per_epoch(n_train, cfg.data.batch_size)
    return augment_params(cfg, epoch, indices, n_train)


def source_coordinates(params: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows [B, H], cols [B, W]) of the source pixel behind each output pixel (may fall outside: zero)."""
    dy, dx, flip = params[:, 0:1], params[:, 1:2], params[:, 2:3]
    grid = np.arange(size)[None, :]
    rows = grid - dy
    cols = np.where(flip == 1, size - 1 - grid, grid) - dx
    return rows, cols


def erase_mask(params: np.ndarray, size: int) -> np.ndarray:
    """bool [B, H, W]: the pixels the random-erasing rectangle sets to zero."""
    grid = np.arange(size)[None, :]
    in_rows = (grid >= params[:, 3:4]) & (grid < params[:, 4:5])
    in_cols = (grid >= params[:, 5:6]) & (grid < params[:, 6:7])
    return in_rows[:, :, None] & in_cols[:, None, :]


def augment_reference(images: np.ndarray, params: np.ndarray) -> np.ndarray:
    """THE augmentation, in numpy: uint8 [B, 28, 28] -> uint8 [B, 28, 28]."""
    size = images.shape[-1]
    rows, cols = source_coordinates(params, size)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    batch = np.arange(len(images))[:, None, None]
    out = images[batch, np.clip(rows, 0, size - 1)[:, :, None], np.clip(cols, 0, size - 1)[:, None, :]]
    out = np.where(inside, out, 0)
    return np.where(erase_mask(params, size), 0, out).astype(np.uint8)
