# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # NiN two ways: PyTorch and Flax side by side
#
# A companion to the d2l chapter [Network in Network](https://d2l.ai/chapter_convolutional-modern/nin.html).
# One config builds the same NiN in PyTorch and in Flax (nnx); we look at its layers in both, port one
# initialisation both ways and check that the logits agree, train both briefly on real Fashion-MNIST from that
# one init, and classify a picture with the shipped weights. Run it from the repository (`make setup` installs
# everything; the kernel's working folder is `notebooks/`). It takes about two minutes on two CPU cores.

# %%
import os
import sys

if os.path.basename(os.getcwd()) == "notebooks":
    os.chdir("..")
sys.path.insert(0, os.getcwd())

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import torch

from nin_flax.model import build_model as flax_nin
from nin_torch.model import build_model as torch_nin
from shared.arch import D2L_NIN
from shared.config import ModelConfig
from shared.summary import layer_table

# %% [markdown]
# ## One table, two networks
#
# The network is one literal list in `shared/arch.py`, row for row the book's `nn.Sequential`. Both model files
# walk the list built from it, so one `ModelConfig` gives the same network in both frameworks.

# %%
for row in D2L_NIN:
    print(row)

# %%
cfg, size = ModelConfig(), 224  # the book's NiN at the book's image size
t_model, f_model = torch_nin(cfg, size, seed=0).eval(), flax_nin(cfg, size, seed=0)
f_model.eval()

t_taps, f_taps = {}, {}
with torch.no_grad():
    t_model(torch.zeros(1, 1, size, size), t_taps)
f_model(jnp.zeros((1, size, size, 1)), f_taps)


def chw(shape: tuple) -> tuple:  # flax is NHWC: show it as C, H, W
    return (shape[-1], *shape[1:-1]) if len(shape) == 4 else tuple(shape[1:])


print(f"{'layer':<16}{'torch (C,H,W)':>16}{'flax (H,W,C)':>16}{'analytic':>16}{'params':>10}")
for row in layer_table(t_model.spec, size):
    t_shape, f_shape = tuple(t_taps[row.name].shape[1:]), tuple(f_taps[row.name].shape[1:])
    assert t_shape == row.shape and chw((1, *f_shape)) == row.shape
    print(f"{row.name:<16}{str(t_shape):>16}{str(f_shape):>16}{str(row.shape):>16}{row.params:>10,}")
print(f"parameters: torch {sum(p.numel() for p in t_model.parameters()):,}, analytic "
      f"{sum(r.params for r in layer_table(t_model.spec, size)):,}")

# %% [markdown]
# ## Port one init both ways
#
# The portable layout is PyTorch's (conv kernels OIHW); flax keeps HWIO. `state_of` and `load_state` move a
# network's parameters between the two through that one layout. Ported, the two networks compute the same
# logits up to float32 rounding, in either direction.

# %%
from nin_flax.weights import load_state as flax_load
from nin_flax.weights import state_of as flax_state
from nin_torch.weights import load_state as torch_load
from nin_torch.weights import state_of as torch_state

x = np.random.default_rng(0).random((8, 1, size, size), dtype=np.float32)
flax_from_torch = flax_nin(cfg, size, seed=1)
flax_load(flax_from_torch, torch_state(t_model))
flax_from_torch.eval()
torch_from_flax = torch_nin(cfg, size, seed=2).eval()
torch_load(torch_from_flax, flax_state(f_model))

with torch.no_grad():
    logits_t, logits_tf = t_model(torch.from_numpy(x)).numpy(), torch_from_flax(torch.from_numpy(x)).numpy()
logits_ft = np.asarray(flax_from_torch(jnp.asarray(x.transpose(0, 2, 3, 1))))
logits_f = np.asarray(f_model(jnp.asarray(x.transpose(0, 2, 3, 1))))
torch_to_flax = float(np.abs(logits_t - logits_ft).max())
flax_to_torch = float(np.abs(logits_f - logits_tf).max())
print(f"torch -> flax: max |logits torch - logits flax| = {torch_to_flax:.3g} (max |logit| "
      f"{np.abs(logits_t).max():.3g})")
print(f"flax -> torch: max |logits flax - logits torch| = {flax_to_torch:.3g} (max |logit| "
      f"{np.abs(logits_f).max():.3g})")

