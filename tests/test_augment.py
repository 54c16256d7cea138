"""The shared augmentation: its numpy definition does what it says, the parameters depend on (seed, epoch,
index) alone, and torch and flax apply them to identical uint8 images."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from nin_flax.data import augment as flax_augment
from nin_torch.data import augment as torch_augment
from shared.augment import COLUMNS, augment_params, augment_reference, step_params
from shared.config import Config
from shared.data import load_split


def _cfg(shift: int = 3, flip: bool = True, erase: float = 0.5, seed: int = 0) -> Config:
    cfg = Config()
    cfg.data.augment_shift, cfg.data.augment_flip, cfg.data.augment_erase = shift, flip, erase
    cfg.train.seed = seed
    return cfg


def _row(**values: int) -> np.ndarray:
    return np.array([[values.get(name, 0) for name in COLUMNS]], np.int32)


def test_reference_shift_flip_erase_on_one_pixel():
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 5, 7] = 200
    shifted = augment_reference(image, _row(dy=2, dx=-3))
    assert shifted[0, 7, 4] == 200 and shifted.sum() == 200
    flipped = augment_reference(image, _row(flip=1))
    assert flipped[0, 5, 20] == 200
    erased = augment_reference(image, _row(top=5, bottom=6, left=7, right=8))
    assert erased.sum() == 0
    off_edge = augment_reference(image, _row(dx=21))  # shifted out of view: zero fill, no wrap-around
    assert off_edge.sum() == 0


def test_params_are_a_function_of_seed_epoch_and_index():
    cfg, n = _cfg(), 60000
    indices = np.array([5, 17, 59999])
    same = augment_params(cfg, 3, np.array([17]), n)
    assert np.array_equal(augment_params(cfg, 3, indices, n)[1], same[0])  # not of the batch it sits in
    assert not np.array_equal(augment_params(cfg, 4, indices, n), augment_params(cfg, 3, indices, n))
    assert not np.array_equal(augment_params(_cfg(seed=1), 3, indices, n), augment_params(cfg, 3, indices, n))
    table = augment_params(cfg, 0, np.arange(n), n)
    assert np.abs(table[:, :2]).max() == 3 and 0.45 < table[:, 2].mean() < 0.55
    erased = table[:, 4] > table[:, 3]
    assert 0.45 < erased.mean() < 0.55 and (table[erased, 4] <= 28).all() and (table[erased, 6] <= 28).all()


def test_off_by_default_and_epoch_follows_the_step():
    assert step_params(Config(), 0, np.arange(4), 60000) is None
    cfg = _cfg()
    cfg.data.batch_size = 128
    per_epoch = 60000 // 128
    assert np.array_equal(step_params(cfg, per_epoch, np.arange(4), 60000), augment_params(cfg, 1, np.arange(4), 60000))


@pytest.mark.parametrize("erase", [0.0, 1.0])
def test_torch_and_flax_apply_the_reference_bit_for_bit(erase):
    images, _ = load_split("train")
    indices = np.arange(0, 60000, 211)
    params = augment_params(_cfg(shift=4, erase=erase), 2, indices, 60000)
    expected = augment_reference(images[indices], params)
    assert (expected != images[indices]).mean() > 0.3  # the augmentation changed the images
    torch_out = torch_augment(torch.from_numpy(images[indices].copy()), torch.from_numpy(params)).numpy()
    flax_out = np.asarray(flax_augment(jnp.asarray(images[indices]), jnp.asarray(params)))
    np.testing.assert_array_equal(torch_out, expected)
    np.testing.assert_array_equal(flax_out, expected)
