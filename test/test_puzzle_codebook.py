"""VisionPuzzleVAE codebook training (k-means init, EMA, dead-code restarts), the palette baseline, code
statistics, the folded encoder graph and the two INT8 targets (CPU uint8, TensorRT symmetric Q/DQ)."""
import json

import numpy as np
import pytest
import torch

from quant_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from sage_ros.compression.evaluate import code_usage, evaluate_pair, palette_baseline, palette_reconstruct
from sage_ros.compression.vq import CodebookTrainer, code_statistics, kmeans
from sage_ros.models import VisionPuzzleVAE


def _blobs(k=4, n=200, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-5, 5, (k, dim)).astype(np.float32)
    points = np.concatenate([c + 0.05 * rng.standard_normal((n, dim)).astype(np.float32) for c in centres])
    return centres, points


def test_kmeans_finds_separated_clusters():
    centres, points = _blobs()
    found = kmeans(points, 4, seed=1).numpy()
    # every true centre has a found centre next to it (order is arbitrary)
    dist = np.linalg.norm(centres[:, None] - found[None], axis=-1).min(axis=1)
    assert dist.max() < 0.05


def test_kmeans_needs_enough_points():
    with pytest.raises(ValueError, match="at least"):
        kmeans(np.zeros((3, 2), np.float32), 4)


class _Stub(torch.nn.Module):
    """Just a codebook, as CodebookTrainer sees a VQ model."""

    def __init__(self, k, dim):
        super().__init__()
        self.num_codes, self.latent_dim = k, dim
        self.codebook = torch.nn.Embedding(k, dim)


def _as_latents(points):  # (N, L) -> N x L x 1 x 1 so flat_latents gives the rows back in order
    return torch.from_numpy(points)[:, :, None, None]


def test_ema_codebook_converges_to_cluster_means_and_restarts_dead_codes():
    centres, points = _blobs(k=3, n=100)
    stub = _Stub(4, 3)
    with torch.no_grad():  # three codes near the clusters, one far away from all data (dead)
        stub.codebook.weight.copy_(torch.from_numpy(np.concatenate([centres + 0.5, [[100.0, 100.0, 100.0]]])))
    trainer = CodebookTrainer(stub, decay=0.9, restart_below=0.05, seed=0)
    assert not stub.codebook.weight.requires_grad  # EMA is the only writer
    z = _as_latents(points)
    restarted = 0
    for _ in range(100):
        codes = torch.cdist(torch.from_numpy(points), stub.codebook.weight).argmin(1)
        restarted += trainer.update(stub, z, codes)["restarted"]
    assert restarted >= 1 and trainer.restarts == restarted
    weight = stub.codebook.weight.detach().numpy()
    assert np.abs(weight).max() < 10  # the dead code was moved onto the data
    # each cluster mean is (close to) one of the codes
    assert np.linalg.norm(centres[:, None] - weight[None], axis=-1).min(axis=1).max() < 0.2
    codes = torch.cdist(torch.from_numpy(points), stub.codebook.weight).argmin(1)
    assert len(torch.unique(codes)) == 4  # the restarted code now serves part of a cluster


def test_gradient_codebook_mode_leaves_the_codebook_to_the_optimizer():
    stub = _Stub(4, 3)
    trainer = CodebookTrainer(stub, decay=0.0, restart_below=0.0)
    before = stub.codebook.weight.detach().clone()
    _, points = _blobs(k=4, n=10)
    trainer.update(stub, _as_latents(points), torch.zeros(len(points), dtype=torch.long))
    assert stub.codebook.weight.requires_grad and torch.equal(stub.codebook.weight, before)


def test_code_usage_perplexity():
    assert code_usage([5, 5, 5, 5])["code_perplexity"] == pytest.approx(4.0)
    usage = code_usage([10, 0, 0, 0])
    assert usage["codes_used"] == 1 and usage["code_perplexity"] == pytest.approx(1.0)


