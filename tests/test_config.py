import pytest

from shared.cli import add_config_flags, config_from_args
from shared.config import ArgumentParser, Config
from shared.errors import UserError
from shared.presets import PRESETS

from .conftest import assert_user_error


def parse(*argv: str) -> Config:
    parser = ArgumentParser()
    add_config_flags(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_d2l_preset_is_the_books_run():
    cfg = parse()
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.train.epochs) == (224, 128, 10)
    assert (cfg.train.optimizer, cfg.train.lr) == ("sgd", 0.1)
    model = cfg.model
    assert (model.init, model.num_1x1, model.dropout, model.final_relu) == ("xavier_uniform", 2, 0.5, True)


def test_every_preset_validates():
    for name in PRESETS:
        assert parse("--preset", name).data.image_size >= 67


def test_toml_over_preset_and_flags_over_toml(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nlr = 0.05\nepochs = 3\n[model]\nwidths = [64, 128, 256]\n')
    cfg = parse("--preset", "adam-96", "--config", str(toml), "--epochs", "4", "--no-final-relu")
    assert cfg.train.optimizer == "adam" and cfg.data.image_size == 96  # preset
    assert cfg.train.lr == 0.05 and cfg.model.widths == (64, 128, 256)  # toml
    assert cfg.train.epochs == 4 and cfg.model.final_relu is False  # flags


@pytest.mark.parametrize("text, needle", [
    ("[model]\nnum_1x1s = 1\n", "unknown key 'num_1x1s' in [model]"),
    ("[model]\nnum_1x1s = 1\n", "did you mean 'num_1x1'"),
    ("[trian]\nlr = 0.1\n", "did you mean 'train'"),
    ("[train]\nlr = 'fast'\n", "train.lr: 'fast' is not a valid float"),
    ("[train\nlr = 1\n", "not valid TOML"),
])
def test_toml_mistakes_name_the_key(tmp_path, text, needle):
    toml = tmp_path / "c.toml"
    toml.write_text(text)
    with pytest.raises(UserError) as info:
        parse("--config", str(toml))
    assert needle in str(info.value)


@pytest.mark.parametrize("argv, needle", [
    (["--preset", "d2k"], "unknown preset 'd2k'"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--lr", "-0.1"], "--lr must be > 0"),
    (["--batch-size", "0"], "--batch-size must be > 0"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
    (["--widths", "96,256"], "--widths needs three"),
])
def test_bad_values_are_user_errors(argv, needle):
    with pytest.raises(UserError) as info:
        parse(*argv)
    assert needle in str(info.value)


@pytest.mark.e2e
def test_bad_flag_follows_the_error_contract(cli):
    assert_user_error(cli("compare.summary", "--head", "mlp"), "--head")
    assert_user_error(cli("compare.summary", "--preset", "nope"), "unknown preset")
