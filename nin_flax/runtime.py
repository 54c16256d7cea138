"""Device and numeric precision for jax. Twin of nin_torch/runtime.py."""

from __future__ import annotations

import jax

from shared.data import cache_dir
from shared.errors import UserError
from shared.runtime import host_available_memory


def enable_compilation_cache() -> None:
    """Keep XLA's compiled steps on disk: a second run of the same config skips the compile."""
    jax.config.update("jax_compilation_cache_dir", str((cache_dir() / "jax").resolve()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def select_device(choice: str) -> jax.Device:
    """auto: a GPU if jax has one, else the CPU; gpu without one is a user error."""
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if choice == "gpu" and not gpus:
        raise UserError("--device gpu, but jax sees no GPU (install jax[cuda12]); use --device cpu or auto")
    if choice != "cpu" and gpus:
        return gpus[0]
    return jax.devices("cpu")[0]


def select_devices(choice: str, count: int | None) -> list[jax.Device]:
    """The devices of the chosen platform for data parallelism: all of them, or the first `count`."""
    first = select_device(choice)
    available = list(jax.devices(first.platform))
    count = count or len(available)
    if count > len(available):
        raise UserError(f"--devices {count}, but jax sees {len(available)} {first.platform} device(s); "
                        f"use --devices {len(available)} or fewer")
    return available[:count]


def set_precision(precision: str) -> None:
    """fp32 means full fp32 (XLA defaults to TF32 for convolutions on recent GPUs); tf32 allows it."""
    jax.config.update("jax_default_matmul_precision", "tensorfloat32" if precision == "tf32" else "highest")


def device_name(device: jax.Device) -> str:
    return f"cuda:{device.id}" if device.platform == "gpu" else "cpu"


def free_memory(device: jax.Device) -> int | None:
    """Bytes free for this process's arrays on the device (the host's available memory for the CPU)."""
    if device.platform == "cpu":
        return host_available_memory()
    stats = device.memory_stats() or {}
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0) if "bytes_limit" in stats else None
