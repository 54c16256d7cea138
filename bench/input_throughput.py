"""`python -m bench.input_throughput`: images per second each input path delivers to the model, as float
batches at --image-size (default 224, batch 128): torchvision's DataLoader as d2l uses it, TFDS's data_source,
and the device-resident fast path of each framework (index gather + resize on the device)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from shared.config import ArgumentParser
from shared.data import epoch_order
from shared.errors import run_cli
from shared.files import atomic_write, check_writable


def _rate(fn, batch: int, batches: int) -> float:
    fn(0)  # warm-up (and compilation)
    start = time.perf_counter()
    for i in range(1, batches + 1):
        fn(i)
    return batch * batches / (time.perf_counter() - start)


def torchvision_rate(size: int, batch: int, batches: int, workers: int) -> float:
    import torch
    from torchvision import transforms

    from nin_torch.data import torchvision_dataset

    dataset = torchvision_dataset("train")
    dataset.transform = transforms.Compose([transforms.ToTensor(), transforms.Resize(size, antialias=False)])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
    iterator = iter(loader)
    return _rate(lambda i: next(iterator)[0].sum().item(), batch, batches)


def tfds_rate(size: int, batch: int, batches: int) -> float:
    import jax
    import jax.numpy as jnp

    from nin_flax.data import preprocess, tfds_source

    source = tfds_source("train")
    order = epoch_order(0, 0, len(source))
    resize = jax.jit(lambda images: preprocess(images, size))

    def one(i: int) -> None:
        records = source.__getitems__(order[i * batch:(i + 1) * batch].tolist())
        images = np.stack([r["image"][..., 0] for r in records])
        jax.block_until_ready(resize(jnp.asarray(images)))

    return _rate(one, batch, batches)


def torch_fast_rate(size: int, batch: int, batches: int) -> float:
    import torch

    from nin_torch.data import DeviceData, preprocess

    data = DeviceData("train", None, None, torch.device("cpu"))
    order = torch.from_numpy(epoch_order(0, 0, len(data)))
    return _rate(lambda i: preprocess(data.batch(order[i * batch:(i + 1) * batch])[0], size).sum().item(),
                 batch, batches)


def flax_fast_rate(size: int, batch: int, batches: int) -> float:
    import jax

    from nin_flax.data import DeviceData, preprocess

    data = DeviceData("train", None, None)
    order = epoch_order(0, 0, len(data)).astype(np.int32)
    step = jax.jit(lambda images, idx: preprocess(images[idx], size).sum())
    return _rate(lambda i: jax.block_until_ready(step(data.images, order[i * batch:(i + 1) * batch])),
                 batch, batches)


@run_cli
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m bench.input_throughput", description=__doc__)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per path (after one warm-up)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.json:
        check_writable(Path(args.json))
    if min(args.image_size, args.batch_size, args.batches) < 1:
        parser.error("--image-size, --batch-size and --batches must be >= 1")
    size, batch, n = args.image_size, args.batch_size, args.batches
    from nin_flax.data import tfds_available

    rates = {
        "torchvision_dataloader_0_workers": torchvision_rate(size, batch, n, 0),
        "torchvision_dataloader_2_workers": torchvision_rate(size, batch, n, 2),
        "tfds_data_source": tfds_rate(size, batch, n) if tfds_available() else None,
        "torch_device_fast_path": torch_fast_rate(size, batch, n),
        "flax_device_fast_path": flax_fast_rate(size, batch, n),
    }
    print(f"images/s delivered as float batches of {batch} at {size} px")
    for name, rate in rates.items():
        print(f"  {name:<36}{rate:>12,.0f}" if rate is not None else
              f"  {name:<36}  not measured: tensorflow-datasets is not installed")
    if args.json:
        atomic_write(Path(args.json), json.dumps({"image_size": size, "batch_size": batch,
                                                  "images_per_sec": rates}, indent=2))


if __name__ == "__main__":
    main()
