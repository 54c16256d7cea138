"""The flax side of shared.loop's Backend: model, optimizer, data and steps built from the config alone.
Twin of nin_torch/backend.py. The trainer, compare.parity, bench.benchmark and bench.memory all drive
this class, so what parity proves is what the trainer runs.

Data-parallel without a launcher: every visible device of the chosen platform (or --devices N of them) forms
a 1-D mesh; each batch's indices are sharded over it, parameters and the uint8 dataset are replicated, and
XLA inserts the gradient all-reduce. --batch-size stays the GLOBAL batch.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nin_flax import weights
from nin_flax.data import DeviceData
from nin_flax.kernels import max_pool_for
from nin_flax.model import build_model
from nin_flax.optim import make_optimizer
from nin_flax.runtime import (
    compiler_options,
    device_name,
    enable_compilation_cache,
    free_memory,
    select_devices,
    set_precision,
    sync_processes,
)
from nin_flax.steps import compute_dtype, make_eval_step, make_train_step
from shared.arch import nin_spec
from shared.augment import step_params
from shared.config import Config
from shared.dropout import dropout_shape, step_mask
from shared.errors import UserError, first_line
from shared.files import atomic_write, fresh_folder, remove_own, swap_in
from shared.runtime import keep_freed_memory
from shared.schedule import lr_factor, total_steps
from shared.summary import check_fits_memory
from shared.weights import State

FRAMEWORK = "flax"
CHECKPOINT = "checkpoint"


def _global(tree, sharding: jax.sharding.Sharding):
    """Every array of `tree` on `sharding` (which may span several processes: there device_put takes host data,
    the same in every process, not an array already on a local device; PRNG keys travel as their key data)."""
    def put(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = jax.device_put(np.asarray(jax.random.key_data(x)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.device_put(np.asarray(x), sharding)

    return jax.tree.map(put, tree)


def _keys_to_data(tree):
    """Orbax stores plain arrays: typed PRNG keys (the dropout stream) go in as their raw key data."""
    is_key = lambda x: hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)  # noqa: E731
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


class FlaxBackend:
    framework = FRAMEWORK

    def __init__(self, cfg: Config, float64: bool = False):
        """`float64`: parameters, input and update in double precision (compare.parity's exact check); jax's
        x64 mode is switched on around this backend's own work only."""
        keep_freed_memory()  # before the first worker thread starts (jax's first call starts XLA's)
        self.cfg, self.float64 = cfg, float64
        enable_compilation_cache()
        self.is_main = jax.process_index() == 0
        devices = select_devices(cfg.run.device, cfg.run.devices)
        # this process's first device of the mesh (with several processes, devices[0] may be another's)
        self.device = next(d for d in devices if d.process_index == jax.process_index())
        self.n_devices = len(devices)
        if cfg.data.batch_size % self.n_devices:
            raise UserError(f"--batch-size {cfg.data.batch_size} (the global batch) does not split over "
                            f"{self.n_devices} devices; use a multiple of {self.n_devices} or --devices")
        mesh = Mesh(np.array(devices), ("data",))
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.sharded = NamedSharding(mesh, PartitionSpec("data"))
        self.device_name = device_name(self.device) + (f" x {self.n_devices}" if self.n_devices > 1 else "") + (
            f" ({jax.process_count()} processes)" if jax.process_count() > 1 else "")
        set_precision(cfg.run.precision)
        spec = nin_spec(cfg.model, cfg.data.image_size)
        check_fits_memory(spec, cfg.data.image_size, cfg.data.batch_size, free_memory(self.device), self.device_name)
        self.train_data = DeviceData("train", cfg.data.data_dir, cfg.data.train_limit, self.replicated)
        self.test_data = DeviceData("test", cfg.data.data_dir, cfg.data.test_limit, self.replicated)
        self.n_train, self.n_test = len(self.train_data), len(self.test_data)
        self.total_steps = total_steps(cfg, self.n_train)
        with self.scope(), jax.default_device(self.device):
            model = build_model(cfg.model, cfg.data.image_size, cfg.train.seed, compute_dtype(cfg),
                                max_pool_for(self.device.platform))
            if cfg.run.init_from:
                weights.load_into(model, cfg.run.init_from, cfg.model, cfg.data.image_size, cfg.data.normalize)
            self.dtype = jnp.float64 if float64 else jnp.float32
            if float64:
                params = nnx.state(model, nnx.Param)
                nnx.update(model, jax.tree.map(lambda a: a.astype(jnp.float64), params))
            optimizer = nnx.Optimizer(model, make_optimizer(cfg.train, self.total_steps), wrt=nnx.Param)
            self.graphdef, state = nnx.split((model, optimizer))
            self.state = _global(state, self.replicated)
        self.param_count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
        self.mask_shape = dropout_shape(spec, cfg.data.image_size)
        self.step = 0  # optimizer steps taken: the shared dropout masks are drawn from (seed, step)
        options = None if float64 else compiler_options(self.device.platform)  # float64: see compiler_options
        self._train_step = make_train_step(cfg, self.graphdef, self.dtype, options)
        self._eval_step = make_eval_step(cfg, self.graphdef, self.dtype, options)

    def scope(self):
        """Where this backend's arrays are made and its steps traced: x64 for the float64 check."""
        return jax.enable_x64(True) if self.float64 else contextlib.nullcontext()

    def objects(self) -> tuple[nnx.Module, nnx.Optimizer]:
        """(model, optimizer) over the current state (the step works on the split state)."""
        return nnx.merge(self.graphdef, self.state)

    def _place(self, batch: np.ndarray) -> jax.Array:
        """A per-step host array (the batch's indices, a dropout mask) split over the mesh by rows, or replicated
        when a short last batch does not split. Each process hands over only its own rows
        (make_array_from_process_local_data: no cross-process check of the data, unlike device_put)."""
        sharding = self.sharded if len(batch) % self.n_devices == 0 else self.replicated
        rows = [index[0] for index in sharding.addressable_devices_indices_map(batch.shape).values()]
        local = batch[min(r.start or 0 for r in rows):max(len(batch) if r.stop is None else r.stop for r in rows)]
        return jax.make_array_from_process_local_data(sharding, local, batch.shape)

    def _shared_mask(self, batch: int) -> jax.Array | None:
        """The step's shared dropout mask, NHWC, split over the mesh like the batch (None: flax draws its own)."""
        mask = step_mask(self.cfg, self.step, batch, self.mask_shape)
        if mask is None:
            return None
        return self._place(np.ascontiguousarray(mask.transpose(0, 2, 3, 1)).astype(self.dtype))

    def _augment_params(self, indices: np.ndarray) -> jax.Array | None:
        params = step_params(self.cfg, self.step, indices, self.n_train)
        return None if params is None else self._place(params)

    def train_step(self, indices: np.ndarray) -> jax.Array:
        data = self.train_data
        with self.scope():
            mask, augment = self._shared_mask(len(indices)), self._augment_params(indices)
            self.state, metrics = self._train_step(self.state, data.images, data.labels,
                                                   self._place(indices.astype(np.int32)), mask, augment)
        self.step += 1
        return metrics

    def eval_batch(self, indices: np.ndarray) -> jax.Array:
        data = self.test_data
        with self.scope():
            return self._eval_step(self.state, data.images, data.labels, self._place(indices.astype(np.int32)))

    def fetch(self, values: list[jax.Array]) -> np.ndarray:
        return np.stack(jax.device_get(values)).astype(np.float64)

    def lr_at(self, step: int) -> float:
        return self.cfg.train.lr * float(lr_factor(step, self.cfg.train, self.total_steps, np))

    def get_weights(self, dtype=np.float32) -> State:
        """The canonical state (PyTorch names and layout) as numpy arrays of `dtype`."""
        return weights.state_of(self.objects()[0], dtype)

    def set_weights(self, state: State) -> None:
        """Start from this canonical state (before the first step: the optimizer state stays zero)."""
        with self.scope():
            model, optimizer = self.objects()
            weights.load_state(model, state)
            self.state = _global(nnx.state((model, optimizer)), self.replicated)

    def _pure_state(self) -> dict:
        model, optimizer = self.objects()
        return {"model": nnx.to_pure_dict(nnx.state(model)), "optimizer": nnx.to_pure_dict(nnx.state(optimizer))}

    def save_checkpoint(self, path: Path, progress: dict) -> None:
        """orbax into a fresh folder (every process takes part), then swapped in by process 0: a crash never
        leaves a half-written checkpoint. Written synchronously, so that a failed write (a full disk) is one
        error here, not a stream of tracebacks from orbax's threads."""
        import orbax.checkpoint as ocp

        fresh = fresh_folder(path) if self.is_main else path.with_name(f".{path.name}.new")
        sync_processes("checkpoint-start")
        with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:
            try:
                state = ocp.args.StandardSave(_keys_to_data(self._pure_state()))
                checkpointer.save(fresh.resolve() / "state", args=state)
            except (OSError, ValueError) as e:  # tensorstore reports a full or read-only disk as ValueError
                remove_own(fresh)
                raise UserError(f"cannot write the checkpoint {path}: {first_line(e)[-160:]}; free some space or "
                                f"choose another --out") from None
        sync_processes("checkpoint-written")
        if self.is_main:
            atomic_write(fresh / "progress.json", json.dumps(progress), make_parents=False, own=True)
            swap_in(fresh, path)
        sync_processes("checkpoint-swapped")

    def load_checkpoint(self, path: Path) -> dict:
        import orbax.checkpoint as ocp

        target = self._pure_state()
        try:
            restored = ocp.StandardCheckpointer().restore(path.resolve() / "state", _keys_to_data(target))
            progress = json.loads((path / "progress.json").read_text())
        except Exception as e:  # noqa: BLE001 (orbax raises many kinds for a damaged or foreign checkpoint)
            raise UserError(f"cannot resume from {path}: {first_line(e)} (another architecture or a "
                            f"damaged checkpoint); start a new --out") from None
        restored = jax.tree.map(lambda new, old: jax.random.wrap_key_data(new, impl=jax.random.key_impl(old))
                                if jnp.issubdtype(old.dtype, jax.dtypes.prng_key) else new, restored, target)
        model, optimizer = self.objects()
        for obj, key in ((model, "model"), (optimizer, "optimizer")):
            state = nnx.state(obj)
            nnx.replace_by_pure_dict(state, restored[key])
            nnx.update(obj, state)
        self.state = _global(nnx.state((model, optimizer)), self.replicated)
        self.step = progress["step"]
        return progress

    def save_weights(self, path: Path) -> None:
        weights.save(self.objects()[0], path, self.cfg.model, self.cfg.data.image_size, self.cfg.data.normalize)
