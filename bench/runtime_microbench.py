"""Micro-benchmarks of the runtime path on this machine: message conversion, JPEG decode (full vs reduced),
pre-processing per crop mode, and encode latency per backend for a bundle.

    python bench/runtime_microbench.py [--bundle models/NAME] [--repeats 50]

Without --bundle, seeded untrained TinyVAE-64 and VisionPuzzleVAE bundles are exported to a temporary folder
(needs torch; the numbers are speed only, not quality). Prints a Markdown table (median and p90 in ms).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import harness  # noqa: F401  (puts the repository on sys.path)

from sage_ros.runtime.image_codec import decode_compressed, encode_compressed, image_to_numpy, numpy_to_image
from sage_ros.runtime.preprocess import CROP_MODES, Preprocessor


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return float(np.median(samples)), float(np.percentile(samples, 90))


def frame_rows(repeats: int) -> list[tuple[str, float, float]]:
    from skimage import data
    import cv2

    frame = cv2.resize(data.astronaut(), (768, 576), interpolation=cv2.INTER_AREA)  # vtest.avi's size
    rows = []
    msg = numpy_to_image(frame, "rgb8")
    rows.append(("Image rgb8 768x576 -> numpy (view)", *timed(lambda: image_to_numpy(msg), repeats)))
    rows.append(("numpy -> Image rgb8 768x576", *timed(lambda: numpy_to_image(frame, "rgb8", msg=msg), repeats)))
    jpeg = type("C", (), {"format": "jpeg", "data": encode_compressed(frame, "jpeg", 90)})()
    for min_size in (None, 224, 64):
        label = "full" if min_size is None else f"min_size={min_size}"
        rows.append((f"JPEG 768x576 decode, {label}", *timed(lambda m=min_size: decode_compressed(jpeg, m), repeats)))
    for size in (64, 224):
        for mode in CROP_MODES:
            prep = Preprocessor(size, (0.0, 1.0), mode)
            rows.append((f"preprocess 768x576 -> {size}, {mode}", *timed(lambda p=prep: p(frame), repeats)))
    return rows


def backend_rows(bundle_dirs: list[Path], repeats: int) -> list[tuple[str, float, float]]:
    from sage_ros.runtime.backends import BackendError, make_backend
    from sage_ros.runtime.bundle import load_bundle

    rows = []
    for bundle_dir in bundle_dirs:
        bundle = load_bundle(bundle_dir)
        height, width = bundle.input_size
        batch = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
        lo, hi = bundle.input_range
        batch = batch * (hi - lo) + lo
        for name, options in (("onnxruntime", {"intra_op_threads": 1}), ("onnxruntime", {}), ("torch", {})):
            try:
                backend = make_backend(bundle, name, **options)
            except BackendError as err:
                rows.append((f"{bundle.name} encode, {name}: unavailable ({err})", float("nan"), float("nan")))
                continue
            label = f"{bundle.name} ({bundle.precision}) encode N=1, {name}" + (
                f" intra_op_threads={options['intra_op_threads']}" if options else "")
            rows.append((label, *timed(lambda b=backend: b.encode(batch), repeats)))
            backend.close()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", action="append", type=Path, help="bundle directory (repeatable)")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    rows = frame_rows(args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        bundles = args.bundle
        if not bundles:
            import torch
            from sage_ros.compression.export import export_bundle
            from sage_ros.models import TinyVAE, VisionPuzzleVAE

            torch.manual_seed(0)
            bundles = [export_bundle(TinyVAE(64).eval(), Path(tmp) / "tinyvae64", name="tinyvae64-seeded"),
                       export_bundle(TinyVAE(64).eval(), Path(tmp) / "tinyvae64-fp16", name="tinyvae64-seeded",
                                     precision="fp16"),
                       export_bundle(VisionPuzzleVAE().eval(), Path(tmp) / "puzzle", name="puzzle-seeded")]
        rows += backend_rows(bundles, args.repeats)
    print("| step | median ms | p90 ms |\n| --- | ---: | ---: |")
    for label, median, p90 in rows:
        print(f"| {label} | {median:.3f} | {p90:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
