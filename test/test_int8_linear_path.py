"""INT8 export of the *LinSkip variants keeps the fixed PCA path float (onnx_quant.linear_path_nodes): quantized
per tensor, its whitened rows (spanning ~100x in scale) lost 2 dB on the issue-22 model."""
import numpy as np
import onnx
import torch

from sage_ros.compression.datasets import synthetic_images
from sage_ros.compression.export import export_onnx
from sage_ros.compression.onnx_quant import export_int8_bundle, graph_nodes, linear_path_nodes
from sage_ros.models import TinyVAE, TinyVAE32LinSkip, TinyVAELinSkip


def test_linear_path_nodes_name_the_pca_path_and_nothing_of_the_seed(tmp_path):
    torch.manual_seed(0)
    export_onnx(TinyVAE(4).eval(), tmp_path / "seed")
    assert linear_path_nodes(graph_nodes(tmp_path / "seed" / "encoder.onnx")) == []
    export_onnx(TinyVAELinSkip(4).eval(), tmp_path / "lin")
    enc = linear_path_nodes(graph_nodes(tmp_path / "lin" / "encoder.onnx"))
    dec = linear_path_nodes(graph_nodes(tmp_path / "lin" / "decoder.onnx"))
    assert "/lin_enc/MatMul" in enc and "/fc_mu/MatMul" not in enc
    assert not any("Conv" in name for name in enc + dec)
    assert "/lin_dec/MatMul" in dec and "/fc_decode/MatMul" not in dec


def test_int8_linskip_bundle_keeps_the_pca_path_float_and_close_to_fp32(tmp_path):
    torch.manual_seed(0)
    images = synthetic_images(160, 32)
    model = TinyVAE32LinSkip(8).eval()
    model.init_linear_path(torch.from_numpy(images[:128]).permute(0, 3, 1, 2).float() / 255)
    out = export_int8_bundle(model, tmp_path / "b", name="t", calibration_images=images[:64])
    encoder = onnx.load(str(out / "encoder.onnx"))
    weights = {t.name: t for t in encoder.graph.initializer}
    lin = next(n for n in encoder.graph.node if n.name.startswith("/lin_enc/"))
    assert all(weights[i].data_type == onnx.TensorProto.FLOAT for i in lin.input if i in weights)
    assert any(t.data_type == onnx.TensorProto.INT8 for t in encoder.graph.initializer)  # the rest is int8
    import onnxruntime as ort
    x = (images[128:].astype(np.float32) / 255).transpose(0, 3, 1, 2)
    mu_int8 = ort.InferenceSession(str(out / "encoder.onnx")).run(None, {"image": x})[0]
    with torch.no_grad():
        mu_fp32 = model.encode(torch.from_numpy(x))[0].numpy()
    cos = (mu_int8 * mu_fp32).sum(1) / np.linalg.norm(mu_int8, axis=1) / np.linalg.norm(mu_fp32, axis=1)
    assert cos.mean() > 0.999  # untrained conv paths are zero: μ is the PCA path's, float
