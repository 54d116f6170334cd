"""CIFAR-10 python batches, tested on files written in the exact format of cifar-10-python.tar.gz."""
import os
import pickle

import numpy as np
import pytest

from sage_ros.data import DataError, load_cifar_test
from sage_ros.data.cifar import load_cifar10, read_batch


def write_batch(path, images_nhwc, labels, label=b"testing batch 1 of 1"):
    """The layout of the real files: a dict with bytes keys (they were pickled by Python 2), b'data' N x 3072
    uint8 = the R plane, then G, then B, each 32 x 32 row-major; b'labels' a list of ints."""
    data = images_nhwc.transpose(0, 3, 1, 2).reshape(len(images_nhwc), 3072)
    batch = {b"batch_label": label, b"labels": [int(x) for x in labels], b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def test_real_cifar_images_round_trip_through_the_batch_format(tmp_path):
    images, labels = load_cifar_test()  # the 20 real CIFAR-10 test images foolbox ships
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    write_batch(folder / "test_batch", images, labels)
    loaded, loaded_labels = load_cifar10(tmp_path, "test")  # finds the cifar-10-batches-py child folder
    assert loaded.dtype == np.uint8 and loaded.shape == (20, 32, 32, 3) and loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, images)
    np.testing.assert_array_equal(loaded_labels, labels)


def test_plane_order_is_r_then_g_then_b(tmp_path):
    data = np.zeros((1, 3072), np.uint8)
    data[0, :1024] = 200        # R plane
    data[0, 1024:2048] = 100    # G plane
    data[0, 2048 + 5] = 7       # B plane, row 0, column 5
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [4]}, f, protocol=2)
    images, labels = load_cifar10(tmp_path, "test")
    assert images[0, 0, 0].tolist() == [200, 100, 0] and images[0, 0, 5, 2] == 7 and images[0, 1, 5, 2] == 0
    assert labels.tolist() == [4]


def test_train_split_concatenates_five_batches_in_order(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8) for _ in range(5)]
    for i, part in enumerate(parts, start=1):
        write_batch(tmp_path / f"data_batch_{i}", part, [i] * 3)
    images, labels = load_cifar10(tmp_path, "train")
    np.testing.assert_array_equal(images, np.concatenate(parts))
    assert labels.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5]


def test_missing_batch_is_an_error_not_a_smaller_set(tmp_path):
    for i in (1, 2, 3, 5):
        write_batch(tmp_path / f"data_batch_{i}", np.zeros((1, 32, 32, 3), np.uint8), [0])
    with pytest.raises(DataError, match="data_batch_4"):
        load_cifar10(tmp_path, "train")
    with pytest.raises(DataError):
        load_cifar10(tmp_path / "nowhere", "test")
    with pytest.raises(DataError):
        load_cifar10(tmp_path, "validation")


@pytest.mark.parametrize("batch", [
    {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]},        # wrong row length
    {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},      # wrong dtype
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},           # label count
    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]},          # label range
    {b"labels": [0]},                                                   # no data
    [1, 2, 3],                                                          # not a dict
])
def test_malformed_batches_raise_data_error(tmp_path, batch):
    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(DataError):
        read_batch(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_batch_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}))
    with pytest.raises(DataError, match="not a CIFAR-10"):
        read_batch(path)
    (tmp_path / "garbage").write_bytes(b"\x00\x01 not a pickle")
    with pytest.raises(DataError):
        read_batch(tmp_path / "garbage")
