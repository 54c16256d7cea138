"""compare.convert both ways with the book's own nets (tests/book_nin.py, built from the book's code, not through
this project's models): each file it writes loads into the outside model the way its users load it and gives
that model's own logits; round trips are bit-exact; ONNX Runtime runs what it exports."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import serialization

from compare import to_onnx
from shared.weights import load_portable, saved_model_config

from . import book_nin
from .conftest import ROOT, assert_user_error, call, requires_onnx

SIZE = 224  # the book's; its JAX NiN pools globally only at 195-226 px
TOLERANCE = 1e-5  # as parity's logits check: relative to max(1, max |logit|)


def x_nchw(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, SIZE, SIZE), dtype=np.float32)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a - b).max()) <= TOLERANCE * max(1.0, float(np.abs(b).max()))


def ours(path) -> tuple[np.ndarray, np.ndarray]:
    """Logits of this project's torch and flax NiNs loading a portable file."""
    from nin_flax.predict import load_model as flax_model
    from nin_torch.predict import load_model as torch_model

    x = x_nchw()
    t, _, _ = torch_model(path)
    f, _, _ = flax_model(path)
    with torch.no_grad():
        tl = t(torch.from_numpy(x)).numpy()
    return tl, np.asarray(f(jnp.asarray(x.transpose(0, 2, 3, 1))))


def torch_logits(net) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x_nchw())).numpy()


TORCH_VARIANTS = {"book": {}, "one-1x1-widths-256": {"widths": (96, 256, 256), "block": book_nin.nin_block_one_1x1}}


@pytest.mark.e2e
@pytest.mark.parametrize("variant", TORCH_VARIANTS)
def test_the_books_pytorch_nin_goes_in_and_comes_out(variant, capsys, tmp_path):
    torch.manual_seed(0)
    net = book_nin.torch_nin(**TORCH_VARIANTS[variant])
    torch.save(net.state_dict(), tmp_path / "nin.pt")
    result = call(capsys, "compare.convert", str(tmp_path / "nin.pt"), str(tmp_path / "w.safetensors"))
    assert result.returncode == 0, result.stderr
    want = torch_logits(net)
    for got in ours(tmp_path / "w.safetensors"):
        assert close(got, want)
    result = call(capsys, "compare.convert", str(tmp_path / "w.safetensors"), str(tmp_path / "back.pth"))
    assert result.returncode == 0, result.stderr
    fresh = book_nin.torch_nin(**TORCH_VARIANTS[variant])
    fresh.load_state_dict(torch.load(tmp_path / "back.pth"))  # as its users load it
    assert np.array_equal(torch_logits(fresh), want)
    original, back = net.state_dict(), torch.load(tmp_path / "back.pth")
    assert list(original) == list(back) and all(torch.equal(original[k], back[k]) for k in original)


def linen_variables(**kwargs):
    model = book_nin.LinenNiN(training=False, **kwargs)
    return model, model.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 1)))


def linen_logits(model, variables) -> np.ndarray:
    return np.asarray(model.apply(variables, jnp.asarray(x_nchw().transpose(0, 2, 3, 1))))


def save_jax(variables, path, fmt: str) -> None:
    if fmt == "msgpack":
        path.write_bytes(serialization.to_bytes(variables))
    elif fmt == "npz":
        flat = {"/".join(k.key for k in p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(variables)}
        np.savez(path, **flat)
    else:
        import orbax.checkpoint as ocp

        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(path.resolve(), variables)
        checkpointer.wait_until_finished()


JAX_FORMATS = {"msgpack": "nin.msgpack", "npz": "nin.npz", "orbax": "nin_orbax"}


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", JAX_FORMATS)
def test_the_books_jax_nin_goes_in_and_comes_out(fmt, capsys, tmp_path):
    model, variables = linen_variables()
    source = tmp_path / JAX_FORMATS[fmt]
    save_jax(variables, source, fmt)
    result = call(capsys, "compare.convert", str(source), str(tmp_path / "w.safetensors"))
    assert result.returncode == 0, result.stderr
    want = linen_logits(model, variables)
    for got in ours(tmp_path / "w.safetensors"):
        assert close(got, want)
    target = tmp_path / ("back" + ("" if fmt == "orbax" else f".{fmt}"))
    result = call(capsys, "compare.convert", str(tmp_path / "w.safetensors"), str(target))
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stdout  # 224 px: the book's avg_pool((5, 5)) is global here
    if fmt == "msgpack":
        back = serialization.from_bytes(variables, target.read_bytes())  # as its users load it
    elif fmt == "npz":
        with np.load(target) as archive:
            back = {"params": {"net": jax.tree.map(np.asarray, variables["params"]["net"])}}
            back = jax.tree_util.tree_map_with_path(lambda p, _: archive["/".join(k.key for k in p)], back)
    else:
        import orbax.checkpoint as ocp

        back = ocp.StandardCheckpointer().restore(target.resolve(), variables)
    assert np.array_equal(linen_logits(model, back), want)
    assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), variables, back))


