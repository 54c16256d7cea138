"""Device and numeric precision for torch. Twin of nin_flax/runtime.py."""

from __future__ import annotations

import torch

from shared.errors import UserError
from shared.runtime import host_available_memory


def select_device(choice: str, index: int = 0) -> torch.device:
    """auto: a CUDA GPU if there is one, else the CPU; gpu without one is a user error. `index`: the GPU of
    this process (torchrun's LOCAL_RANK)."""
    if choice == "gpu" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device gpu, but torch sees no CUDA GPU; use --device cpu or auto")
        return torch.device("cuda", index)
    return torch.device("cpu")


def init_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank): torchrun's, with the process group up (NCCL on GPUs, gloo on the CPU);
    (0, 1, 0) when not launched by torchrun."""
    import os

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def set_precision(precision: str) -> None:
    """fp32 means full fp32 (recent GPUs default to TF32 for convolutions); tf32 allows it; bf16 autocasts."""
    allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")


def device_name(device: torch.device) -> str:
    return f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu"


def free_memory(device: torch.device) -> int | None:
    """Bytes free for this process's arrays on the device (the host's available memory for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return host_available_memory()
