"""The torch side of shared.loop's Backend: model, optimizer, data and steps built from the config alone.
Twin of nin_flax/backend.py. The trainer, compare.parity, bench.benchmark and bench.memory all drive
this class, so what parity proves is what the trainer runs (channels_last and the real step included).

Data-parallel under torchrun: --batch-size stays the GLOBAL batch; each rank takes its slice of every batch
of the shared epoch order, metrics are summed over ranks, rank 0 alone writes; checkpoints do not depend on N.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from nin_torch import weights
from nin_torch.data import DeviceData
from nin_torch.model import build_model
from nin_torch.optim import make_optimizer
from nin_torch.runtime import device_name, free_memory, init_distributed, select_device, set_precision
from nin_torch.steps import make_eval_step, make_train_step
from shared.arch import nin_spec
from shared.augment import step_params
from shared.config import Config
from shared.dropout import dropout_shape, step_mask
from shared.errors import UserError, first_line
from shared.files import atomic_write
from shared.runtime import keep_freed_memory
from shared.schedule import total_steps
from shared.summary import check_fits_memory
from shared.weights import State

FRAMEWORK = "torch"
CHECKPOINT = "checkpoint.pt"


class TorchBackend:
    framework = FRAMEWORK

    def __init__(self, cfg: Config, float64: bool = False):
        """`float64`: parameters, input and update in double precision (compare.parity's exact check)."""
        keep_freed_memory()  # before the first worker thread starts
        self.cfg = cfg
        self.rank, self.world, local_rank = init_distributed()
        self.is_main = self.rank == 0
        if cfg.data.batch_size % self.world:
            raise UserError(f"--batch-size {cfg.data.batch_size} (the global batch) does not split over "
                            f"{self.world} processes; use a multiple of {self.world}")
        self.local_batch = cfg.data.batch_size // self.world
        self.device = select_device(cfg.run.device, local_rank)
        self.device_name = device_name(self.device) + (f" x {self.world} (DDP)" if self.world > 1 else "")
        set_precision(cfg.run.precision)
        spec = nin_spec(cfg.model, cfg.data.image_size)
        check_fits_memory(spec, cfg.data.image_size, cfg.data.batch_size, free_memory(self.device), self.device_name)
        torch.backends.cudnn.benchmark = self.device.type == "cuda"  # fixed shapes: pick the fastest conv once
        self.train_data = DeviceData("train", cfg.data.data_dir, cfg.data.train_limit, self.device)
        self.test_data = DeviceData("test", cfg.data.data_dir, cfg.data.test_limit, self.device)
        self.n_train, self.n_test = len(self.train_data), len(self.test_data)
        self.total_steps = total_steps(cfg, self.n_train)
        # channels_last: +7% per training step on a 2-core AMD CPU (oneDNN), the layout cuDNN prefers on GPUs;
        # torch.compile was slower (260 vs 300 ex/s at 96 px after a 27 s compile), so it is not used
        self.model = build_model(cfg.model, cfg.data.image_size, cfg.train.seed)
        if cfg.run.init_from:
            weights.load_into(self.model, cfg.run.init_from, cfg.model, cfg.data.image_size, cfg.data.normalize)
        self.dtype = torch.float64 if float64 else torch.float32
        self.model.to(self.device, self.dtype, memory_format=torch.channels_last)
        self.param_count = sum(p.numel() for p in self.model.parameters())
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg.train, self.total_steps)
        replica = self.model
        if self.world > 1:  # averages the gradients over ranks during backward
            replica = DistributedDataParallel(self.model, device_ids=[local_rank] if self.device.type == "cuda"
                                              else None)
        self._train_step = make_train_step(replica, self.optimizer, self.scheduler, cfg, self.device, self.dtype)
        self._eval_step = make_eval_step(self.model, cfg, self.device, self.dtype)
        torch.manual_seed(cfg.train.seed)  # dropout masks
        self.mask_shape = dropout_shape(spec, cfg.data.image_size)
        self.step = 0  # optimizer steps taken: the shared dropout masks are drawn from (seed, step)

    def _indices(self, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(indices)).to(self.device, non_blocking=True)

    def _shared_mask(self, batch: int) -> torch.Tensor | None:
        """This rank's rows of the step's shared dropout mask (None: torch draws its own)."""
        mask = step_mask(self.cfg, self.step, batch, self.mask_shape)
        if mask is None:
            return None
        local = mask[self.rank * self.local_batch:(self.rank + 1) * self.local_batch]
        return torch.from_numpy(local).to(self.device, self.dtype)

    def _augment_params(self, local: np.ndarray) -> torch.Tensor | None:
        params = step_params(self.cfg, self.step, local, self.n_train)
        return None if params is None else torch.from_numpy(params).to(self.device, non_blocking=True)

    def train_step(self, indices: np.ndarray) -> torch.Tensor:
        local = indices[self.rank * self.local_batch:(self.rank + 1) * self.local_batch]
        mask, augment = self._shared_mask(len(indices)), self._augment_params(local)
        self.step += 1
        return self._train_step(*self.train_data.batch(self._indices(local)), mask, augment)

    def eval_batch(self, indices: np.ndarray) -> torch.Tensor:
        local = np.array_split(indices, self.world)[self.rank]
        if len(local) == 0:
            return torch.zeros(2, device=self.device)
        return self._eval_step(*self.test_data.batch(self._indices(local)))

    def fetch(self, values: list[torch.Tensor]) -> np.ndarray:
        """Sums over ranks; the 'collapsed' column becomes the fraction of ranks that collapsed."""
        stacked = torch.stack(values).double()
        if self.world > 1:
            dist.all_reduce(stacked)
            if stacked.shape[1] > 2:
                stacked[:, 2] /= self.world
        return stacked.cpu().numpy()

    def lr_at(self, step: int) -> float:
        return self.cfg.train.lr * self.scheduler.lr_lambdas[0](step)

    def get_weights(self, dtype=np.float32) -> State:
        """The canonical state (PyTorch names and layout) as numpy arrays of `dtype`."""
        return weights.state_of(self.model, dtype)

    def set_weights(self, state: State) -> None:
        """Start from this canonical state (before the first step: the optimizer state stays empty)."""
        weights.load_state(self.model, state)

    def save_checkpoint(self, path: Path, progress: dict) -> None:
        if not self.is_main:  # every rank holds the same state
            return
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "progress": progress,
                 "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(path, buffer.getvalue(), make_parents=False, own=True)

    def load_checkpoint(self, path: Path) -> dict:
        try:  # numpy scalars: the progress counters of checkpoints written by releases that saved them so
            with torch.serialization.safe_globals([np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType]):
                state = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, EOFError, TypeError, pickle.UnpicklingError) as e:
            raise UserError(f"cannot resume from {path}: {first_line(e)} (another architecture or a "
                            f"damaged checkpoint); start a new --out") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = state["progress"]["step"]
        return state["progress"]

    def save_weights(self, path: Path) -> None:
        weights.save(self.model, path, self.cfg.model, self.cfg.data.image_size, self.cfg.data.normalize)
