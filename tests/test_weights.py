"""The portable weights format: round trips, loud errors, and d2l state_dicts."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

import nin_flax.model as fm
import nin_flax.weights as fw
import nin_torch.model as tm
import nin_torch.weights as tw
from compare.convert import flax_to_torch, torch_to_flax
from compare.formats import book_torch_to_canonical
from shared.config import ModelConfig
from shared.errors import UserError
from shared.weights import load_portable, saved_model_config

from .conftest import assert_user_error


def test_round_trip_torch_file_flax_file_torch_is_bit_exact(tmp_path):
    cfg = ModelConfig(head="fc")
    original = tm.build_model(cfg, 96, seed=5)
    tw.save(original, tmp_path / "a.safetensors", cfg, 96, False)
    flax_model = fm.build_model(cfg, 96, seed=6)
    fw.load_into(flax_model, tmp_path / "a.safetensors", cfg, 96)
    fw.save(flax_model, tmp_path / "b.safetensors", cfg, 96, False)
    back = tm.build_model(cfg, 96, seed=7)
    tw.load_into(back, tmp_path / "b.safetensors", cfg, 96)
    for name, p in original.state_dict().items():
        assert torch.equal(p, back.state_dict()[name]), name
    _, metadata = load_portable(tmp_path / "b.safetensors")
    assert metadata["framework"] == "flax" and saved_model_config(metadata) == (cfg, 96)


def test_pure_conversion_functions_transpose_and_check():
    cfg = ModelConfig(head="fc")
    state = tw.state_of(tm.build_model(cfg, 96))
    flax_layout = torch_to_flax(state, cfg, 96)
    assert flax_layout["blocks.0.conv0.kernel"].shape == (11, 11, 1, 96)
    assert flax_layout["fc.kernel"].shape == state["fc.weight"].shape[::-1]
    back = flax_to_torch(flax_layout, cfg, 96)
    assert all(np.array_equal(back[k], state[k]) for k in state)
    native = {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in
              __import__("flax").nnx.to_flat_state(__import__("flax").nnx.state(fm.build_model(cfg, 96)))
              if p[-1] in ("kernel", "bias")}
    assert set(native) == set(flax_layout)


def test_wrong_architecture_names_each_tensor(tmp_path):
    tw.save(tm.build_model(ModelConfig(num_1x1=1), 96), tmp_path / "one.safetensors", ModelConfig(num_1x1=1), 96, False)
    with pytest.raises(UserError) as info:
        tw.load_into(tm.build_model(ModelConfig(), 96), tmp_path / "one.safetensors", ModelConfig(), 96)
    assert "missing blocks.0.conv2.weight" in str(info.value) and "missing blocks.3.conv2.bias" in str(info.value)
    state = tw.state_of(tm.build_model(ModelConfig(), 96))
    state["blocks.1.conv0.weight"] = state["blocks.1.conv0.weight"][:, :, :3, :3]
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(UserError) as info:
        fw.load_state(fm.build_model(ModelConfig(), 96), state)
    assert "blocks.1.conv0.weight has shape [256, 96, 3, 3], expected [256, 96, 5, 5]" in str(info.value)
    assert "unexpected extra.weight" in str(info.value)


@pytest.mark.e2e
def test_other_architecture_via_cli_is_a_user_error(tmp_path, cli):
    """A safetensors file without our metadata is checked against the flags' architecture."""
    from safetensors.numpy import save_file

    save_file(tw.state_of(tm.build_model(ModelConfig(num_1x1=1), 96)), str(tmp_path / "one.safetensors"))
    result = cli("compare.parity", "--image-size", "67", "--weights", str(tmp_path / "one.safetensors"))
    assert_user_error(result, "missing blocks.0.conv2.weight")
    assert_user_error(cli("compare.parity", "--image-size", "67", "--weights", str(tmp_path / "nope.st")),
                      "does not exist")


