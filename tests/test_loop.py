"""The shared training loop's guards with a scripted backend: collapse warning and divergence."""

from pathlib import Path

import numpy as np

from shared.config import Config
from shared.loop import COLLAPSE_STEPS, EXIT_DIVERGED, train
from shared.rundir import RunDir


class ScriptedBackend:
    """A backend whose steps return scripted (loss_sum, correct, collapsed) values."""

    framework, device_name, is_main, param_count = "scripted", "cpu", True, 1

    def __init__(self, losses, collapsed: bool, batch: int):
        self.losses, self.collapsed, self.batch, self.steps = iter(losses), collapsed, batch, 0
        self.n_train, self.n_test = 64 * batch, batch
        self.saved: list[dict] = []

    def train_step(self, indices):
        self.steps += 1
        return np.array([next(self.losses) * len(indices), 0.1 * len(indices), float(self.collapsed)])

    def eval_batch(self, indices):
        return np.array([2.3 * len(indices), 0.1 * len(indices)])

    def fetch(self, values):
        return np.stack(values).astype(np.float64)

    def lr_at(self, step):
        return 0.1

    def save_checkpoint(self, path: Path, progress: dict):
        self.saved.append(progress)

    def load_checkpoint(self, path):
        raise AssertionError("not resuming")

    def save_weights(self, path):
        path.write_bytes(b"weights")


def config(epochs: int) -> Config:
    cfg = Config()
    cfg.data.batch_size, cfg.train.epochs, cfg.run.progress = 8, epochs, False
    return cfg


def test_collapse_warns_once(tmp_path, capsys):
    backend = ScriptedBackend([2.3026] * 10_000, collapsed=True, batch=8)
    assert train(backend, config(epochs=3), RunDir(tmp_path, False, "ckpt")) == 0
    err = capsys.readouterr().err
    assert err.count("warning: the predictions have been one class") == 1 and COLLAPSE_STEPS <= 3 * 64
    assert "--init kaiming_normal" in err and "--no-final-relu" in err
    assert len(backend.saved) == 3 and (tmp_path / "weights.safetensors").exists()


def test_no_warning_when_predictions_vary(tmp_path, capsys):
    backend = ScriptedBackend([1.0] * 10_000, collapsed=False, batch=8)
    assert train(backend, config(epochs=2), RunDir(tmp_path, False, "ckpt")) == 0
    assert "warning" not in capsys.readouterr().err


def test_nan_stops_with_diverged_and_keeps_the_last_checkpoint(tmp_path, capsys):
    losses = [1.0] * 64 + [1.0] * 30 + [float("nan")] * 100  # diverges in epoch 2
    backend = ScriptedBackend(losses, collapsed=False, batch=8)
    assert train(backend, config(epochs=3), RunDir(tmp_path, False, "ckpt")) == EXIT_DIVERGED
    assert len(backend.saved) == 1 and backend.saved[0]["epoch"] == 1  # only epoch 1's, nothing after the NaN
    assert "diverged: the loss is not finite near step" in capsys.readouterr().err
    assert not (tmp_path / "weights.safetensors").exists()