def _flat_colour_images(n, size=224, seed=0):
    """Images of 4 flat quadrants, each one of 6 colours: a 10-colour palette on a 30 x 30 grid represents them
    exactly except at the quadrant borders."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (6, 3))
    out = np.empty((n, size, size, 3), np.uint8)
    h = size // 2
    for i in range(n):
        pick = colours[rng.integers(0, 6, 4)]
        out[i, :h, :h], out[i, :h, h:], out[i, h:, :h], out[i, h:, h:] = pick
    return out


def test_palette_baseline_is_near_exact_on_flat_colours_and_worse_on_noise():
    train, test = _flat_colour_images(20, seed=0), _flat_colour_images(6, seed=0)[:6]
    flat = palette_baseline(train, test)
    assert flat["codes_used"] <= 10 and len(flat["palette"]) == 10
    assert flat["psnr"] > 25
    noisy = np.clip(test.astype(int) + np.random.default_rng(1).integers(-60, 61, test.shape), 0, 255).astype(np.uint8)
    assert palette_baseline(train, noisy)["psnr"] < flat["psnr"] - 5
    recon, index = palette_reconstruct(test[:2], np.asarray(flat["palette"], np.float32))
    assert recon.shape == (2, 3, 224, 224) and index.shape == (2, 30, 30) and index.max() < 10


def test_code_statistics_reports_every_code():
    torch.manual_seed(0)
    model = VisionPuzzleVAE(8).eval()
    images = _flat_colour_images(3)
    stats = code_statistics(model, images, batch_size=2)
    assert len(stats["per_code"]) == 10
    assert sum(c["cells"] for c in stats["per_code"]) == 3 * 900
    assert sum(c["share"] for c in stats["per_code"]) == pytest.approx(1.0)
    assert 1 <= stats["codes_used"] <= 10 and 1 <= stats["code_perplexity"] <= stats["codes_used"] + 1e-9
    assert all(0 <= v <= 1 for c in stats["per_code"] for v in c["decoded_rgb"] + c["input_rgb_mean"])


def test_puzzle_training_with_ema_keeps_the_architecture_exact(tmp_path):
    from sage_ros.compression.train import TrainConfig, train

    model = VisionPuzzleVAE(8)
    keys = set(model.state_dict())
    images = _flat_colour_images(8)
    cfg = TrainConfig(steps=3, batch_size=4, progress_bar=False, vq_ema=0.99, vq_restart=0.03, vq_init="kmeans",
                      augment=False)
    trained = train(model, cfg, tmp_path, train_images=images, test_images=images[:4])
    assert sum(p.numel() for p in trained.parameters()) == 332_099 + 267 * 8
    assert set(trained.state_dict()) == keys  # EMA statistics live outside the model
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["config"]["vq_ema"] == 0.99 and "code_perplexity" in report["metrics"]
    with pytest.raises(ValueError, match="vq_init"):
        train(VisionPuzzleVAE(8), TrainConfig(steps=1, batch_size=2, progress_bar=False, vq_init="nope",
                                              augment=False), tmp_path / "x", train_images=images,
              test_images=images[:2])


@pytest.fixture(scope="module")
def puzzle_model():
    torch.manual_seed(0)
    model = VisionPuzzleVAE(8)
    with torch.no_grad():  # a spread-out codebook, so that codes vary over an image
        model.codebook.weight.copy_(torch.randn(10, 8))
    # BatchNorm running stats from a few batches, so activations are not degenerate
    model.train()
    images = torch.from_numpy(_flat_colour_images(8)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        model(images)
    return model.eval()


def test_folded_encoder_graph_gives_the_torch_codes(puzzle_model, tmp_path):
    import onnx

    from sage_ros.compression.export import export_bundle

    out = export_bundle(puzzle_model, tmp_path / "fp32", name="fp32")
    ops = [n.op_type for n in onnx.load(str(out / "encoder.onnx")).graph.node]
    assert ops[-1] == "ArgMax" and "MatMul" not in ops and "ReduceSum" not in ops  # search folded into a Conv
    images = _flat_colour_images(4, seed=3)
    result = evaluate_pair(puzzle_model, str(out), images, batch_size=4)
    assert result["code_agreement"] >= 99.9
    assert result["codes_used"] >= 2


def test_int8_targets_cpu_uint8_and_tensorrt_symmetric(puzzle_model, tmp_path):
    import onnx

    from sage_ros.compression.onnx_quant import OnnxQuantError, check_tensorrt_qdq, export_int8_bundle

    cal = _flat_colour_images(8, seed=5)
    trt = export_int8_bundle(puzzle_model, tmp_path / "trt", name="trt", calibration_images=cal, target="tensorrt")
    cpu = export_int8_bundle(puzzle_model, tmp_path / "cpu", name="cpu", calibration_images=cal, target="cpu")
    for part in ("encoder.onnx", "decoder.onnx"):
        assert check_tensorrt_qdq(trt / part) == []
        problems = check_tensorrt_qdq(cpu / part)
        assert any("UINT8" in p for p in problems) and any("asymmetric" in p for p in problems)
    meta = json.loads((trt / "bundle.json").read_text())["quantization"]
    assert meta["target"] == "tensorrt" and meta["qdq_placement"] == "inputs"
    # TensorRT placement: no Q/DQ pair between a Conv and its Relu
    graph = onnx.load(str(trt / "encoder.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    relu_inputs = [producer[n.input[0]].op_type for n in graph.node if n.op_type == "Relu"]
    assert relu_inputs and set(relu_inputs) == {"Conv"}
    # CPU graph: every Relu folded into the uint8 zero point
    assert "Relu" not in [n.op_type for n in onnx.load(str(cpu / "encoder.onnx")).graph.node]
    images = _flat_colour_images(4, seed=3)
    for bundle in (trt, cpu):
        assert evaluate_pair(puzzle_model, str(bundle), images, batch_size=4)["code_agreement"] > 80
    with pytest.raises(OnnxQuantError, match="target"):
        export_int8_bundle(puzzle_model, tmp_path / "x", name="x", calibration_images=cal, target="gpu")


def test_check_tensorrt_qdq_flags_int32_bias(puzzle_model, tmp_path):
    """onnxruntime's default QDQ quantizes Conv biases to INT32 DequantizeLinear, which TensorRT's ONNX parser
    rejects (onnx/onnx-tensorrt#850): the checker must catch it."""
    from sage_ros.compression import export as fp_export
    from sage_ros.compression.onnx_quant import check_tensorrt_qdq, quantize_graph_int8

    fp_export.export_onnx(puzzle_model, tmp_path, precision="fp32")
    codes = np.zeros((4, 30, 30), np.int64)
    quantize_graph_int8(tmp_path / "decoder.onnx", tmp_path / "dec_q.onnx", "z", codes, activations="uint8")
    assert any("INT32" in p for p in check_tensorrt_qdq(tmp_path / "dec_q.onnx"))


def test_tensorrt_backend_refuses_the_cpu_int8_bundle(puzzle_model, tmp_path):
    """A uint8-activation (CPU target) graph would fail in TensorRT's parser; the backend says which bundle to use
    instead (BackendUnavailable, so backend=auto falls back to onnxruntime), before TensorRT is even imported."""
    from sage_ros.compression.onnx_quant import export_int8_bundle
    from sage_ros.runtime.backends.base import BackendUnavailable
    from sage_ros.runtime.backends.tensorrt_backend import TensorRTBackend
    from sage_ros.runtime.bundle import load_bundle

    cpu = export_int8_bundle(puzzle_model, tmp_path / "cpu", name="cpu", calibration_images=_flat_colour_images(4),
                             target="cpu")
    with pytest.raises(BackendUnavailable, match="_int8_tensorrt"):
        TensorRTBackend(load_bundle(cpu), device="cuda:0")


def test_straight_through_softmax_decodes_hard_codes_and_sends_gradients_to_the_assignment():
    from sage_ros.compression.vq import straight_through_softmax

    torch.manual_seed(0)
    model = VisionPuzzleVAE(8).eval()  # eval: BatchNorm running stats, so both paths see the same decoder input
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    recon, z_e, z_q, codes = straight_through_softmax(model, x, 0.1)
    with torch.no_grad():
        assert torch.equal(codes, model.encode(x))
        assert torch.allclose(recon, model.decode(codes), atol=1e-5)  # the decoder saw the hard codes
    recon.pow(2).mean().backward()
    assert model.codebook.weight.grad is not None and model.codebook.weight.grad.abs().sum() > 0
    assert model.encoder[0].weight.grad.abs().sum() > 0
