"""Fashion-MNIST for torch: torchvision's FashionMNIST (the reference loader) and the device-resident fast path.

Twin of nin_flax/data.py. The fast path puts the uint8 dataset on the device once; a batch is an index
gather, then resize and normalise on the device (shared.data defines the preprocessing).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from shared.data import (
    MEAN,
    SPLIT_FILES,
    STD,
    cache_dir,
    idx_bytes,
    load_split,
    locate_data_dir,
    read_idx_file,
    split_limit,
)
from shared.files import atomic_write


def torchvision_root(data_dir: str | None = None) -> Path:
    """A root laid out as torchvision expects (root/FashionMNIST/raw/<decompressed files>), from local files."""
    source = locate_data_dir(data_dir)
    raw = cache_dir() / "torchvision" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for names in SPLIT_FILES.values():
        for name in names:
            target = raw / name
            if not target.is_file():  # verified on the way in
                atomic_write(target, idx_bytes(read_idx_file(source, name)))
    return raw.parent.parent


def torchvision_dataset(split: str, data_dir: str | None = None):
    """torchvision.datasets.FashionMNIST over the local files, never downloading."""
    from torchvision.datasets import FashionMNIST

    return FashionMNIST(str(torchvision_root(data_dir)), train=split == "train", download=False)


def download(folder: str | Path) -> None:
    """The users' path without apt: torchvision downloads the four .gz files (needs internet)."""
    from torchvision.datasets import FashionMNIST

    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.download"
    for train in (True, False):
        FashionMNIST(str(tmp), train=train, download=True)
    folder.mkdir(parents=True, exist_ok=True)
    for gz in (tmp / "FashionMNIST" / "raw").glob("*.gz"):
        shutil.copy(gz, folder / gz.name)
    shutil.rmtree(tmp)


def preprocess(images: torch.Tensor, image_size: int, normalize: bool = False,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [N, 1, S, S]: / 255, bilinear (half-pixel, no antialias), (x - mean) / std."""
    x = images.unsqueeze(1).to(dtype) / 255.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=False)
    return (x - MEAN) / STD if normalize else x


def augment(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 28, 28] -> uint8 [B, 28, 28] by int32 [B, 7] parameters: shift (zero fill), flip, erase
    (shared.augment defines it; this is its gather form, exact in integers)."""
    size = images.shape[-1]
    grid = torch.arange(size, device=images.device)[None, :]
    dy, dx, flip = params[:, 0:1], params[:, 1:2], params[:, 2:3]
    rows = grid - dy
    cols = torch.where(flip == 1, size - 1 - grid, grid) - dx
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    batch = torch.arange(len(images), device=images.device)[:, None, None]
    out = images[batch, rows.clamp(0, size - 1)[:, :, None], cols.clamp(0, size - 1)[:, None, :]]
    in_rows = (grid >= params[:, 3:4]) & (grid < params[:, 4:5])
    in_cols = (grid >= params[:, 5:6]) & (grid < params[:, 6:7])
    erased = in_rows[:, :, None] & in_cols[:, None, :]
    return torch.where(inside & ~erased, out, torch.zeros_like(out))


class DeviceData:
    """One split as uint8 on the device; batches are gathered by IDX index."""

    def __init__(self, split: str, data_dir: str | None, limit: int | None, device: torch.device):
        images, labels = load_split(split, data_dir)
        n = split_limit(split, limit)
        self.images = torch.from_numpy(images[:n].copy()).to(device)
        self.labels = torch.from_numpy(labels[:n].copy()).to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images [B, 28, 28], int64 labels [B]); preprocessing runs inside the compiled step."""
        return self.images[indices], self.labels[indices]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--download":
        download(sys.argv[2])
    else:
        sys.exit("usage: python -m nin_torch.data --download FOLDER")
