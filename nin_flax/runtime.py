"""Device and numeric precision for jax. Twin of nin_torch/runtime.py."""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from shared.data import cache_dir
from shared.errors import UserError, first_line
from shared.runtime import host_available_memory


def enable_compilation_cache() -> None:
    """Keep XLA's compiled steps on disk: a second run of the same config skips the compile."""
    jax.config.update("jax_compilation_cache_dir", str((cache_dir() / "jax").resolve()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# XLA:CPU hands convolutions and matmuls to YNNPACK by default (jaxlib 0.10 and 0.11). On NiN's layers XLA's own
# Eigen kernels are faster on this project's CPU (forward + backward of the 5x5 conv 54 against 65 ms, of a 1x1
# conv at 22 px 9 against 26; python -m bench.profile_layers), while YNNPACK wins at reductions (bias gradients).
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def compiler_options(platform: str) -> dict[str, str] | None:
    """The XLA options the fp32 and bf16 steps are compiled with on `platform`: CPU_COMPILER_OPTIONS on the CPU,
    where this jaxlib knows them; XLA's defaults elsewhere (on a GPU the plain cuDNN convolution). The one place
    that tunes XLA by platform. compare.parity's float64 steps keep XLA's defaults: with these options XLA:CPU's
    float64 convolution takes a much slower path (python -m bench.xla_options --float64)."""
    if platform != "cpu":
        return None
    try:
        with jax.default_device(jax.devices("cpu")[0]):
            jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(np.float32(0)).compile()
    except Exception:  # noqa: BLE001 (a jaxlib without the option: its defaults are still correct)
        return None
    return CPU_COMPILER_OPTIONS


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


def join_processes(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Join a multi-process run before anything touches a device: --coordinator HOST:PORT with the process count
    and id, or 'auto' (jax.distributed.initialize() reads the cluster's environment: SLURM, Open MPI, ...).
    A process that dies is noticed by the others through missing heartbeats (NIN_HEARTBEAT_SECONDS, default
    100): they end with an error instead of waiting for it forever."""
    if coordinator is None:
        return
    kwargs = {} if coordinator == "auto" else {"coordinator_address": coordinator, "num_processes": num_processes,
                                               "process_id": process_id}
    try:
        jax.distributed.initialize(**kwargs, initialization_timeout=int(os.environ.get("NIN_JOIN_SECONDS", "300")),
                                   heartbeat_timeout_seconds=int(os.environ.get("NIN_HEARTBEAT_SECONDS", "100")))
    except (RuntimeError, ValueError) as e:
        raise UserError(f"cannot join the multi-process run at {coordinator}: {first_line(e)}") from None


def sync_processes(name: str) -> None:
    """A barrier over every process of a multi-process run (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
