"""The data spec on the real Fashion-MNIST: counts, adapters, preprocessing, epoch order, bad input."""

import gzip
import hashlib

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from nin_flax import data as fdata
from nin_torch import data as tdata
from shared.data import (
    CLASS_NAMES,
    IMAGE_MAGIC,
    LABEL_MAGIC,
    SHA256,
    STD,
    epoch_order,
    load_split,
    preprocess_reference,
)
from shared.errors import UserError

from .conftest import assert_user_error

SAMPLE = np.array([0, 1, 2, 59999, 12345, 31337, 777, 4242])


@pytest.fixture(scope="module")
def train():
    return load_split("train")


def test_split_sizes_and_classes(train):
    images, labels = train
    test_images, test_labels = load_split("test")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert test_images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [6000] * 10
    assert np.bincount(test_labels).tolist() == [1000] * 10
    assert len(CLASS_NAMES) == 10


def test_torchvision_adapter_matches_idx(train):
    images, labels = train
    dataset = tdata.torchvision_dataset("train")
    assert len(dataset) == 60000
    for i in SAMPLE:
        image, label = dataset[int(i)]
        assert np.array_equal(np.asarray(image), images[i]) and label == labels[i]


@pytest.mark.e2e
@pytest.mark.skipif(not fdata.tfds_available(), reason="tensorflow-datasets is not installed (as on the GPU "
                    "machine): the TFDS reference loader cannot be compared")
def test_tfds_adapter_matches_idx(train):
    images, labels = train
    source = fdata.tfds_source("train")
    assert len(source) == 60000 and len(fdata.tfds_source("test")) == 10000
    for i in SAMPLE:
        record = source[int(i)]
        assert np.array_equal(record["image"][..., 0], images[i]) and record["label"] == labels[i]


def test_fast_paths_match_idx(train):
    images, labels = train
    t = tdata.DeviceData("train", None, None, torch.device("cpu"))
    f = fdata.DeviceData("train", None, None)
    ti, tl = t.batch(torch.from_numpy(SAMPLE))
    fi, fl = f.batch(jnp.asarray(SAMPLE))
    assert np.array_equal(ti.numpy(), images[SAMPLE]) and np.array_equal(np.asarray(fi), images[SAMPLE])
    assert np.array_equal(tl.numpy(), labels[SAMPLE]) and np.array_equal(np.asarray(fl), labels[SAMPLE])


@pytest.mark.parametrize("size", [224, 96, 67])
@pytest.mark.parametrize("normalize", [False, True])
def test_preprocessing_agrees_across_frameworks(train, size, normalize):
    images = train[0][SAMPLE]
    xt = tdata.preprocess(torch.from_numpy(images), size, normalize).numpy()
    xf = np.asarray(fdata.preprocess(jnp.asarray(images), size, normalize))
    reference = preprocess_reference(images, size, normalize)
    assert xt.shape == (len(SAMPLE), 1, size, size) and xf.shape == (len(SAMPLE), size, size, 1)
    scale = 1 / STD if normalize else 1.0  # normalising divides the error by the std too
    # over all 60,000 images: 2.4e-7 at 224 and 96 px, 1.1e-6 at 67 px
    assert np.abs(xt[:, 0] - xf[..., 0]).max() <= (1e-6 if size in (224, 96) else 2e-6) * scale
    # both compute the source coordinates in float32; the reference in float64
    assert np.abs(xt[:, 0] - reference).max() <= 5e-6 * scale


def test_epoch_order_is_shared_and_seeded():
    a = epoch_order(0, 0, 60000)
    assert np.array_equal(a, epoch_order(0, 0, 60000))
    assert sorted(a.tolist()) == list(range(60000))
    assert not np.array_equal(a, epoch_order(1, 0, 60000))
    assert not np.array_equal(a, epoch_order(0, 1, 60000))


# ----- bad input: small synthetic IDX files -----

def write_idx(folder, name, magic, dims, payload=None, compress=True):
    payload = payload if payload is not None else bytes(int(np.prod(dims)))
    raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload
    path = folder / (name + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return raw


def synthetic_dir(tmp_path, **overrides):
    for name in SHA256:
        magic, dims = (IMAGE_MAGIC, (10, 28, 28)) if "images" in name else (LABEL_MAGIC, (10,))
        kwargs = overrides.get(name.split("-")[0] + "_" + name.split("-")[1], {})
        write_idx(tmp_path, name, kwargs.get("magic", magic), dims, kwargs.get("payload"))
    return tmp_path


@pytest.mark.e2e
def test_missing_dir_says_how_to_install(tmp_path, cli):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_split("train", tmp_path / "nope")
    assert_user_error(cli("shared.data", "--data-dir", str(tmp_path / "nope")), "dataset-fashion-mnist")


def test_truncated_file(tmp_path):
    folder = synthetic_dir(tmp_path, train_images={"payload": bytes(10 * 28 * 28 - 5)})
    with pytest.raises(UserError, match="truncated"):
        load_split("train", folder)


def test_wrong_magic(tmp_path):
    folder = synthetic_dir(tmp_path, train_images={"magic": LABEL_MAGIC})
    with pytest.raises(UserError, match=f"magic number {LABEL_MAGIC}, expected {IMAGE_MAGIC}"):
        load_split("train", folder)


@pytest.mark.e2e
def test_checksum_mismatch(tmp_path, cli):
    folder = synthetic_dir(tmp_path)
    with pytest.raises(UserError, match="sha256"):
        load_split("train", folder)
    assert_user_error(cli("shared.data", "--data-dir", str(folder)), "sha256")


def test_not_gzip(tmp_path):
    folder = synthetic_dir(tmp_path)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"definitely not gzip")
    with pytest.raises(UserError, match="not a readable"):
        load_split("train", folder)


def test_debian_gz_payload_matches_contract_checksums():
    """The located files decompress to exactly the CONTRACT's sha256 (the .gz headers may differ)."""
    from shared.data import _file_in, locate_data_dir, read_raw

    folder = locate_data_dir()
    for name, digest in SHA256.items():
        assert hashlib.sha256(read_raw(_file_in(folder, name))).hexdigest() == digest