def d2l_nin(num_1x1: int = 2, widths: tuple[int, int, int] = (96, 256, 384)) -> nn.Sequential:
    """NiN exactly as d2l writes it (nn.Sequential of nin_blocks)."""
    def nin_block(in_ch, out_ch, kernel, stride, padding):
        layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding), nn.ReLU()]
        for _ in range(num_1x1):
            layers += [nn.Conv2d(out_ch, out_ch, kernel_size=1), nn.ReLU()]
        return nn.Sequential(*layers)

    return nn.Sequential(
        nin_block(1, widths[0], 11, 4, 0), nn.MaxPool2d(3, stride=2),
        nin_block(widths[0], widths[1], 5, 1, 2), nn.MaxPool2d(3, stride=2),
        nin_block(widths[1], widths[2], 3, 1, 1), nn.MaxPool2d(3, stride=2), nn.Dropout(0.5),
        nin_block(widths[2], 10, 3, 1, 1), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


@pytest.mark.e2e
@pytest.mark.parametrize("num_1x1, widths", [(1, (256, 256, 256))], ids=str)  # the book's: tests/test_convert.py
def test_d2l_state_dict_converts_to_the_same_logits(tmp_path, num_1x1, widths, cli):
    torch.manual_seed(0)
    d2l = d2l_nin(num_1x1, widths).eval()
    torch.save(d2l.state_dict(), tmp_path / "d2l.pt")
    x = torch.rand(4, 1, 96, 96)
    state, cfg = book_torch_to_canonical({k: v.numpy() for k, v in torch.load(tmp_path / "d2l.pt").items()}, 96)
    assert cfg == ModelConfig(num_1x1=num_1x1, widths=widths)
    ours = tm.build_model(cfg, 96).eval()
    tw.load_state(ours, state)
    with torch.no_grad():
        assert torch.allclose(ours(x), d2l(x), atol=1e-6, rtol=0)
    flax_model = fm.build_model(cfg, 96)
    flax_model.eval()
    fw.load_state(flax_model, state)
    flax_logits = np.asarray(flax_model(jnp.asarray(x.numpy().transpose(0, 2, 3, 1))))
    assert np.abs(flax_logits - d2l(x).detach().numpy()).max() < 1e-5
    result = cli("compare.convert", str(tmp_path / "d2l.pt"), str(tmp_path / "w.safetensors"), "--image-size", "96")
    assert result.returncode == 0, result.stderr
    assert saved_model_config(load_portable(tmp_path / "w.safetensors")[1]) == (cfg, 96)
    if num_1x1 == 1:  # parity takes the recorded architecture and image size, whatever the flags say
        result = cli("compare.parity", "--weights", str(tmp_path / "w.safetensors"), "--batch", "2", "--steps", "2")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "parity at 96 px" in result.stdout


FIXTURES = Path(__file__).parent / "fixtures" / "weights-v1"


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.safetensors")))
def test_files_written_before_the_layer_table_still_load(name):
    """Weights files written by the model code that placed its layers by block index (fixtures/weights-v1: eight
    variants, widths 4,8,12 at 67 px, their torch logits recorded then) load into both twins of today and give
    those logits (to float32 rounding, which varies with torch's thread count): the parameter names did not
    change."""
    import json

    from nin_flax.predict import load_model as flax_model
    from nin_torch.predict import load_model as torch_model

    want = np.array(json.loads((FIXTURES / "logits.json").read_text())[name])
    x = np.random.default_rng(0).standard_normal((2, 1, 67, 67)).astype(np.float32)
    t, _, _ = torch_model(FIXTURES / f"{name}.safetensors")
    f, _, _ = flax_model(FIXTURES / f"{name}.safetensors")
    with torch.no_grad():
        assert np.abs(t(torch.from_numpy(x)).double().numpy() - want).max() <= 1e-6 * np.abs(want).max()
    assert np.abs(np.asarray(f(jnp.asarray(x.transpose(0, 2, 3, 1)))) - want).max() < 1e-5


@pytest.mark.e2e
def test_a_file_written_before_the_layer_table_passes_parity(cli):
    result = cli("compare.parity", "--weights", str(FIXTURES / "mid3.safetensors"), "--batch", "2", "--steps", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "parity: OK" in result.stdout
