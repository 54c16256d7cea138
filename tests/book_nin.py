"""The book's two NiNs as an outside user has them: the code of the d2l NiN chapter (d2l-en,
chapter_convolutional-modern/nin.md, the PyTorch and the JAX tab), with d2l's base classes replaced by plain
torch and flax.linen (the only change), and the discussion's variants of it: other widths (a reader's
nin_block(256, ...) third block) and one 1x1 conv per block. Nothing here imports this project's models."""

from __future__ import annotations

from collections.abc import Callable

import torch
from flax import linen
from torch import nn

# ----- PyTorch tab -----


def nin_block(out_channels, kernel_size, strides, padding):
    return nn.Sequential(
        nn.LazyConv2d(out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU(),
        nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU())


def nin_block_one_1x1(out_channels, kernel_size, strides, padding):
    """The discussion's 'remove one of the two 1x1 convs'."""
    return nn.Sequential(
        nn.LazyConv2d(out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU())


def init_cnn(module):  # d2l.init_cnn
    if type(module) is nn.Linear or type(module) is nn.Conv2d:
        nn.init.xavier_uniform_(module.weight)


def torch_nin(num_classes=10, widths=(96, 256, 384), block=nin_block, image_size=224) -> nn.Sequential:
    net = nn.Sequential(
        block(widths[0], kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        block(widths[1], kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        block(widths[2], kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        block(num_classes, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten())
    net(torch.zeros(1, 1, image_size, image_size))  # model.apply_init: the lazy convs learn their input channels
    net.apply(init_cnn)
    return net.eval()


# ----- JAX tab -----


def linen_nin_block(out_channels, kernel_size, strides, padding):
    return linen.Sequential([
        linen.Conv(out_channels, kernel_size, strides, padding),
        linen.relu,
        linen.Conv(out_channels, kernel_size=(1, 1)), linen.relu,
        linen.Conv(out_channels, kernel_size=(1, 1)), linen.relu])


def linen_nin_block_one_1x1(out_channels, kernel_size, strides, padding):
    return linen.Sequential([
        linen.Conv(out_channels, kernel_size, strides, padding),
        linen.relu,
        linen.Conv(out_channels, kernel_size=(1, 1)), linen.relu])


class LinenNiN(linen.Module):  # d2l.Classifier in the book
    lr: float = 0.1
    num_classes = 10
    training: bool = True
    widths: tuple = (96, 256, 384)  # the book writes 96, 256, 384 in setup
    block: Callable = linen_nin_block

    def setup(self):
        self.net = linen.Sequential([
            self.block(self.widths[0], kernel_size=(11, 11), strides=(4, 4), padding=(0, 0)),
            lambda x: linen.max_pool(x, (3, 3), strides=(2, 2)),
            self.block(self.widths[1], kernel_size=(5, 5), strides=(1, 1), padding=(2, 2)),
            lambda x: linen.max_pool(x, (3, 3), strides=(2, 2)),
            self.block(self.widths[2], kernel_size=(3, 3), strides=(1, 1), padding=(1, 1)),
            lambda x: linen.max_pool(x, (3, 3), strides=(2, 2)),
            linen.Dropout(0.5, deterministic=not self.training),
            self.block(self.num_classes, kernel_size=(3, 3), strides=1, padding=(1, 1)),
            lambda x: linen.avg_pool(x, (5, 5)),  # global avg pooling
            lambda x: x.reshape((x.shape[0], -1))  # flatten
        ])

    def __call__(self, X):  # d2l.Module.forward
        return self.net(X)
