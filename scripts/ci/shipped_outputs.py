"""Every shipped bundle (models/*/bundle.json) encoding the same real camera frames in two venvs, compared.

    .venv/bin/python scripts/ci/shipped_outputs.py write .distros/shipped.npz         # the main venv: the reference
    .venv-humble/bin/python scripts/ci/shipped_outputs.py compare .distros/shipped.npz  # a robot-pins venv

The frames are the bundled real-camera bag's (data_cache/bags/vtest, `make data`), 768 x 576 RGB, taken through the
node's own path: Preprocessor.from_bundle (resize with cv2.INTER_AREA) -> onnxruntime backend (CPU) -> encoder
outputs; then the decoder on those outputs. Stored per bundle: the preprocessed input, every encoder output and
the decoded images, so a difference is attributed to its stage (OpenCV's resize or onnxruntime's kernels).

Tolerances (compare), per stage and bundle precision; each row also says whether it is bit-identical:
  preprocessed input                      bit-identical (OpenCV's INTER_AREA resize, 4.5 / 4.6 vs 5.0)
  fp32 / fp16 bundles, every output       max |diff| <= 1e-5 (measured <= 3.6e-7)
  int8 / int4 encoders (mu, logvar)       relative L2 <= 1e-2 (measured <= 1.8e-3: onnxruntime 1.23.2's int4 kernels)
  int8 / int4 decoders (decoded images)   relative L2 <= 5e-2 (measured <= 2.0e-2 under onnxruntime 1.23.2)
  VQ codes                                agreement >= 0.999 (measured: identical)
("measured": Python 3.10.13 + numpy 1.26.4 + onnxruntime 1.23.2 + OpenCV 4.5.5 against the 3.11 main venv's
numpy 2.4.6 + onnxruntime 1.32.0 + OpenCV 5.0.) Exit 1 naming the rows outside.
"""
from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

FLOAT_MAX_ABS = 1e-5
QUANTIZED_REL_L2 = {"encoder": 1e-2, "decoded": 5e-2}
CODE_AGREEMENT = 0.999
FRAMES, STRIDE = 12, 20


def versions() -> str:
    import cv2
    import onnxruntime

    return (f"Python {platform.python_version()}, numpy {np.__version__}, onnxruntime {onnxruntime.__version__}, "
            f"OpenCV {cv2.__version__}")


def outputs() -> dict[str, np.ndarray]:
    """{"<bundle>/<stage>": array} for every shipped bundle."""
    from sage_ros.data import vtest_bag_path
    from sage_ros.data.rosbag import load_bag_images
    from sage_ros.runtime.backends import make_backend
    from sage_ros.runtime.bundle import load_bundle
    from sage_ros.runtime.preprocess import Preprocessor

    frames = load_bag_images(vtest_bag_path(), "/camera/image_raw", stride=STRIDE, max_frames=FRAMES)
    result = {}
    for meta in sorted((REPO / "models").glob("*/bundle.json")):
        bundle = load_bundle(meta.parent)
        batch = Preprocessor.from_bundle(bundle)(list(frames))
        result[f"{bundle.path.name}/input"] = batch
        with make_backend(bundle, "onnxruntime") as backend:
            encoded = backend.encode(batch)
            for name, value in encoded.items():
                result[f"{bundle.path.name}/{name}"] = np.asarray(value)
            z = encoded["codes"] if "codes" in encoded else encoded["mu"]
            result[f"{bundle.path.name}/decoded"] = np.asarray(backend.decode(z))
    return result


def write(path: Path) -> None:
    data = outputs()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, **data, __versions__=np.array(versions()))
    Path(tmp.name).replace(path)  # atomic
    print(f"shipped bundles: {len({k.split('/')[0] for k in data})} encoded {FRAMES} real frames under {versions()} "
          f"-> {path}")


def check(key: str, ref: np.ndarray, out: np.ndarray, precision: str) -> tuple[bool, str]:
    """(within tolerance, what was measured) for one stored array; see the module's docstring."""
    stage = key.rsplit("/", 1)[1]
    if stage == "codes":
        agreement = float(np.mean(ref == out))
        return agreement >= CODE_AGREEMENT, f"code agreement {agreement:.4f} (>= {CODE_AGREEMENT})"
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    max_abs = float(np.max(np.abs(ref - out))) if ref.size else 0.0
    if stage == "input":
        return max_abs == 0.0, f"max |diff| {max_abs:.3g} (must be bit-identical)"
    if precision in ("fp32", "fp16"):
        return max_abs <= FLOAT_MAX_ABS, f"max |diff| {max_abs:.3g} (<= {FLOAT_MAX_ABS})"
    limit = QUANTIZED_REL_L2["decoded" if stage == "decoded" else "encoder"]
    rel = float(np.linalg.norm(ref - out) / max(np.linalg.norm(ref), 1e-12))
    return rel <= limit, f"relative L2 {rel:.3g} (<= {limit}), max |diff| {max_abs:.3g}"


def compare(path: Path) -> int:
    reference = np.load(path)
    got = outputs()
    print(f"reference: {reference['__versions__']}\nhere:      {versions()}")
    precision = {meta.parent.name: json.loads(meta.read_text())["precision"]
                 for meta in (REPO / "models").glob("*/bundle.json")}
    bad = [f"{key}: in the reference, not here" for key in sorted(set(reference.files) - set(got) - {"__versions__"})]
    differs = set()
    for key in sorted(got):
        bundle = key.split("/")[0]
        if key not in reference.files:
            bad.append(f"{key}: not in the reference (re-run `write` with the main venv)")
            continue
        ref, out = reference[key], got[key]
        if ref.shape != out.shape:
            bad.append(f"{key}: shape {out.shape} != reference {ref.shape}")
            continue
        if ref.dtype == out.dtype and np.array_equal(ref, out):
            print(f"  {key:44s} bit-identical")
            continue
        differs.add(bundle)
        ok, measured = check(key, ref, out, precision[bundle])
        print(f"  {key:44s} {measured}{'' if ok else '   OUTSIDE'}")
        if not ok:
            bad.append(f"{key} ({precision[bundle]}): {measured}")
    bundles = sorted({key.split("/")[0] for key in got})
    print(f"shipped bundles: {len(bundles)} on {FRAMES} real frames; bit-identical to the main venv: "
          f"{len(bundles) - len(differs)}; within the stated tolerance: {len(bundles) - len({b.split('/')[0] for b in bad})}")
    if bad:
        print("OUTSIDE TOLERANCE:\n  " + "\n  ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "compare"):
        sys.exit(__doc__)
    if sys.argv[1] == "write":
        write(Path(sys.argv[2]))
    else:
        sys.exit(compare(Path(sys.argv[2])))
