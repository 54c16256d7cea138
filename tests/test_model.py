"""One spec, three readings: analytic, torch and flax agree on shapes, params and FLOPs; init laws match."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.utils.flop_counter import FlopCounterMode

import nin_flax.model as fm
import nin_torch.model as tm
from nin_flax.kernels import strided_max_pool
from nin_flax.weights import state_of as flax_state
from shared.arch import min_image_size, nin_spec
from shared.config import ModelConfig
from shared.errors import UserError
from shared.init import TRUNCATED_NORMAL_STD_CORRECTION, bias_dist, weight_dist
from shared.summary import layer_table, totals, xla_style_flops

VARIANTS = [
    ModelConfig(num_1x1=0), ModelConfig(num_1x1=1), ModelConfig(), ModelConfig(num_1x1=3),
    ModelConfig(mid_kernel=3), ModelConfig(head="fc"), ModelConfig(widths=(64, 128, 192), last_width=32),
    ModelConfig(final_relu=False),
]


def torch_taps(cfg: ModelConfig, size: int) -> dict[str, tuple]:
    taps = {}
    with torch.no_grad():
        tm.build_model(cfg, size).eval()(torch.zeros(1, cfg.in_channels, size, size), taps)
    return {k: tuple(v.shape[1:]) for k, v in taps.items()}


def flax_taps(cfg: ModelConfig, size: int) -> dict[str, tuple]:
    model = fm.build_model(cfg, size)
    model.eval()
    taps = {}
    model(jnp.zeros((1, size, size, cfg.in_channels)), taps)
    return {k: tuple(v.shape[1:][-1:] + v.shape[1:-1]) if v.ndim == 4 else tuple(v.shape[1:]) for k, v in taps.items()}


@pytest.mark.parametrize("size", [224, 96, 67])
@pytest.mark.parametrize("cfg", VARIANTS, ids=lambda c: f"n{c.num_1x1}-k{c.mid_kernel}-{c.head}-w{c.widths[0]}")
def test_shapes_and_params_agree(cfg, size):
    rows = layer_table(nin_spec(cfg, size), size)
    analytic = {r.name: r.shape for r in rows}
    assert torch_taps(cfg, size) == analytic
    assert flax_taps(cfg, size) == analytic
    torch_params = {n: p.numel() for n, p in tm.build_model(cfg, size).named_parameters()}
    flax_params = {n: a.size for n, a in flax_state(fm.build_model(cfg, size)).items()}
    assert torch_params == flax_params
    per_layer = {r.name: r.params for r in rows if r.params}
    for layer, count in per_layer.items():
        assert sum(n for name, n in torch_params.items() if name.rsplit(".", 1)[0] == layer) == count


def test_reference_figures():
    d2l = totals(layer_table(nin_spec(ModelConfig(), 224), 224))
    assert d2l == {"params": 1_992_166, "macs": 762_297_352, "flops": 1_524_594_704}
    assert totals(layer_table(nin_spec(ModelConfig(num_1x1=1), 224), 224))["params"] == 1_769_112
    assert min_image_size() == 67
    with FlopCounterMode(display=False) as counter:
        tm.build_model(ModelConfig(), 224)(torch.zeros(1, 1, 224, 224))
    assert counter.get_total_flops() == 1_524_594_704


@pytest.mark.parametrize("cfg, size", [(ModelConfig(), 224), (ModelConfig(head="fc", final_relu=False), 96),
                                       (ModelConfig(mid_kernel=3, num_1x1=3), 100)])
def test_xla_cost_analysis_is_explained(cfg, size):
    model = fm.build_model(cfg, size)
    model.eval()
    graph, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graph, state)(x))
    cost = forward.lower(state, jnp.zeros((1, size, size, 1))).compile().cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    assert abs(xla - xla_style_flops(nin_spec(cfg, size), size)) <= 1e-6 * xla  # XLA sums in float32


def test_too_small_input_is_refused_before_building():
    with pytest.raises(UserError, match="the smallest input this network accepts is 67 px"):
        tm.build_model(ModelConfig(), 28)
    with pytest.raises(UserError, match="67 px"):
        fm.build_model(ModelConfig(), 66)


# ----- init laws: on a large layer the sample std is within a few percent of the formula -----

BIG = ModelConfig(widths=(96, 256, 512))  # blocks.2.conv0: 512 x 256 x 3 x 3 = 1.18M weights


def sampled(framework: str, scheme: str) -> dict[str, np.ndarray]:
    cfg = ModelConfig(**{**BIG.__dict__, "init": scheme})
    if framework == "torch":
        return {n: p.detach().numpy() for n, p in tm.build_model(cfg, 96, seed=3).named_parameters()}
    return flax_state(fm.build_model(cfg, 96, seed=3))


@pytest.mark.parametrize("framework", ["torch", "flax"])
@pytest.mark.parametrize("scheme", ["torch", "flax", "xavier_uniform", "kaiming_normal"])
def test_init_distributions(framework, scheme):
    state = sampled(framework, scheme)
    for layer in ("blocks.2.conv0", "blocks.1.conv1"):
        w, b = state[f"{layer}.weight"], state[f"{layer}.bias"]
        want = weight_dist(scheme, w.shape)
        assert abs(w.std() / want.std - 1) < 0.03, (layer, w.std(), want.std)
        assert abs(w.mean()) < 0.03 * want.std
        if want.kind == "uniform":
            assert np.abs(w).max() <= want.scale
        if want.kind == "truncated_normal":
            assert np.abs(w).max() <= 2 * want.std / TRUNCATED_NORMAL_STD_CORRECTION + 1e-7
        bias = bias_dist(scheme, w.shape)
        if bias.kind == "zeros":
            assert not b.any()
        else:
            assert np.abs(b).max() <= bias.scale and b.std() > 0.5 * bias.std


def test_torch_scheme_is_pytorchs_default():
    """PyTorch's own Conv2d init is kaiming_uniform(a=sqrt(5)): bound 1/sqrt(fan_in), same as ours."""
    conv = torch.nn.Conv2d(256, 512, 3)
    bound = 1 / math.sqrt(256 * 9)
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.99 * bound
    assert weight_dist("torch", tuple(conv.weight.shape)).scale == pytest.approx(bound)