# %% [markdown]
# ## Train both from one init
#
# Both trainers' backends (`nin_torch/backend.py`, `nin_flax/backend.py`: the objects `python -m
# nin_*.train` drives) start from one init draw, see the same batches in the same order (the shared epoch
# order) with the same dropout masks (`--dropout-masks shared`) and run Adam with warmup and cosine decay: 240
# steps of batch 64 at 67 px, the network's smallest input, on the first 15,360 training images. The final
# ReLU is off (with it a class can die for good: the discussion's "train accuracy collapse", docs/RESULTS.md).
# What still differs is float32 rounding: where two inputs of a max-pool window or a ReLU tie within rounding
# the frameworks decide differently, and Adam turns the tiny gradient differences into full-size steps. So
# the curves start together and drift apart. A third run shows how far that is: torch again, from the same init
# nudged by one ulp (one unit in the last place of every weight). It drifts from the first torch run as far as
# flax does: the noise floor (`python -m compare.noise_floor`, docs/PARITY.md) measures this over a whole epoch,
# with a fourth run (flax from one ulp away). In float64 torch and flax agree to 1e-15 step after step
# (`python -m compare.parity`): the same computation, rounded differently.

# %%
from compare.backends import make_backend
from shared.cli import parse_train_args
from shared.data import epoch_order

STEPS, SYNC = 240, 10
train_cfg = parse_train_args(["--preset", "cpu", "--image-size", "67", "--batch-size", "64", "--train-limit", "15360",
                              "--test-limit", "2000", "--epochs", "1", "--warmup-steps", "30", "--dropout-masks",
                              "shared"], "torch")
init = torch_state(torch_nin(train_cfg.model, 67, seed=0))
curves, test_acc, trained = {}, {}, {}
nudged = {name: np.nextafter(a, np.inf).astype(a.dtype) for name, a in init.items()}  # one ulp up, everywhere
for run, (framework, start) in {"torch": ("torch", init), "flax": ("flax", init),
                                "torch, init + 1 ulp": ("torch", nudged)}.items():
    backend = make_backend(framework, train_cfg)
    backend.set_weights(start)
    order, losses, pending = epoch_order(0, 0, backend.n_train), [], []
    for step in range(STEPS):
        pending.append(backend.train_step(order[step * 64:(step + 1) * 64]))
        if len(pending) == SYNC:
            values, pending = backend.fetch(pending), []
            losses.append(values[:, 0].sum() / (SYNC * 64))
    results = backend.fetch([backend.eval_batch(np.arange(i, min(i + 500, backend.n_test)))
                             for i in range(0, backend.n_test, 500)]).sum(0)
    curves[run], test_acc[run] = losses, results[1] / backend.n_test
    weights = backend.get_weights(np.float64)  # canonical names; each framework lists them in its own order
    trained[run] = np.concatenate([weights[name].ravel() for name in sorted(weights)])
    print(f"{run}: training loss {losses[0]:.3f} -> {losses[-1]:.3f}, test accuracy "
          f"{test_acc[run]:.3f} on {backend.n_test} test images")


def distance(a: str, b: str) -> float:  # relative weight distance, the noise floor's measure
    return float(np.linalg.norm(trained[a] - trained[b]) / np.linalg.norm(trained[a]))


print(f"after {STEPS} steps, relative weight distance torch vs flax {distance('torch', 'flax'):.3f}, "
      f"torch vs torch from an init one ulp away {distance('torch', 'torch, init + 1 ulp'):.3f}")

# %%
steps = np.arange(1, len(curves["torch"]) + 1) * SYNC
plt.figure(figsize=(6, 3.5))
for run, losses in curves.items():
    plt.plot(steps, losses, ":" if "ulp" in run else "-", label=f"{run} (test acc {test_acc[run]:.3f})")
plt.xlabel("optimizer step")
plt.ylabel(f"training loss (mean over {SYNC} steps)")
plt.title("one init, both frameworks; and torch from one ulp away")
plt.legend()
plt.show()

# %% [markdown]
# ## Your own picture, with the shipped weights
#
# `weights/nin-fashion-mnist-best.safetensors` (92.7% test accuracy in both frameworks) is what `python -m
# nin_torch.predict IMAGE` and `python -m nin_flax.predict IMAGE` use. A picture is made Fashion-MNIST-like
# first: grayscale, a light item on black (a light background is inverted), padded square, 28 px.

# %%
from nin_flax.predict import load_model as flax_weights
from nin_flax.predict import logits_of as flax_logits
from nin_torch.predict import load_model as torch_weights
from nin_torch.predict import logits_of as torch_logits
from shared.images import SHIPPED_WEIGHTS, prepare_image, top_k

picture = prepare_image("examples/trousers-on-white.jpg")
for framework, (load, logits_of) in {"torch": (torch_weights, torch_logits),
                                     "flax": (flax_weights, flax_logits)}.items():
    model, weights_size, normalize = load(SHIPPED_WEIGHTS)
    best = top_k(logits_of(model, picture.pixels[None], weights_size, normalize))[0]
    print(f"{framework}: " + ", ".join(f"{name} {prob:.4f}" for name, prob in best))
plt.figure(figsize=(2, 2))
plt.imshow(picture.pixels, cmap="gray")
plt.axis("off")
plt.title("what the network sees")
plt.show()
