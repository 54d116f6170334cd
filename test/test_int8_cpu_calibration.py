"""CPU INT8 export options for off-domain inputs: 7-bit weights (reduce_range) and varied calibration images."""
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from quant_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from quant_helpers import smooth_images, trained_model
from sage_ros.compression.onnx_quant import export_int8_bundle, varied_calibration_images
from sage_ros.data import data_root, load_split


def _int8_weights(path):
    graph = onnx.load(str(path)).graph
    return [numpy_helper.to_array(i) for i in graph.initializer
            if i.data_type == onnx.TensorProto.INT8 and i.name.endswith("_quantized") and i.dims]


@pytest.mark.parametrize("reduce_range, bound", [(False, 127), (True, 64)])
def test_reduce_range_gives_7_bit_weights(tmp_path, reduce_range, bound):
    cal = smooth_images(8, 64, seed=2)
    out = export_int8_bundle(trained_model("TinyVAE", 8), tmp_path / "b", name="b", calibration_images=cal,
                             target="cpu", reduce_range=reduce_range)
    weights = _int8_weights(out / "encoder.onnx")
    assert weights and max(int(np.abs(w).max()) for w in weights) > bound // 2
    assert all(np.abs(w).max() <= bound for w in weights)
    import json
    meta = json.loads((out / "bundle.json").read_text())
    assert ("7-bit" in meta["quantization"]["weights"]) == reduce_range


@pytest.mark.skipif(not (data_root() / "crops" / "splits.json").is_file(), reason="needs `make data`")
def test_varied_calibration_mixes_crops_whole_frames_and_windows_never_test():
    images = varied_calibration_images(32, count=40, seed=1)
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    val = {im.tobytes() for im in load_split(32, "val", mmap=True)}
    test = {im.tobytes() for im in load_split(32, "test", mmap=True)}
    from_val = sum(im.tobytes() in val for im in images)
    assert from_val == 10 and not any(im.tobytes() in test for im in images)  # a quarter val crops, no test
    assert np.array_equal(images, varied_calibration_images(32, count=40, seed=1))