def test_strided_max_pool_is_xlas_pool_bit_for_bit():
    """The CPU pool (max of strided views, first maximum takes the gradient) equals XLA's reduce-window pool:
    values bit for bit, gradients on the same elements (ties included) up to the order of summation."""
    x = np.random.default_rng(0).random((2, 11, 11, 3), dtype=np.float32)
    x[:, :4, :4, :] = 0.5  # windows with tied maxima
    x[:, 6:, 6:, :] = 0.0  # and all-zero ones, as after a ReLU
    reference = lambda x: nnx.max_pool(x, (3, 3), strides=(2, 2))  # noqa: E731
    strided = lambda x: strided_max_pool(x, 3, 2)  # noqa: E731
    weights = jnp.asarray(np.random.default_rng(1).random((2, 5, 5, 3), dtype=np.float32))
    for pool in (reference, strided):
        assert pool(jnp.asarray(x)).shape == (2, 5, 5, 3)
    assert jnp.array_equal(reference(x), strided(x))
    grad = lambda pool: np.asarray(jax.grad(lambda x: (pool(x) * weights).sum())(jnp.asarray(x)))  # noqa: E731
    expected, got = grad(reference), grad(strided)
    assert np.array_equal(expected != 0, got != 0)  # the same element of every window takes the gradient
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # sums over overlapping windows: in another order


def ynn_convolutions(hlo: str) -> int:
    """How many convolutions of a compiled XLA:CPU module run inside YNNPACK fusions."""
    bodies = {m[1]: m[2] for m in re.finditer(r"^%?([\w.\-]+) \(.*?\{\n(.*?)\n\}", hlo, re.M | re.S)}
    called = re.findall(r"calls=%?([\w.\-]+)[^\n]*__ynn_fusion", hlo)
    return sum("convolution(" in bodies.get(name, "") for name in called)


def test_cpu_steps_run_convolutions_in_xla_not_ynnpack():
    """The flax steps on the CPU are compiled with nin_flax.runtime's options: every convolution of the training
    step is XLA's own (YNNPACK's are slower on NiN's layers), while XLA's defaults would hand them to YNNPACK."""
    from compare.backends import make_backend
    from nin_flax.runtime import CPU_COMPILER_OPTIONS, compiler_options
    from shared.presets import preset_config

    assert compiler_options("cpu") == CPU_COMPILER_OPTIONS and compiler_options("gpu") is None
    cfg = preset_config("smoke")
    cfg.data.train_limit = cfg.data.test_limit = 64
    backend = make_backend("flax", cfg)
    data, indices = backend.train_data, backend._place(np.arange(cfg.data.batch_size, dtype=np.int32))
    compiled = backend._train_step.lower(backend.state, data.images, data.labels, indices, None, None).compile()
    hlo = compiled.as_text()
    assert hlo.count("convolution(") >= 3 and ynn_convolutions(hlo) == 0
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))  # noqa: E731
    grad = jax.grad(lambda x, w: conv(x, w).sum(), argnums=(0, 1))
    args = jnp.ones((2, 8, 8, 16)), jnp.ones((3, 3, 16, 32))
    assert ynn_convolutions(jax.jit(grad).lower(*args).compile().as_text()) > 0  # the default the options change
