"""`python -m compare.parity`: the proof that the torch and flax NiN are the same network.

One config, one real Fashion-MNIST batch through both data pipelines, weights ported both ways, then:
pipeline tensors, per-layer shapes (with the analytic ones), parameter counts, logits in both directions
with every layer's activation diff, gradients w.r.t. every parameter, and K steps of the trainers' own
step with the configured optimizer, schedule, weight decay, clipping and label smoothing (in float64, where
the frameworks agree to rounding; the drift at the configured precision is shown beside it).
The trainer flags apply (--preset cpu checks what the cpu preset trains); --weights FILE takes the
architecture and preprocessing recorded in the file.
Exit 0 when every check is within tolerance, 1 when one is not, 2 on bad input.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from compare.to_onnx import EXPORTERS
from compare.to_onnx import referee as onnx_referee
from compare.train_parity import checked_config, train_check
from shared.arch import nin_spec
from shared.cli import add_config_flags, config_from_args
from shared.config import CHOICES, ArgumentParser, Config
from shared.data import epoch_order
from shared.errors import run_cli
from shared.files import atomic_write, check_writable, json_text
from shared.runtime import host_available_memory
from shared.summary import check_fits_memory, layer_table, totals
from shared.validate import validate
from shared.weights import State, apply_saved_config, flax_to_canonical, load_for, load_portable

TOL_PIPELINE = 1e-6
TOL_LOGITS = 1e-5  # times max(1, max |logit|)
TOL_GRADS = 1e-4  # max relative diff
# Max-pool's gradient at an exact tie is arbitrary, and the frameworks break ties differently: the float64
# gradient check adds this dither (one array, the same for both) to the real batch so that no window ties.
GRAD_DITHER = 1e-3

Port = Callable[[State], State]


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


def _to_nchw(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a


def _to_nhwc(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1)


class Sides:
    """The torch and flax halves of the check: their devices, training data and model builders."""

    def __init__(self, cfg: Config, device: str):
        import torch

        from nin_flax import data as fdata
        from nin_flax import runtime as fruntime
        from nin_torch import data as tdata
        from nin_torch import runtime as truntime

        self.cfg = cfg
        self.tdev = truntime.select_device(device)
        self.fdev = fruntime.select_device(device)
        truntime.set_precision("fp32")
        fruntime.set_precision("fp32")
        self.torch, self.tdata, self.fdata = torch, tdata, fdata
        self.t_train = tdata.DeviceData("train", cfg.data.data_dir, cfg.data.train_limit, self.tdev)
        self.f_train = fdata.DeviceData("train", cfg.data.data_dir, cfg.data.train_limit, self.fdev)

    def batch(self, indices: np.ndarray):
        """The same IDX indices through both pipelines: (x_torch NCHW, y_torch, x_flax NHWC, y_flax)."""
        import jax.numpy as jnp

        size, norm = self.cfg.data.image_size, self.cfg.data.normalize
        ti, tl = self.t_train.batch(self.torch.from_numpy(indices).to(self.tdev))
        fi, fl = self.f_train.batch(jnp.asarray(indices))
        return self.tdata.preprocess(ti, size, norm), tl, self.fdata.preprocess(fi, size, norm), fl

    def torch_model(self, seed: int):
        from nin_torch.model import build_model

        return build_model(self.cfg.model, self.cfg.data.image_size, seed).to(self.tdev)

    def flax_model(self, seed: int):
        import jax

        from nin_flax.model import build_model

        with jax.default_device(self.fdev):
            return build_model(self.cfg.model, self.cfg.data.image_size, seed)


def forward_both(sides: Sides, tmodel, fmodel, xt, xf) -> tuple[dict, dict]:
    """Every tap of both models, as numpy in NCHW (logits under 'logits')."""
    tmodel.eval()
    fmodel.eval()
    ttaps, ftaps = {}, {}
    with sides.torch.no_grad():
        tlogits = tmodel(xt, ttaps)
    flogits = fmodel(xf, ftaps)
    tout = {k: v.cpu().numpy() for k, v in ttaps.items()} | {"logits": tlogits.cpu().numpy()}
    fout = {k: _to_nchw(np.asarray(v)) for k, v in ftaps.items()} | {"logits": np.asarray(flogits)}
    return tout, fout


def logits_check(tout: dict, fout: dict) -> dict:
    """Logits within TOL_LOGITS * max(1, max |logit|), and every layer within TOL_LOGITS of its own scale
    (so that a broken port shows even when the logits are tiny, as they are at NiN's init)."""
    max_logit = float(np.max(np.abs(tout["logits"])))
    diff = _max_abs(tout["logits"], fout["logits"])
    layers = {name: _max_abs(tout[name], fout[name]) for name in tout if name != "logits"}
    tol = TOL_LOGITS * max(1.0, max_logit)
    first_bad = next((name for name, d in layers.items() if d > TOL_LOGITS * float(np.max(np.abs(tout[name])))),
                     None)
    return {"ok": diff <= tol and first_bad is None, "max_abs_diff": diff, "max_abs_logit": max_logit,
            "tolerance": tol, "first_diverging_layer": first_bad, "layers": layers}


def grads_check(tmodel, fmodel, xt, yt, xf, yf, float64: bool) -> dict:
    """Relative L2 diff, per tensor, of d(loss)/d(param) from both frameworks on one batch (dropout off).

    In fp32 a handful of max-pool windows and ReLUs whose inputs tie within rounding decide differently in
    the two frameworks, each moving a gradient entry by its full size; in float64 (and with the batch
    dithered so that no window ties exactly) that cannot happen, so the float64 figure is the check."""
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from nin_flax.optim import loss_fn as flax_loss
    from nin_torch.optim import loss_fn as torch_loss

    dtype = torch.float64 if float64 else torch.float32
    tmodel = copy.deepcopy(tmodel).to(dtype).train()
    torch_loss(tmodel(xt.to(dtype)), yt, 0.0).backward()
    tgrads = {n: p.grad.cpu().double().numpy() for n, p in tmodel.named_parameters()}
    with jax.enable_x64(float64):
        jdtype = jnp.float64 if float64 else jnp.float32
        graph, state = nnx.split(fmodel)
        fmodel = nnx.merge(graph, jax.tree.map(lambda a: a.astype(jdtype) if a.dtype == jnp.float32 else a, state))
        fmodel.train()
        grads = nnx.grad(lambda m: flax_loss(m(xf.astype(jdtype)), yf, 0.0))(fmodel)
        flat = {".".join(map(str, p)): np.asarray(v.get_value(), np.float64) for p, v in nnx.to_flat_state(grads)}
    fgrads = flax_to_canonical(flat)
    rel = {n: float(np.linalg.norm((g - fgrads[n]).ravel()) / max(np.linalg.norm(g.ravel()), 1e-30))
           for n, g in tgrads.items()}
    worst = max(rel, key=rel.get)
    return {"ok": rel[worst] <= TOL_GRADS, "max_rel_diff": rel[worst], "worst_tensor": worst,
            "precision": "float64" if float64 else "float32", "tensors": rel}


def run_parity(cfg: Config, batch: int = 8, steps: int = 20, weights: str | None = None, device: str = "auto",
               torch_to_flax: Port | None = None, flax_to_torch: Port | None = None, onnx: str = "torch") -> dict:
    """All checks; `torch_to_flax` / `flax_to_torch` replace the identity port of canonical states (tests
    pass a broken one to see the check fail and name the layer)."""
    import jax

    from nin_flax.weights import load_state as flax_load
    from nin_flax.weights import state_of as flax_state
    from nin_torch.weights import load_state as torch_load
    from nin_torch.weights import state_of as torch_state

    cfg = checked_config(cfg, steps, batch)
    to_flax = torch_to_flax or (lambda s: s)
    to_torch = flax_to_torch or (lambda s: s)
    size, seed = cfg.data.image_size, cfg.train.seed
    spec = nin_spec(cfg.model, size)
    model_cfg = copy.deepcopy(cfg)
    model_cfg.model.dropout = 0.0  # the gradient check compares one deterministic forward
    sides = Sides(model_cfg, device)
    xt, yt, xf, yf = sides.batch(epoch_order(seed, 0, len(sides.t_train))[:batch])
    checks: dict[str, dict] = {}
    pipe = _max_abs(xt.cpu().numpy(), _to_nchw(np.asarray(xf)))
    checks["pipeline"] = {"ok": pipe <= TOL_PIPELINE and bool((yt.cpu().numpy() == np.asarray(yf)).all()),
                          "max_abs_diff": pipe}
    # From here on both models see the very same input array, so the model checks measure the models only.
    xf = jax.device_put(_to_nhwc(xt.cpu().numpy()), sides.fdev)

    tmodel, fmodel = sides.torch_model(seed), sides.flax_model(seed + 1)
    if weights:
        state = load_for(weights, cfg.model, size, cfg.data.normalize)
        torch_load(tmodel, state)
        flax_load(fmodel, state)
    f_from_t = sides.flax_model(seed + 2)
    flax_load(f_from_t, to_flax(torch_state(tmodel)))
    t_from_f = sides.torch_model(seed + 3)
    torch_load(t_from_f, to_torch(flax_state(fmodel)))

    tout, fout = forward_both(sides, tmodel, f_from_t, xt, xf)
    analytic = layer_table(spec, size)
    layers = [{"name": r.name, "torch": list(tout[r.name].shape[1:]), "flax": list(fout[r.name].shape[1:]),
               "analytic": list(r.shape)} for r in analytic]
    checks["shapes"] = {"ok": all(lay["torch"] == lay["flax"] == lay["analytic"] for lay in layers),
                        "layers": layers}
    n_t = sum(a.size for a in torch_state(tmodel).values())
    n_f = sum(a.size for a in flax_state(fmodel).values())
    n_a = totals(analytic)["params"]
    checks["params"] = {"ok": n_t == n_f == n_a, "torch": n_t, "flax": n_f, "analytic": n_a}
    checks["logits_torch_to_flax"] = logits_check(tout, fout)
    checks["logits_flax_to_torch"] = logits_check(*forward_both(sides, t_from_f, fmodel, xt, xf))
    checks["onnx"] = onnx_referee(torch_state(tmodel), model_cfg, xt.cpu().numpy(), tout["logits"], fout["logits"],
                                  TOL_LOGITS, onnx)
    noise = GRAD_DITHER * np.random.default_rng(seed).random(xt.shape, dtype=np.float32)
    xt_d = xt + sides.torch.from_numpy(noise).to(sides.tdev)
    xf_d = xf + _to_nhwc(noise)
    checks["grads"] = grads_check(tmodel, f_from_t, xt_d, yt, xf_d, yf, float64=True)
    checks["train"] = train_check(cfg, to_flax(torch_state(tmodel)), steps)
    info = {"grads_fp32_max_rel_diff": grads_check(tmodel, f_from_t, xt, yt, xf, yf, float64=False)["max_rel_diff"]}
    if sides.tdev.type == "cuda":  # GPUs default to TF32 convolutions: the diff users get without our setting
        from nin_flax.runtime import set_precision as flax_precision
        from nin_torch.runtime import set_precision as torch_precision

        torch_precision("tf32")
        flax_precision("tf32")
        info["logits_default_precision_max_abs_diff"] = logits_check(
            *forward_both(sides, tmodel, f_from_t, xt, xf))["max_abs_diff"]
        torch_precision("fp32")
        flax_precision("fp32")
    return {"ok": all(c["ok"] for c in checks.values()), "config": cfg.to_dict(),
            "device": {"torch": str(sides.tdev), "flax": str(sides.fdev)}, "checks": checks, "info": info}


def _flag(ok: bool) -> str:
    return "ok  " if ok else "FAIL"


def print_report(report: dict) -> None:
    c = report["checks"]
    cfg = report["config"]
    print(f"parity at {cfg['data']['image_size']} px, {cfg['train']['optimizer']} lr {cfg['train']['lr']:g}, on "
          f"torch {report['device']['torch']} / flax {report['device']['flax']}")
    print(f"{_flag(c['pipeline']['ok'])} pipeline   max |x_torch - x_flax| = {c['pipeline']['max_abs_diff']:.3g}")
    print(f"{_flag(c['shapes']['ok'])} shapes     {len(c['shapes']['layers'])} layers, torch = flax = analytic")
    for lay in c["shapes"]["layers"]:
        if not lay["torch"] == lay["flax"] == lay["analytic"]:
            print(f"       {lay['name']}: torch {lay['torch']} flax {lay['flax']} analytic {lay['analytic']}")
    p = c["params"]
    print(f"{_flag(p['ok'])} params     torch {p['torch']:,}  flax {p['flax']:,}  analytic {p['analytic']:,}")
    for key, label in (("logits_torch_to_flax", "torch->flax"), ("logits_flax_to_torch", "flax->torch")):
        lc = c[key]
        print(f"{_flag(lc['ok'])} logits {label}  max abs diff {lc['max_abs_diff']:.3g} "
              f"(max |logit| {lc['max_abs_logit']:.3g}, tolerance {lc['tolerance']:.3g})")
        if not lc["ok"]:
            print(f"       first diverging layer: {lc['first_diverging_layer']}")
            for name, d in lc["layers"].items():
                print(f"       {name:<16} {d:.3g}")
    o = c["onnx"]
    if "skipped" in o:
        print(f"skip onnx       {o['skipped']}")
    else:
        flax_export = (f"; exported from flax: {o['flax_export_max_abs_diff_torch']:.3g} / "
                       f"{o['flax_export_max_abs_diff_flax']:.3g}" if "flax" in o["exported_from"] else "")
        print(f"{_flag(o['ok'])} onnx       ONNX Runtime (export from torch, opset {o['opset']}) vs torch "
              f"{o['max_abs_diff_torch']:.3g}, vs flax {o['max_abs_diff_flax']:.3g}{flax_export} "
              f"(tolerance {o['tolerance']:.3g})")
    g = c["grads"]
    print(f"{_flag(g['ok'])} grads      max relative diff {g['max_rel_diff']:.3g} in float64 (worst: "
          f"{g['worst_tensor']}); in fp32: {report['info']['grads_fp32_max_rel_diff']:.3g} (max-pool/ReLU near-ties)")
    t, n = c["train"], c["train"]["native"]
    print(f"{_flag(t['ok'])} train      {t['steps']} trainer steps ({', '.join(t['pieces']) or 'plain SGD'}) in "
          f"float64: loss max rel diff {t['max_rel_diff']:.3g}, weights {t['weights_max_rel_diff']:.3g} "
          f"(tolerance {t['tolerance']['loss']:.0e} / {t['tolerance']['weights']:.0e}); "
          f"loss {t['loss_torch'][0]:.4f} -> {t['loss_torch'][-1]:.4f}")
    print(f"info       the same steps in {n['precision']}: loss max rel diff {n['max_rel_diff']:.3g}, weights "
          f"{n['weights_max_rel_diff']:.3g} (rounding, amplified by training)")
    if t["culprit"]:
        print(f"       the frameworks differ in: {t['culprit']}")
    if "logits_default_precision_max_abs_diff" in report["info"]:
        print(f"info       logits torch->flax at the GPUs' default (TF32) precision: max abs diff "
              f"{report['info']['logits_default_precision_max_abs_diff']:.3g}")
    print("parity: OK" if report["ok"] else "parity: FAILED")


@run_cli
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m compare.parity", description=__doc__)
    add_config_flags(parser, sections=("model", "data", "train"))
    parser.add_argument("--precision", choices=CHOICES["precision"], default="fp32",
                        help="precision of the informational drift run (the check itself runs in float64)")
    parser.add_argument("--batch", type=int, default=8, help="examples in the checked batch (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="training steps compared (default 20)")
    parser.add_argument("--weights", metavar="FILE",
                        help="check these weights (their recorded architecture and preprocessing apply)")
    parser.add_argument("--device", choices=CHOICES["device"], default="auto")
    parser.add_argument("--onnx", choices=EXPORTERS, default="torch",
                        help="the ONNX Runtime check runs the model exported from torch (default), from torch and "
                             "from flax (both: needs jax2onnx, `make onnx-flax`), or not at all (none)")
    parser.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1:
        parser.error("--batch and --steps must be >= 1")
    cfg = config_from_args(args)
    cfg.run.precision, cfg.run.device = args.precision, args.device
    if args.weights:
        cfg = validate(apply_saved_config(cfg, load_portable(args.weights)[1]))
    check_fits_memory(nin_spec(cfg.model, cfg.data.image_size), cfg.data.image_size, args.batch,
                      host_available_memory(), "this machine")
    if args.json:
        check_writable(Path(args.json))
    report = run_parity(cfg, args.batch, args.steps, args.weights, args.device, onnx=args.onnx)
    print_report(report)
    if args.json:
        atomic_write(Path(args.json), json_text(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
