"""`sage-ros quantize` / `export` (int8, int4) / `evaluate` end to end on a briefly trained model + synthetic data."""
import json

import numpy as np
import onnx
import pytest

from quant_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from quant_helpers import trained_model
from sage_ros.cli import main
from sage_ros.compression.checkpoints import save_model
from sage_ros.compression.evaluate import evaluate_pair
from sage_ros.compression.quantize import load_quantized
from sage_ros.runtime.bundle import load_bundle

DATA = ["--data", "synthetic"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "run"
    save_model(trained_model("TinyVAE", 64, steps=30), path)
    return path


def test_quantize_int4_writes_loadable_file_and_report(run_dir, tmp_path):
    out = tmp_path / "q4"
    assert main(["quantize", "--run", str(run_dir), "--scheme", "int4", "--group-size", "32", "--out", str(out),
                 *DATA, "--limit", "16"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["bytes"]["quantized"] == (out / "model.int4.safetensors").stat().st_size
    assert report["ratio_vs_fp32"] == pytest.approx(
        (out / "model.fp32.safetensors").stat().st_size / (out / "model.int4.safetensors").stat().st_size)
    assert report["ratio_vs_fp32"] > 6.0  # TinyVAE-64: Linear layers are 96 % of the weights
    assert len(report["tensors"]) == 12 and all(t["group_size"] == 32 for t in report["tensors"])
    assert report["weight_mse"] < report["weight_mse_minmax"]
    assert report["evaluation"]["n_images"] == 16 and 0 < report["evaluation"]["mu_cosine"] < 1
    assert "encoder.0.0.weight" in (out / "report.md").read_text()
    assert json.loads((out / "progress.json").read_text())["done"] is True
    assert type(load_quantized(out / "model.int4.safetensors")).__name__ == "TinyVAE"


def test_quantize_refuses_a_quantized_source(run_dir, tmp_path, capsys):
    assert main(["quantize", "--run", str(run_dir), "--scheme", "int8", "--out", str(tmp_path / "a"),
                 "--no-eval"]) == 0
    capsys.readouterr()
    assert main(["quantize", "--run", str(tmp_path / "a" / "model.int8.safetensors"), "--scheme", "int4",
                 "--out", str(tmp_path / "b"), "--no-eval"]) == 1
    assert "already quantized" in capsys.readouterr().err and not (tmp_path / "b").exists()


def _dq_int4_nodes(path):
    graph = onnx.load(str(path)).graph
    int4 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT4}
    return [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int4]


def test_export_int4_bundle_has_4bit_matmuls_and_matches_torch_int4(run_dir, tmp_path, capsys):
    out = tmp_path / "b4"
    assert main(["export", "--run", str(run_dir), "--precision", "int4", "--out", str(out),
                 "--evaluate", *DATA, "--limit", "16"]) == 0
    assert "verify: {'mu_rel_l2_vs_torch_int4'" in capsys.readouterr().out
    bundle = load_bundle(out)  # checksums + io shapes, as the robot loads it
    q = bundle.meta["quantization"]
    assert bundle.precision == "int4" and bundle.meta["opset"] == 21
    assert q["int4_in_graph"] == ["fc_decode", "fc_logvar", "fc_mu"]
    assert len(q["int4_storage_only"]) == 9 and q["int8_storage_only"] == []
    assert q["storage_file"] in bundle.meta["files"]
    assert len(_dq_int4_nodes(out / "encoder.onnx")) == 2 and len(_dq_int4_nodes(out / "decoder.onnx")) == 1
    # 4 bits + a float32 scale per 64 weights = 4.5 bits: 7.1x on the Linear weights, measured bytes
    assert q["int4_linear_ratio"] == pytest.approx(32 / 4.5, rel=0.01)
    assert q["onnx_ratio_vs_fp32"] > 5.0
    assert bundle.meta["metrics"]["n_images"] == 16 and bundle.meta["metrics"]["mu_cosine"] > 0.9
    # the graph holds exactly the torch INT4 weights: same result up to onnxruntime's activation rounding
    torch_int4 = load_quantized(out / "model.int4.safetensors")
    from sage_ros.compression.datasets import load_images
    r = evaluate_pair(torch_int4, out, load_images("synthetic", 64, "test"))
    assert r["mu_rel_l2"] < 0.02 and abs(r["psnr"] - r["reference"]["psnr"]) < 0.1


def test_calibration_methods_give_different_activation_ranges(run_dir, tmp_path, monkeypatch):
    """Entropy must not silently equal MinMax (onnxruntime's default 128/128 bins make it so)."""
    from onnx import numpy_helper
    from sage_ros.compression import onnx_quant
    from sage_ros.compression.onnx_quant import export_int8_bundle

    monkeypatch.setattr(onnx_quant, "ENTROPY_BINS", 512)  # the KL search is O(bins) per tensor: keep the test short
    from sage_ros.compression.checkpoints import load_model
    from sage_ros.compression.datasets import load_images

    model, cal = load_model(run_dir), load_images("synthetic", 64, "val")[:16]
    scales = {}
    for method in ("minmax", "entropy", "percentile"):
        out = export_int8_bundle(model, tmp_path / method, name=method, calibration_images=cal, method=method)
        graph = onnx.load(str(out / "encoder.onnx")).graph
        scales[method] = {i.name: float(numpy_helper.to_array(i)) for i in graph.initializer
                          if i.name.endswith("_output_0_scale") and not i.dims}
    assert scales["minmax"].keys() == scales["entropy"].keys() == scales["percentile"].keys()
    for other in ("entropy", "percentile"):
        assert scales[other] != scales["minmax"]
        # both clip outliers: no activation range wider than min/max's
        assert all(scales[other][k] <= scales["minmax"][k] * (1 + 1e-6) for k in scales["minmax"])


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_export_int8_qdq_bundle(run_dir, tmp_path, method):
    out = tmp_path / f"b8{method}"
    assert main(["export", "--run", str(run_dir), "--precision", "int8", "--out", str(out), "--calibration",
                 "synthetic", "--calibration-count", "16", "--calibrate-method", method]) == 0
    bundle = load_bundle(out)
    q = bundle.meta["quantization"]
    assert q["calibration_method"] == method and q["calibration_source"] == "synthetic/val"
    assert q["onnx_ratio_vs_fp32"] > 3.0
    graph = onnx.load(str(out / "encoder.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= 10
    int8_weights = [i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8
                    and i.name.endswith(("weight_quantized", "weight_t_quantized"))]
    # 3 depthwise convs + 2 Linear layers stored as int8; the 3 pointwise convs feeding a GroupNorm stay float
    assert len(int8_weights) == 5
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in ("mu", "logvar") for n in graph.node)


def test_int8_calibration_sweep_measures_on_val_and_picks_the_smallest_loss(run_dir, tmp_path):
    """scripts/studies/int8_calibration_sweep.py: one row per (target, method), each a real export calibrated on the
    training split and measured on val; the pick per target is the row with the smallest val loss."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "studies" / "int8_calibration_sweep.py"
    spec = importlib.util.spec_from_file_location("int8_calibration_sweep", path)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    out = tmp_path / "report" / "cal"
    assert sweep.main(["--runs", str(run_dir), "--out", str(out), "--calibration-count", "16",
                       "--methods", "minmax", "percentile 99.99", "--targets", "symmetric", "cpu",
                       "--export-options", "--calibration synthetic --data synthetic --limit 16"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    rows = result["rows"]
    assert [(r["target"], r["method"]) for r in rows] == [("symmetric", "minmax"), ("symmetric", "percentile 99.99"),
                                                          ("cpu", "minmax"), ("cpu", "percentile 99.99")]
    assert all(r["n_images"] == 16 and np.isfinite(r["delta_psnr"]) for r in rows)
    assert len({r["delta_psnr"] for r in rows}) > 1  # the methods and targets really give different graphs
    for target in ("symmetric", "cpu"):
        best = max((r for r in rows if r["target"] == target), key=lambda r: r["delta_psnr"])
        assert result["picks"][f"{run_dir} {target}"] == best
    assert out.with_suffix(".md").read_text().count("**pick**") == 2


def test_export_rejects_unknown_calibration_method(run_dir, tmp_path):
    with pytest.raises(SystemExit):
        main(["export", "--run", str(run_dir), "--precision", "int8", "--out", str(tmp_path / "x"),
              "--calibrate-method", "kl"])


def test_evaluate_writes_report_plots_and_bundle_rows(run_dir, tmp_path):
    bundle = tmp_path / "b4"
    assert main(["export", "--run", str(run_dir), "--precision", "int4", "--out", str(bundle),
                 "--no-verify"]) == 0
    assert main(["quantize", "--run", str(run_dir), "--scheme", "int8", "--out", str(tmp_path / "q8"),
                 "--no-eval"]) == 0
    out = tmp_path / "ev"
    assert main(["evaluate", "--run", str(run_dir), "--out", str(out), "--bundle", str(bundle), *DATA,
                 "--quantized", str(tmp_path / "q8" / "model.int8.safetensors"),
                 "--limit", "20", "--pca-train-limit", "100", "--grid", "4"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "sage_ros.evaluate/1" and report["data"]["n_images"] == 20
    names = [v["name"] for v in report["variants"]]
    assert names[:5] == ["int8", "int4-minmax", "int4-mse", "int4-mse-conv8", "file:model.int8.safetensors"]
    assert names[5].startswith("onnx-int4")
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["file:model.int8.safetensors"]["psnr"] == pytest.approx(by_name["int8"]["psnr"])
    for v in report["variants"][:4]:
        assert v["bytes"] == (out / v["file"]).stat().st_size
        assert v["ratio_vs_fp32"] == pytest.approx(report["reference"]["bytes"] / v["bytes"])
    assert report["pca"]["n_components"] == 64 and report["pca"]["bytes"] > 64 * 64 * 64 * 3 * 4
    assert not (out / "pca.safetensors").exists() and report["pca"]["file_kept"] is False
    gain = report["rounding_gain"]
    assert gain["mse"]["weight_mse"] < gain["minmax"]["weight_mse"]
    for png in ("recon_grid.png", "rate_distortion.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "PCA k=64" in md and "--bundle " + str(bundle) in md
    assert np.isfinite(report["reference"]["psnr"])


def test_int4_bundle_runs_on_the_runtime_backends(run_dir, tmp_path):
    """The robot side: sage_ros.runtime loads the INT4 bundle; onnxruntime and the torch backend (which
    rebuilds the INT4 model from the bundle's storage file) agree."""
    from sage_ros.runtime.backends import make_backend

    out = tmp_path / "b4"
    assert main(["export", "--run", str(run_dir), "--precision", "int4", "--out", str(out), "--no-verify"]) == 0
    bundle = load_bundle(out)
    x = np.random.default_rng(0).uniform(0, 1, (3, 3, 64, 64)).astype(np.float32)
    with make_backend(bundle, "onnxruntime") as ort_b, make_backend(bundle, "torch") as torch_b:
        got, ref = ort_b.encode(x)["mu"], torch_b.encode(x)["mu"]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.02


@pytest.mark.parametrize("arch", ["TinyVAE32", "VisionPuzzleVAE"])
def test_int8_and_int4_bundles_for_the_other_architectures(arch, tmp_path):
    """BatchNorm models and the VQ model: graphs load through the runtime, the VQ codebook search stays
    float in the QDQ graph, and quality is measured against the float model."""
    from quant_helpers import smooth_images
    from sage_ros.compression.onnx_int4 import export_int4_bundle
    from sage_ros.compression.onnx_quant import export_int8_bundle

    model = trained_model(arch, 8, steps=10)
    size = model.image_size
    b8 = export_int8_bundle(model, tmp_path / "b8", name="b8", calibration_images=smooth_images(4, size, 7))
    b4 = export_int4_bundle(model, tmp_path / "b4", name="b4")
    images = smooth_images(3, size, 8)
    for bundle_dir in (b8, b4):
        bundle = load_bundle(bundle_dir)
        r = evaluate_pair(model, bundle_dir, images)
        assert np.isfinite(r["psnr"]) and abs(r["delta_psnr"]) < 3
        if arch == "VisionPuzzleVAE":
            assert r["code_agreement"] > 50
    q8 = load_bundle(b8).meta["quantization"]
    if arch == "VisionPuzzleVAE":
        # the code search (folded into one score Conv + Resize + ArgMax, export._PuzzleEncoder) stays float
        assert "/ArgMax" in q8["float_nodes"] and "/scores/Conv" in q8["float_nodes"]
        assert load_bundle(b4).meta["quantization"]["int4_in_graph"] == []  # no Linear: nothing 4-bit in graph
    else:
        assert load_bundle(b4).meta["quantization"]["int4_in_graph"] == ["fc_decode", "fc_logvar", "fc_mu"]


def test_quantize_and_export_with_gptq(tmp_path):
    run = tmp_path / "run32"
    save_model(trained_model("TinyVAE32", 16), run)
    cal = ["--calibration", "synthetic", "--calibration-count", "32"]
    assert main(["quantize", "--run", str(run), "--scheme", "int4", "--rounding", "gptq", *cal,
                 "--out", str(tmp_path / "q"), "--no-eval"]) == 0
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    lin = [t for t in report["tensors"] if t["module"] == "Linear"]
    assert len(lin) == 3 and all(t["output_mse"] < t["output_mse_rounding_mse"] for t in lin)
    assert "output MSE (calib.)" in (tmp_path / "q" / "report.md").read_text()
    assert main(["export", "--run", str(run), "--precision", "int4", "--rounding", "gptq", *cal,
                 "--out", str(tmp_path / "b")]) == 0
    assert load_bundle(tmp_path / "b").meta["quantization"]["rounding"] == "gptq"


def test_verbs_run_as_compression_jobs(run_dir, tmp_path):
    """compression_node runs verbs through sage_ros.compression.jobs, which always passes --run-dir."""
    from sage_ros.compression.jobs import job_argv
    from sage_ros.compression.progress import read_progress

    spec = {"job": "quantize", "run_dir": str(tmp_path / "jq"), "run": str(run_dir), "scheme": "int8",
            "no_eval": True}
    assert main(job_argv(spec)[3:]) == 0
    assert (tmp_path / "jq" / "model.int8.safetensors").is_file() and read_progress(tmp_path / "jq")["done"]
    spec = {"job": "export", "run_dir": str(tmp_path / "je"), "run": str(run_dir), "precision": "int4",
            "out": str(tmp_path / "bundle"), "no_verify": True}
    assert main(job_argv(spec)[3:]) == 0
    assert read_progress(tmp_path / "je")["done"] and not (tmp_path / "bundle" / "progress.json").exists()
    load_bundle(tmp_path / "bundle")


@pytest.mark.parametrize("target", [None, "tensorrt"])
def test_int8_keeps_per_image_norms_float(target, tmp_path):
    """GroupNorm (exported as InstanceNormalization + affine) rescales by each image's statistics, so its
    nodes stay float while every convolution around them is still int8 (and the TensorRT graph stays valid)."""
    import onnx
    from quant_helpers import smooth_images
    from sage_ros.compression.onnx_quant import export_int8_bundle

    model = trained_model("TinyVAE", 8, steps=10)
    b8 = export_int8_bundle(model, tmp_path / "b8", name="b8", calibration_images=smooth_images(4, 64, 7),
                            target=target)
    graph = onnx.load(str(b8 / "encoder.onnx")).graph
    producer = {out: n for n in graph.node for out in n.output}
    norms = [n for n in graph.node if n.op_type == "InstanceNormalization"]
    assert len(norms) == 3
    float_nodes = load_bundle(b8).meta["quantization"]["float_nodes"]
    quantized_tensors = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    for norm in norms:
        assert norm.name in float_nodes
        scope = norm.name.rsplit("/", 1)[0] + "/"
        in_scope = [n for n in graph.node if n.name.startswith(scope) and n.op_type not in ("Shape", "Constant")]
        assert {n.op_type for n in in_scope} >= {"Reshape", "InstanceNormalization", "Mul", "Add"}
        # nothing computed inside the normalisation is rounded to 8 bits
        assert not any(out in quantized_tensors for n in in_scope for out in n.output)
    # the Conv feeding each normalisation is float (its output is the norm's per-image-ranged input), the rest int8
    norm_scopes = tuple(norm.name.rsplit("/", 1)[0] + "/" for norm in norms)
    in_norms = [n for n in graph.node if n.name.startswith(norm_scopes)]
    feeding = {producer[i].name for n in in_norms for i in n.input if i in producer and producer[i].op_type == "Conv"}
    assert len(feeding) == 3 and feeding <= set(float_nodes)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    int8_weight = {c.name: c.input[1] in producer and producer[c.input[1]].op_type == "DequantizeLinear" for c in convs}
    assert all(int8_weight[c.name] == (c.name not in feeding) for c in convs), int8_weight
    assert not any(c.output[0] in quantized_tensors for c in convs if c.name in feeding)