@pytest.mark.e2e
def test_the_discussions_variant_in_jax_and_across_frameworks(capsys, tmp_path):
    """One 1x1 conv and a 256-wide third block: the book's PyTorch file straight to the book's JAX net."""
    torch.manual_seed(1)
    variant = TORCH_VARIANTS["one-1x1-widths-256"]
    net = book_nin.torch_nin(**variant)
    torch.save(net.state_dict(), tmp_path / "nin.pt")
    assert call(capsys, "compare.convert", str(tmp_path / "nin.pt"), str(tmp_path / "nin.msgpack")).returncode == 0
    model, template = linen_variables(widths=(96, 256, 256), block=book_nin.linen_nin_block_one_1x1)
    variables = serialization.from_bytes(template, (tmp_path / "nin.msgpack").read_bytes())
    assert close(linen_logits(model, variables), torch_logits(net))


def test_other_image_sizes_say_what_the_books_jax_net_does_differently(capsys, tmp_path):
    fixture = ROOT / "tests" / "fixtures" / "weights-v1" / "d2l.safetensors"  # 67 px
    result = call(capsys, "compare.convert", str(fixture), str(tmp_path / "nin.msgpack"))
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "only at 195-226 px" in notes[0] and "at 67 px the map is 1x1" in notes[0]


@pytest.mark.e2e
@requires_onnx
def test_onnx_out_runs_in_onnx_runtime_with_any_batch(capsys, tmp_path):
    import onnx

    fixture = ROOT / "tests" / "fixtures" / "weights-v1" / "mid3.safetensors"
    result = call(capsys, "compare.convert", str(fixture), str(tmp_path / "nin.onnx"))
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(tmp_path / "nin.onnx"))
    assert [o.version for o in model.opset_import if o.domain == ""] == [to_onnx.OPSET]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a dynamic batch axis
    props = to_onnx.recorded(tmp_path / "nin.onnx")
    cfg, size = saved_model_config(load_portable(fixture)[1])
    assert props["image_size"] == "67" and json.loads(props["model_config"])["mid_kernel"] == 3
    from nin_torch.predict import load_model

    net = load_model(fixture)[0]
    for n in (1, 5):
        x = np.random.default_rng(n).random((n, 1, size, size), dtype=np.float32)
        with torch.no_grad():
            assert close(to_onnx.run(tmp_path / "nin.onnx", x), net(torch.from_numpy(x)).numpy())


def test_what_the_book_cannot_build_is_refused_in_its_words(capsys, tmp_path):
    shipped = ROOT / "weights" / "nin-fashion-mnist-best.safetensors"  # --last-width 384
    assert_user_error(call(capsys, "compare.convert", str(shipped), str(tmp_path / "x.pt")),
                      "384-wide last block (--last-width 384)", ".safetensors or .onnx")
    fc = ROOT / "tests" / "fixtures" / "weights-v1" / "fc.safetensors"
    assert_user_error(call(capsys, "compare.convert", str(fc), str(tmp_path / "x.msgpack")), "no fully connected head")
    norelu = ROOT / "tests" / "fixtures" / "weights-v1" / "norelu.safetensors"
    result = call(capsys, "compare.convert", str(norelu), str(tmp_path / "x.pt"))
    assert result.returncode == 0 and "without the final ReLU" in result.stdout
    assert not (tmp_path / "x.msgpack").exists()


def test_unreadable_sources_follow_the_error_contract(capsys, tmp_path):
    out = str(tmp_path / "w.safetensors")
    cases = {"garbage.npz": (b"not a zip", "cannot read"), "garbage.msgpack": (b"\xc1\xc1", "cannot read"),
             "mystery.bin": (b"hello world!" * 4, "cannot tell what"), "tree.npz": (None, "is not a parameter of the "
                                                                                  "book's JAX NiN")}
    for name, (data, needle) in cases.items():
        path = tmp_path / name
        if data is None:
            np.savez(path, **{"params/dense/kernel": np.zeros((3, 3), np.float32)})
        else:
            path.write_bytes(data)
        assert_user_error(call(capsys, "compare.convert", str(path), out), needle)
    three = book_nin.torch_nin()
    three[0][0] = torch.nn.Conv2d(3, 96, 11, 4)
    torch.save(three.state_dict(), tmp_path / "rgb.pt")
    assert_user_error(call(capsys, "compare.convert", str(tmp_path / "rgb.pt"), out), "3-channel images")
    folder = tmp_path / "folder"
    folder.mkdir()
    assert_user_error(call(capsys, "compare.convert", str(folder), out), "not an orbax checkpoint")
    assert_user_error(call(capsys, "compare.convert", str(ROOT / "weights" / "nin-fashion-mnist-best.safetensors"),
                           str(tmp_path / "w.txt")), "cannot tell which format to write")
    assert not (tmp_path / "w.safetensors").exists()


def test_a_hostile_pickle_is_refused_without_torchs_advice(capsys, tmp_path):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return os.system, ("touch " + str(tmp_path / "pwned"),)

    torch.save({"0.0.weight": Evil()}, tmp_path / "evil.pt")  # torch.save's own format, a planted global
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"0.0.weight": Evil()}))  # a plain pickle
    for name, needle in (("evil.pt", "it asks to import posix.system"), ("evil.pkl", "cannot read")):
        result = call(capsys, "compare.convert", str(tmp_path / name), str(tmp_path / "w.safetensors"))
        assert_user_error(result, needle)
        assert "weights_only" not in result.stderr and "Re-running" not in result.stderr
    assert not (tmp_path / "pwned").exists()
