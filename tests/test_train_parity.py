"""The training check drives the trainers' real backends with every optimizer in float64, and a difference
planted in one piece of the flax update fails it and is named."""

import jax
import jax.numpy as jnp
import optax
import pytest

import nin_flax.optim as fopt
import nin_flax.steps as fsteps
from compare.backends import make_backend
from compare.train_parity import checked_config, train_check
from shared.config import Config

pytestmark = pytest.mark.e2e  # make test-fast skips this module

STEPS = 6


def cfg_for(**train) -> Config:
    cfg = Config()
    cfg.data.image_size = 67
    cfg.model.widths = (16, 32, 48)  # a small NiN: the check's logic, not its cost
    cfg.model.dropout = 0.0
    cfg.train.lr, cfg.train.schedule, cfg.train.warmup_steps = 1e-3, "cosine", 2
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return checked_config(cfg, STEPS, batch=4)


def check(cfg: Config) -> dict:
    init = make_backend("torch", cfg).get_weights()
    return train_check(cfg, init, STEPS, native=False)


@pytest.mark.parametrize("train", [
    {"optimizer": "adam", "label_smoothing": 0.1},
    {"optimizer": "adamw", "weight_decay": 0.05, "clip_grad_norm": 1.0},
    {"optimizer": "momentum", "lr": 0.05, "weight_decay": 5e-4, "clip_grad_norm": 0.5, "label_smoothing": 0.1},
    {"optimizer": "sgd", "lr": 0.1, "schedule": "constant", "warmup_steps": 0, "dropout": 0.5},
], ids=lambda t: t["optimizer"])
def test_every_optimizer_agrees_in_float64(train):
    train = dict(train)
    dropout = train.pop("dropout", 0.0)
    cfg = cfg_for(**train)
    cfg.model.dropout = dropout  # with the shared masks
    report = check(cfg)
    assert report["ok"], report
    assert report["max_rel_diff"] <= 1e-12 and report["weights_max_rel_diff"] <= 1e-12
    assert report["loss_torch"][0] != report["loss_torch"][-1]  # it trained


def adam_eps_inside_root(cfg, lr):
    return optax.adam(lr, eps=0.0, eps_root=1e-8) if cfg.optimizer == "adam" else REAL["update_rule"](cfg, lr)


def adam_without_bias_correction(cfg, lr):
    if cfg.optimizer != "adam":
        return REAL["update_rule"](cfg, lr)

    def update(updates, state, params=None):
        mu = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, state[0], updates)
        nu = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, state[1], updates)
        count = state[2] + 1
        step = jax.tree.map(lambda m, v: -lr(state[2]) * m / (jnp.sqrt(v) + 1e-8), mu, nu)
        return step, (mu, nu, count)

    init = lambda p: (jax.tree.map(jnp.zeros_like, p), jax.tree.map(jnp.zeros_like, p), jnp.zeros([], jnp.int32))  # noqa: E731
    return optax.GradientTransformation(init, update)


def decoupled_decay(cfg, lr):
    return optax.adamw(lr, weight_decay=cfg.weight_decay) if cfg.optimizer == "adam" else REAL["update_rule"](cfg, lr)


def clip_after_update(cfg, lr):
    if cfg.clip_grad_norm is None:
        return REAL["update_rule"](cfg, lr)
    return optax.chain(REAL["update_rule"](cfg, lr), fopt.clip_by_global_norm(cfg.clip_grad_norm))


def warmup_off_by_one(step, cfg, total, xp):
    return REAL["lr_factor"](step - 1, cfg, total, xp)


def smoothing_over_other_classes(logits, labels, eps):
    k = logits.shape[-1]
    onehot = jax.nn.one_hot(labels, k, dtype=logits.dtype)
    targets = onehot * (1 - eps) + (1 - onehot) * eps / (k - 1)
    return optax.softmax_cross_entropy(logits, targets).mean()


REAL = {"update_rule": fopt.update_rule, "lr_factor": fopt.lr_factor}
MUTATIONS = {  # name: (config, {(module, attribute): replacement}, the piece the check must name)
    "adam eps inside the root": ({"optimizer": "adam"}, {(fopt, "update_rule"): adam_eps_inside_root},
                                 "optimizer (adam)"),
    "adam bias correction off": ({"optimizer": "adam"}, {(fopt, "update_rule"): adam_without_bias_correction},
                                 "optimizer (adam)"),
    "weight decay decoupled": ({"optimizer": "adam", "weight_decay": 0.05},
                               {(fopt, "update_rule"): decoupled_decay, (fopt, "coupled_weight_decay"): lambda c: []},
                               "weight decay"),
    "clipping after the update": ({"optimizer": "adam", "clip_grad_norm": 0.5},
                                  {(fopt, "update_rule"): clip_after_update, (fopt, "clipping"): lambda c: []},
                                  "gradient clipping"),
    "warmup off by one": ({"optimizer": "adam"}, {(fopt, "lr_factor"): warmup_off_by_one},
                          "schedule (warmup / cosine)"),
    "label smoothing over K-1": ({"optimizer": "adam", "label_smoothing": 0.1},
                                 {(fsteps, "loss_fn"): smoothing_over_other_classes}, "label smoothing"),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_a_planted_difference_fails_and_is_named(name, monkeypatch):
    train, patches, piece = MUTATIONS[name]
    for (module, attribute), replacement in patches.items():
        monkeypatch.setattr(module, attribute, replacement)
    report = check(cfg_for(**train))
    assert not report["ok"]
    assert report["culprit"] == piece, report["culprit"]


def test_own_dropout_masks_fail_and_are_named(monkeypatch):
    """With dropout on, flax drawing its own masks instead of the shared ones is found and named."""
    from nin_flax.backend import FlaxBackend

    monkeypatch.setattr(FlaxBackend, "_shared_mask", lambda self, batch: None)
    cfg = cfg_for(optimizer="adam")
    cfg.model.dropout = 0.5
    report = check(cfg)
    assert not report["ok"] and report["culprit"] == "dropout (shared masks)"


def test_augmentation_flipped_the_other_way_fails_and_is_named(monkeypatch):
    """flax mirroring its shift (a sign slip in the port) is found and named."""
    real = fsteps.augment
    monkeypatch.setattr(fsteps, "augment", lambda images, params: real(images, params.at[:, 1].multiply(-1)))
    cfg = cfg_for(optimizer="adam")
    cfg.data.augment_shift = 3
    report = check(cfg)
    assert not report["ok"] and report["culprit"] == "augmentation"
