"""The training and evaluation steps for flax: preprocessing on the device, loss, update, all in one
jax.jit. Twin of nin_torch/steps.py. A step returns one device vector: no host sync per step. Training steps
return (summed loss, correct count, collapsed) where collapsed is 1 when the batch's predictions are all one
class or its logits all zero; evaluation steps return (summed loss, correct count).

The steps are pure functions of the split nnx state (the flax performance guide's functional form): the
Python graph walk of nnx.jit happens once, at trace time, not at every step, and the state is donated.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from nin_flax.data import augment, preprocess
from nin_flax.optim import loss_fn
from shared.config import Config

Step = Callable[..., jax.Array]


def collapsed(logits: jax.Array) -> jax.Array:
    pred = logits.argmax(-1)
    return ((pred == pred[0]).all() | (logits == 0).all()).astype(jnp.float32)


def compute_dtype(cfg: Config):
    return jnp.bfloat16 if cfg.run.precision == "bf16" else None


def make_train_step(cfg: Config, graphdef: nnx.GraphDef, dtype=jnp.float32, options: dict | None = None) -> Step:
    """step(state, images, labels, indices, dropout_mask, augment_params) -> (new state, metrics) for the split
    (model, optimizer); `dtype`: of the preprocessed input (the parameters' dtype: float64 for the parity
    check); `dropout_mask`: None (flax draws its own) or a shared mask, NHWC; `augment_params`: None or
    int32 [B, 7] (shared.augment); `options`: XLA compiler options (nin_flax.runtime.compiler_options)."""
    size, normalize, smoothing = cfg.data.image_size, cfg.data.normalize, cfg.train.label_smoothing

    def train_step(state: nnx.State, images: jax.Array, labels: jax.Array, indices: jax.Array,
                   dropout_mask: jax.Array | None, augment_params: jax.Array | None = None):
        """One step on images[indices]: the whole uint8 split stays on the device; only indices (and the
        augmentation parameters) move."""
        model, optimizer = nnx.merge(graphdef, state)
        model.train()
        images, labels = images[indices], labels[indices]
        if augment_params is not None:
            images = augment(images, augment_params)
        x = preprocess(images, size, normalize, dtype)

        def loss_of(model):
            logits = model(x, dropout_mask=dropout_mask)
            return loss_fn(logits, labels, smoothing), logits

        (loss, logits), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)
        optimizer.update(model, grads)
        correct = (logits.argmax(-1) == labels).sum().astype(loss.dtype)
        metrics = jnp.stack([loss * labels.shape[0], correct, collapsed(logits).astype(loss.dtype)])
        return nnx.state((model, optimizer)), metrics

    return jax.jit(train_step, donate_argnums=0, compiler_options=options)


def make_eval_step(cfg: Config, graphdef: nnx.GraphDef, dtype=jnp.float32, options: dict | None = None) -> Step:
    """step(state, images, labels, indices) -> metrics, for the split (model, optimizer)."""
    size, normalize = cfg.data.image_size, cfg.data.normalize

    @functools.partial(jax.jit, compiler_options=options)
    def eval_step(state: nnx.State, images: jax.Array, labels: jax.Array, indices: jax.Array):
        model, _ = nnx.merge(graphdef, state)
        model.eval()
        images, labels = images[indices], labels[indices]
        logits = model(preprocess(images, size, normalize, dtype))
        loss = loss_fn(logits, labels, 0.0)
        correct = (logits.argmax(-1) == labels).sum().astype(loss.dtype)
        return jnp.stack([loss * labels.shape[0], correct])

    return eval_step
