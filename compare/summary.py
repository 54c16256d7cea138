"""`python -m compare.summary`: per-layer shapes, params, MACs, FLOPs and activation memory of one NiN config,
analytic (shared.summary) beside what torch and flax report for the models they build."""

from __future__ import annotations

from pathlib import Path

from shared.arch import min_image_size, nin_spec
from shared.cli import add_config_flags, config_from_args
from shared.config import ArgumentParser, Config
from shared.errors import run_cli
from shared.files import atomic_write, check_writable, json_text
from shared.summary import layer_table, memory_estimate, totals, xla_style_flops
from shared.weights import check_inference_fits


def _layer_params(named: dict[str, int]) -> dict[str, int]:
    """Parameter counts per layer name (the part before .weight/.bias/.kernel)."""
    counts: dict[str, int] = {}
    for name, n in named.items():
        layer = name.rsplit(".", 1)[0]
        counts[layer] = counts.get(layer, 0) + n
    return counts


def torch_figures(cfg: Config) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nin_torch.model import build_model

    size = cfg.data.image_size
    model = build_model(cfg.model, size).eval()
    x = torch.zeros(1, cfg.model.in_channels, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    named = {name: p.numel() for name, p in model.named_parameters()}
    return {"params": sum(named.values()), "flops": int(counter.get_total_flops()), "layers": _layer_params(named)}


def flax_figures(cfg: Config) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from nin_flax.model import build_model
    from nin_flax.weights import state_of

    size = cfg.data.image_size
    model = build_model(cfg.model, size)
    model.eval()
    graph, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graph, state)(x))
    x = jnp.zeros((1, size, size, cfg.model.in_channels))
    cost = forward.lower(state, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    named = {name: int(np.prod(a.shape)) for name, a in state_of(model).items()}
    return {"params": sum(named.values()), "flops": int(cost["flops"]), "layers": _layer_params(named)}


def summarize(cfg: Config) -> dict:
    size = cfg.data.image_size
    spec = nin_spec(cfg.model, size)
    rows = layer_table(spec, size)
    torch_fig, flax_fig = torch_figures(cfg), flax_figures(cfg)
    layers = [{**r.to_dict(), "torch_params": torch_fig["layers"].get(r.name, 0),
               "flax_params": flax_fig["layers"].get(r.name, 0)} for r in rows]
    return {
        "config": {"model": cfg.to_dict()["model"], "image_size": size, "batch_size": cfg.data.batch_size},
        "layers": layers,
        "total": totals(rows),
        "torch": {"params": torch_fig["params"], "flops": torch_fig["flops"]},
        "flax": {"params": flax_fig["params"], "flops": flax_fig["flops"]},
        "xla_style_flops": xla_style_flops(spec, size),
        "min_image_size": min_image_size(),
        "memory": memory_estimate(spec, size, cfg.data.batch_size),
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def print_table(s: dict) -> None:
    cfg = s["config"]
    print(f"NiN at {cfg['image_size']} px, {cfg['model']['in_channels']} input channel(s), "
          f"num_1x1={cfg['model']['num_1x1']}, mid_kernel={cfg['model']['mid_kernel']}, head={cfg['model']['head']}")
    header = (f"{'layer':<16}{'output (C,H,W)':>18}{'params':>11}{'torch':>9}{'flax':>9}{'MACs':>15}"
              f"{'FLOPs':>16}{'act/ex':>11}")
    print(header)
    print("-" * len(header))
    for r in s["layers"]:
        shape = "x".join(map(str, r["shape"]))
        print(f"{r['name']:<16}{shape:>18}{r['params']:>11,}{r['torch_params']:>9,}{r['flax_params']:>9,}"
              f"{r['macs']:>15,}{r['flops']:>16,}{r['activation_bytes'] / 1024:>8.1f}KiB")
    t = s["total"]
    print("-" * len(header))
    print(f"{'total':<16}{'':>18}{t['params']:>11,}{'':>18}{t['macs']:>15,}{t['flops']:>16,}")
    print()
    print(f"{'':<34}{'params':>14}{'forward FLOPs':>18}")
    print(f"{'analytic (2 per MAC, no bias)':<34}{t['params']:>14,}{t['flops']:>18,}")
    print(f"{'torch (FlopCounterMode)':<34}{s['torch']['params']:>14,}{s['torch']['flops']:>18,}")
    print(f"{'flax (XLA cost_analysis)':<34}{s['flax']['params']:>14,}{s['flax']['flops']:>18,}")
    print(f"{'analytic, counted as XLA does':<34}{'':>14}{s['xla_style_flops']:>18,}")
    print("XLA counts differently: only the conv window taps over real input (not those on the zero padding "
          "of the\n5x5/3x3 convs), plus bias adds, ReLUs, max-pool compares and the mean; its total is float32.")
    m = s["memory"]
    print(f"\nsmallest input: {s['min_image_size']} px.  estimates at batch {cfg['batch_size']}, fp32: "
          f"weights {_mib(m['param_bytes'])}, inference {_mib(m['inference_bytes'])}, "
          f"training (SGD momentum) {_mib(m['training_bytes'])}")


@run_cli
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m compare.summary", description=__doc__)
    add_config_flags(parser, sections=("model", "data"))
    parser.add_argument("--json", metavar="PATH", help="also write the summary as JSON")
    args = parser.parse_args(argv)
    if args.json:
        check_writable(Path(args.json))
    cfg = config_from_args(args)
    # it runs one image through both frameworks
    check_inference_fits(cfg.model, cfg.data.image_size, 1, "the", "lower --image-size or --widths")
    summary = summarize(cfg)
    print_table(summary)
    if args.json:
        atomic_write(Path(args.json), json_text(summary, indent=2))


if __name__ == "__main__":
    main()
