"""Init schemes as distributions over a parameter's shape, so that both frameworks sample the same law.

Shapes are canonical (PyTorch layout); fan_in = in_channels * kernel area, as both frameworks compute it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.arch import fan_in_out

# flax's truncated_normal divides the std by this so that the truncated (at +-2 std) law has the asked std.
TRUNCATED_NORMAL_STD_CORRECTION = 0.87962566103423978


@dataclass(frozen=True)
class Dist:
    kind: str  # "uniform" (bound), "normal" (std), "truncated_normal" (std of the result), "zeros"
    scale: float = 0.0

    @property
    def std(self) -> float:
        """The standard deviation the samples should have."""
        return self.scale / math.sqrt(3) if self.kind == "uniform" else self.scale


def weight_dist(scheme: str, shape: tuple[int, ...]) -> Dist:
    fan_in, fan_out = fan_in_out(shape)
    if scheme == "torch":  # kaiming_uniform(a=sqrt(5)): bound = sqrt(6 / ((1 + 5) * fan_in))
        return Dist("uniform", 1.0 / math.sqrt(fan_in))
    if scheme == "flax":  # lecun_normal
        return Dist("truncated_normal", math.sqrt(1.0 / fan_in))
    if scheme == "xavier_uniform":
        return Dist("uniform", math.sqrt(6.0 / (fan_in + fan_out)))
    if scheme == "kaiming_normal":  # fan_in, gain sqrt(2)
        return Dist("normal", math.sqrt(2.0 / fan_in))
    raise ValueError(f"unknown init scheme {scheme!r}")


def bias_dist(scheme: str, weight_shape: tuple[int, ...]) -> Dist:
    """PyTorch's default bias is U(+-1/sqrt(fan_in)); every other scheme starts biases at zero."""
    if scheme == "torch":
        return Dist("uniform", 1.0 / math.sqrt(fan_in_out(weight_shape)[0]))
    return Dist("zeros")
