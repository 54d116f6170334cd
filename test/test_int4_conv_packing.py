"""INT4 bundles with INT8 convolutions: the convolution weights sit in the graph as int8 + DequantizeLinear, the same
values as before (so the same outputs), in a quarter of the bytes."""
import numpy as np
import onnx
import onnxruntime as ort
from torch import nn

from quant_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from quant_helpers import smooth_images, trained_model
from sage_ros.compression import export as fp_export
from sage_ros.compression.onnx_int4 import int8_conv_rewrite
from sage_ros.compression.quantize import Int4Config, quantize_


def _run(path, x, name="image"):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {name: x})


def test_int8_conv_rewrite_keeps_outputs_and_shrinks_the_graph(tmp_path):
    model = quantize_(trained_model("TinyVAE", 8), Int4Config(conv_scheme="int8"))
    fp_export.export_onnx(model, tmp_path, precision="fp32")
    enc, dec = tmp_path / fp_export.ENCODER_FILE, tmp_path / fp_export.DECODER_FILE
    x = (smooth_images(4, 64, seed=3).transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
    z = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    before = (_run(enc, x), _run(dec, z, "z"), enc.stat().st_size + dec.stat().st_size)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
    done = {**int8_conv_rewrite(enc, convs), **int8_conv_rewrite(dec, convs)}
    assert set(done) == set(convs)  # every convolution, encoder and decoder (ConvTranspose on axis 1)
    for out_a, out_b in zip(before[0] + before[1], _run(enc, x) + _run(dec, z, "z")):
        # same weights; onnxruntime may pick another conv kernel for a DQ-fed weight: float rounding only
        np.testing.assert_allclose(out_a, out_b, rtol=1e-5, atol=1e-5)
    conv_fp32 = sum(v["fp32_bytes"] for v in done.values())
    saved = before[2] - (enc.stat().st_size + dec.stat().st_size)
    assert saved > 0.7 * conv_fp32  # 4 bytes -> 1 byte per weight, + one float scale per output channel
    dq = [n for p in (enc, dec) for n in onnx.load(str(p)).graph.node if n.op_type == "DequantizeLinear"]
    assert len(dq) == len(convs)


def test_int8_conv_rewrite_refuses_weights_that_are_not_the_quantized_ones(tmp_path):
    model = quantize_(trained_model("TinyVAE", 8), Int4Config(conv_scheme="int8"))
    fp_export.export_onnx(trained_model("TinyVAE", 8, steps=3, seed=5), tmp_path, precision="fp32")  # other weights
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    try:
        int8_conv_rewrite(tmp_path / fp_export.ENCODER_FILE, convs)
    except ValueError as exc:
        assert "does not hold" in str(exc)
    else:
        raise AssertionError("a graph with other weights was rewritten")
