"""Image-folder loader on a tree of real bundled photos (jpg, png, bmp, grey, alpha, nested, junk files)."""
import shutil

import cv2
import numpy as np
import pytest

from sage_ros.data import DataError, data_root
from sage_ros.data.folder import list_images, load_image_folder, read_image_rgb, split_of

PHOTOS = ["opencv-doc/apple.jpg", "opencv-doc/chicky_512.png", "skimage/astronaut.png", "sporco/monarch.png"]


@pytest.fixture
def folder(tmp_path):
    sources = data_root() / "sources"
    root = tmp_path / "frames"
    (root / "cam0" / "day1").mkdir(parents=True)
    for i, name in enumerate(PHOTOS):
        shutil.copy(sources / name, (root / "cam0" / "day1" if i % 2 else root) / f"{i}_{name.split('/')[1]}")
    apple_bgr = cv2.imread(str(sources / PHOTOS[0]))
    cv2.imwrite(str(root / "cam0" / "grey.PNG"), cv2.cvtColor(apple_bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(root / "cam0" / "apple.bmp"), apple_bgr)
    (root / "notes.txt").write_text("not an image")
    return root


def test_lists_images_recursively_any_case_sorted(folder):
    files = list_images(folder)
    assert len(files) == 6 and files == sorted(files)
    assert {f.suffix for f in files} == {".jpg", ".png", ".PNG", ".bmp"}


def test_reads_bgr_files_as_rgb(folder):
    # apple.jpg is a red apple: in RGB order the red channel dominates
    apple = read_image_rgb(next(folder.glob("0_apple.jpg")))
    assert apple[..., 0].mean() > apple[..., 2].mean() + 20
    bmp = read_image_rgb(folder / "cam0" / "apple.bmp")
    assert np.abs(bmp.astype(int) - apple).mean() < 1  # bmp written from the decoded jpg: lossless
    grey = read_image_rgb(folder / "cam0" / "grey.PNG")
    assert grey.shape[2] == 3 and (grey[..., 0] == grey[..., 2]).all()


@pytest.mark.parametrize("mode", ["resize", "center", "letterbox"])
def test_fit_modes_give_one_square_per_image(folder, mode):
    images = load_image_folder(folder, 64, mode)
    assert images.shape == (6, 64, 64, 3) and images.dtype == np.uint8
    assert images.std() > 20


def test_modes_differ_as_documented(folder):
    resized = load_image_folder(folder, 32, "resize")
    letterboxed = load_image_folder(folder, 32, "letterbox")
    # astronaut and apple are square: identical; a non-square photo gets black bars only when letterboxed
    files = list_images(folder)
    wide = next(i for i, f in enumerate(files) if (lambda im: im.shape[0] != im.shape[1])(read_image_rgb(f)))
    assert letterboxed[wide][0].max() == 0 or letterboxed[wide][:, 0].max() == 0
    assert resized[wide][0].max() > 0


def test_random_crops_are_deterministic_per_seed(folder):
    a = load_image_folder(folder, 32, "crops", crops_per_image=5, seed=3)
    b = load_image_folder(folder, 32, "crops", crops_per_image=5, seed=3)
    c = load_image_folder(folder, 32, "crops", crops_per_image=5, seed=4)
    assert a.shape == (30, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_split_by_file_is_disjoint_and_complete(tmp_path):
    names = [f"f{i:03d}.png" for i in range(200)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(n) for n in names]
    counts = {s: splits.count(s) for s in ("train", "val", "test")}
    assert sum(counts.values()) == 200 and counts["train"] > 120 and counts["val"] > 5 and counts["test"] > 5
    tile = np.full((8, 8, 3), 128, np.uint8)
    for i, name in enumerate(names[:40]):
        cv2.imwrite(str(tmp_path / name), tile + i)
    values = []
    for split in set(splits[:40]):
        values += load_image_folder(tmp_path, 8, split=split)[:, 0, 0, 0].tolist()
    assert sorted(values) == sorted(128 + i for i in range(40))  # every file exactly once across splits


def test_bad_input_raises_data_error(folder, tmp_path):
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match="broken.jpg"):
        load_image_folder(folder, 32)
    with pytest.raises(DataError):
        load_image_folder(tmp_path / "missing", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no "):
        load_image_folder(tmp_path / "empty", 32)
    with pytest.raises(DataError):
        load_image_folder(folder, 32, "stretch")
    with pytest.raises(DataError):
        load_image_folder(folder, 32, split="holdout")
