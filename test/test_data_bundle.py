"""The bundled real-image dataset (`make data`): shapes, integrity, split hygiene, determinism, fetch caching."""
import hashlib
import json
import shutil

import numpy as np
import pytest

from sage_ros.data import (CIFAR_TEST, SIZES, SPLITS, DataError, DataNotFoundError, data_root, load_cifar_test,
                           load_split, splits_info, vtest_bag_path)
from sage_ros.data import crops, fetch
from sage_ros.data.sources import read_manifest, sha256_file


@pytest.mark.parametrize("size", SIZES)
def test_every_split_loads_as_uint8_nhwc_rgb(size):
    info = splits_info()
    for split in SPLITS:
        images = load_split(size, split, mmap=True)
        assert images.dtype == np.uint8 and images.shape == (info["counts"][str(size)][split], size, size, 3)
        sample = np.asarray(images[:: max(1, len(images) // 200)])
        # real photographs: varied, not blank, all three channels used differently somewhere
        assert sample.std() > 20
        assert np.abs(sample[..., 0].astype(int) - sample[..., 2]).mean() > 3


def test_thousands_of_crops_and_fast_224_load():
    assert sum(len(load_split(s, "train", mmap=True)) for s in SIZES) >= 3000
    assert len(load_split(224, "train", mmap=True)) <= 3000


def test_arrays_match_recorded_sha256():
    info = splits_info()
    root = data_root() / "crops"
    for name in ("32_test.npy", "32_cifar_test.npy"):  # hashing all 850 MB would cost seconds; two suffice
        assert sha256_file(root / name) == info["files"][name]["sha256"]


def test_split_by_source_photo_groups_and_video_time_are_disjoint():
    info = splits_info()
    files = read_manifest(data_root() / "sources", verify=False)
    group_of = {f.file: f.group for f in files}
    groups = {split: {group_of[p] for p in info["photos"][split]} for split in SPLITS}
    assert all(groups[split] for split in SPLITS)
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    # every photo of a group (e.g. both views of a stereo pair) sits in its group's split
    for split in SPLITS:
        for photo in info["photos"][split]:
            assert info["groups"][group_of[photo]] == split
    ranges = sorted(info["video"]["ranges"].values())
    gap = info["video"]["gap_frames"]
    assert gap >= 10 and all(b[0] - a[1] >= gap for a, b in zip(ranges, ranges[1:]))
    # the raw slice of the demo bag (first 20 s) is test data only
    assert info["video"]["ranges"]["test"] == [0, 200]


def test_no_test_crop_appears_in_train():
    train = load_split(32, "train")
    train_hashes = {hashlib.sha1(img.tobytes()).digest() for img in train}
    for split in ("val", "test"):
        assert not any(hashlib.sha1(img.tobytes()).digest() in train_hashes for img in load_split(32, split))


def test_cifar_test_images_are_the_real_first_cifar10_test_images():
    images, labels = load_cifar_test()
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    # labels of CIFAR-10 test_batch images 0..19 (foolbox names its files cifar10_<index>_<label>.png)
    assert labels.tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    assert len({img.tobytes() for img in images}) == 20


def test_bad_arguments_and_missing_data_raise_clear_errors(tmp_path):
    with pytest.raises(DataError):
        load_split(48, "train")
    with pytest.raises(DataError):
        load_split(64, "holdout")
    with pytest.raises(DataError):
        load_split(64, CIFAR_TEST)
    with pytest.raises(DataNotFoundError, match="make data"):
        load_split(32, "train", root=tmp_path)
    with pytest.raises(DataNotFoundError, match="make data"):
        vtest_bag_path(root=tmp_path)


def test_data_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGE_ROS_DATA", str(tmp_path))
    assert data_root() == tmp_path
    with pytest.raises(DataNotFoundError):
        load_split(32, "val")


@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setattr(crops, "COUNTS", {32: {"train": 40, "val": 12, "test": 12},
                                          64: {"train": 20, "val": 6, "test": 6},
                                          224: {"train": 6, "val": 3, "test": 3}})


def test_from_sources_builds_deterministic_crops_and_caches(tmp_path, small_counts, capsys):
    sources = data_root() / "sources"
    for out in (tmp_path / "a", tmp_path / "b"):
        shutil.copytree(sources, out / "sources")
        assert fetch.main(["--out", str(out), "--from-sources"]) == 0
        assert json.loads((out / ".complete").read_text())["from_sources"] is True
    a, b = (json.loads((tmp_path / x / "crops" / "splits.json").read_text()) for x in "ab")
    assert a["files"] == b["files"] and a["groups"] == splits_info()["groups"]
    first = np.load(tmp_path / "a" / "crops" / "64_train.npy")
    assert first.shape == (20, 64, 64, 3) and first.std() > 10
    capsys.readouterr()
    fetch.main(["--out", str(tmp_path / "a"), "--from-sources"])
    assert "B crops: cached" in capsys.readouterr().out


def test_changed_source_file_is_refused(tmp_path, small_counts):
    out = tmp_path / "data"
    shutil.copytree(data_root() / "sources", out / "sources")
    photo = next(f for f in read_manifest(out / "sources", verify=False) if f.kind == "photo")
    (out / "sources" / photo.file).write_bytes(b"not the packaged photo")
    with pytest.raises(DataError, match="sha256"):
        fetch.main(["--out", str(out), "--from-sources"])
    assert not (out / ".complete").exists()


def test_windows_stay_inside_the_image_with_scale_variety():
    rng = np.random.default_rng(0)
    windows = crops.sample_windows(rng, 2000, 300, 500, 32)
    y, x, side, flip = windows.T
    assert (y >= 0).all() and (x >= 0).all() and (y + side <= 300).all() and (x + side <= 500).all()
    assert side.min() >= 32 and side.max() <= 300 and side.max() / side.min() > 5
    assert 0.4 < flip.mean() < 0.6
