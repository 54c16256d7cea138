"""Either framework's Backend (nin_torch/backend.py, nin_flax/backend.py) by name, imported on demand so
that a tool using one framework never loads the other."""

from __future__ import annotations

from shared.config import Config
from shared.loop import Backend

FRAMEWORKS = ("torch", "flax")


def make_backend(framework: str, cfg: Config, float64: bool = False) -> Backend:
    if framework == "torch":
        from nin_torch.backend import TorchBackend

        return TorchBackend(cfg, float64)
    from nin_flax.backend import FlaxBackend

    return FlaxBackend(cfg, float64)
