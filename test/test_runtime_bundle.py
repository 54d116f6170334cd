"""Bundle writing (compression.export) and verification (runtime.bundle): every check must be able to fail."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_helpers import export_seeded
from sage_ros.runtime.bundle import BundleError, load_bundle, sha256_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {(arch, prec): export_seeded(arch, prec, root / f"{arch}-{prec}")
            for arch in ("TinyVAE", "TinyVAE32", "VisionPuzzleVAE") for prec in ("fp32", "fp16")}


@pytest.fixture
def tiny(bundles, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(bundles[("TinyVAE", "fp32")], copy)
    return copy


def _edit_meta(bundle_dir, **changes):
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    meta.update(changes)
    (bundle_dir / "bundle.json").write_text(json.dumps(meta))


def test_bundle_json_has_design_keys_and_checksums(bundles):
    for (arch, precision), path in bundles.items():
        meta = json.loads((path / "bundle.json").read_text())
        for key in ("name", "architecture", "precision", "input", "latent_shape", "files", "metrics", "created_by",
                    "opset", "versions", "torch_weights", "latent_dim"):
            assert key in meta, key
        assert meta["architecture"] == arch and meta["precision"] == precision and meta["opset"] == 17
        assert set(meta["files"]) == {"encoder.onnx", "decoder.onnx", "model.safetensors"}
        for name, digest in meta["files"].items():
            assert sha256_file(path / name) == digest
        bundle = load_bundle(path)
        assert bundle.is_vq == (arch == "VisionPuzzleVAE")
        assert bundle.latent_shape == ((30, 30) if bundle.is_vq else (meta["latent_dim"],))
        expected_range = (-1.0, 1.0) if bundle.is_vq else (0.0, 1.0)
        assert bundle.input_range == expected_range


def test_onnx_graphs_one_file_opset17_dynamic_batch_matmul_linears(bundles):
    onnx = pytest.importorskip("onnx")

    for (arch, precision), path in bundles.items():
        encoder = onnx.load(str(path / "encoder.onnx"))
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in encoder.graph.initializer)
        assert [o.version for o in encoder.opset_import if o.domain in ("", "ai.onnx")] == [17]
        assert encoder.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
        assert encoder.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp16 keeps fp32 I/O
        ops = {node.op_type for node in encoder.graph.node}
        assert "Gemm" not in ops
        if arch != "VisionPuzzleVAE":
            assert "MatMul" in ops
        if precision == "fp16":
            assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in encoder.graph.initializer)


def test_fp16_files_are_about_half_the_size(bundles):
    for arch in ("TinyVAE", "TinyVAE32", "VisionPuzzleVAE"):
        fp32 = (bundles[(arch, "fp32")] / "encoder.onnx").stat().st_size
        fp16 = (bundles[(arch, "fp16")] / "encoder.onnx").stat().st_size
        assert fp16 < 0.6 * fp32


def test_runtime_imports_neither_torch_nor_rclpy(bundles):
    code = (
        "import sys, numpy as np\n"
        "from sage_ros.runtime import bundle, image_codec, preprocess, backends\n"
        "from sage_ros.runtime.backends import make_backend\n"
        f"b = make_backend({str(bundles[('TinyVAE', 'fp32')])!r}, 'auto')\n"
        "b.encode(np.zeros((1, 64, 64, 3), np.uint8))\n"
        "bad = [m for m in ('torch', 'rclpy', 'tensorrt') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_sha256_mismatch_names_the_file(tiny):
    data = bytearray((tiny / "encoder.onnx").read_bytes())
    data[-1] ^= 0xFF
    (tiny / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"encoder\.onnx: sha256 mismatch"):
        load_bundle(tiny)


def test_missing_files(tiny):
    (tiny / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match=r"decoder\.onnx: listed in bundle.json but missing"):
        load_bundle(tiny)
    (tiny / "bundle.json").unlink()
    with pytest.raises(BundleError, match="bundle.json: missing"):
        load_bundle(tiny)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tiny / "nowhere")


@pytest.mark.parametrize("changes, message", [
    ({"architecture": "ResNet"}, "architecture 'ResNet'"),
    ({"precision": "int2"}, "precision 'int2'"),
    ({"input": {"height": 64, "width": 64, "range": [-1, 1]}}, r"input.range \[-1.0, 1.0\] does not match"),
    ({"input": {"height": 64, "width": 64, "range": [0, 1], "color_order": "bgr"}}, "color_order"),
    ({"input": {"height": 64, "width": 64}}, "input.range missing"),
    ({"latent_shape": [9]}, r"encoder\.onnx: output 'mu' has dims \['N', 8\], expected \['N', 9\]"),
    ({"latent_shape": "8"}, "latent_shape must be"),
    ({"input": {"height": 32, "width": 32, "range": [0, 1]}}, r"encoder\.onnx: input 'image' has dims"),
])
def test_inconsistent_metadata(tiny, changes, message):
    _edit_meta(tiny, **changes)
    with pytest.raises(BundleError, match=message):
        load_bundle(tiny)


def test_missing_key_and_bad_json(tiny):
    meta = json.loads((tiny / "bundle.json").read_text())
    del meta["created_by"]
    (tiny / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"missing keys \['created_by'\]"):
        load_bundle(tiny)
    (tiny / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tiny)


def test_swapped_graph_with_fresh_checksum_is_caught_by_shape_check(bundles, tiny):
    """A TinyVAE32 encoder dropped into a TinyVAE bundle, checksum updated: shapes still give it away."""
    shutil.copy(bundles[("TinyVAE32", "fp32")] / "encoder.onnx", tiny / "encoder.onnx")
    meta = json.loads((tiny / "bundle.json").read_text())
    meta["files"]["encoder.onnx"] = sha256_file(tiny / "encoder.onnx")
    (tiny / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"encoder\.onnx: input 'image' has dims \['N', 3, 32, 32\]"):
        load_bundle(tiny)


def test_corrupt_onnx_and_path_tricks(tiny):
    (tiny / "decoder.onnx").write_bytes(b"garbage")
    meta = json.loads((tiny / "bundle.json").read_text())
    meta["files"]["decoder.onnx"] = sha256_file(tiny / "decoder.onnx")
    (tiny / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"decoder\.onnx: cannot be read as ONNX"):
        load_bundle(tiny)
    meta["files"]["../escape.onnx"] = "0" * 64
    (tiny / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="must not contain a directory"):
        load_bundle(tiny, verify_checksums=False)


def test_write_bundle_requires_graphs(tmp_path):
    pytest.importorskip("torch", reason="the exporter (offline side) needs torch")
    from sage_ros.compression.export import write_bundle

    with pytest.raises(FileNotFoundError, match="encoder.onnx"):
        write_bundle(tmp_path, name="x", architecture="TinyVAE", precision="fp32",
                     input_spec={"height": 64, "width": 64, "range": [0, 1]}, latent_shape=[8], metrics={},
                     created_by="test")
    with pytest.raises(ValueError, match="precision"):
        write_bundle(tmp_path, name="x", architecture="TinyVAE", precision="bf16", input_spec={},
                     latent_shape=[8], metrics={}, created_by="test")


def test_export_refuses_other_architectures_and_precisions(tmp_path):
    pytest.importorskip("torch", reason="the exporter (offline side) needs torch")
    from sage_ros.compression.export import export_bundle
    from sage_ros.models import StandardVAE, TinyVAE

    with pytest.raises(ValueError, match="StandardVAE"):
        export_bundle(StandardVAE(), tmp_path / "s", name="s")
    with pytest.raises(ValueError, match="int8"):
        export_bundle(TinyVAE(4), tmp_path / "t", name="t", precision="int8")


def test_sage_ros_export_command_writes_a_verified_bundle(tmp_path, capsys):
    pytest.importorskip("torch", reason="the exporter (offline side) needs torch")
    from runtime_helpers import seeded_model
    from sage_ros.cli import main
    from sage_ros.compression.checkpoints import save_model

    save_model(seeded_model("TinyVAE32"), tmp_path / "run")
    (tmp_path / "report.json").write_text(json.dumps({"psnr": 21.5}))
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "b"), "--precision", "fp16",
                 "--metrics", str(tmp_path / "report.json")]) == 0
    assert "verify: {'max_abs_diff'" in capsys.readouterr().out
    bundle = load_bundle(tmp_path / "b")
    assert bundle.name == "b" and bundle.precision == "fp16" and bundle.meta["metrics"] == {"psnr": 21.5}
    assert bundle.meta["created_by"].startswith("sage-ros ")


@pytest.mark.parametrize("key", ["encoder", "decoder"])
def test_graph_file_outside_the_bundle_is_refused(tiny, tmp_path, key):
    """Issue #11 finding 3: `encoder.file` naming a graph outside the bundle loaded a graph no checksum covers."""
    outside = tmp_path / "x"
    outside.mkdir()
    shutil.copy(tiny / f"{key}.onnx", outside / f"{key}.onnx")
    for value in (f"../x/{key}.onnx", str(outside / f"{key}.onnx"), "..", f"./{key}.onnx"):
        _edit_meta(tiny, **{key: {"file": value}})
        with pytest.raises(BundleError, match="must not contain a directory"):
            load_bundle(tiny)


def test_symlink_leading_out_of_the_bundle_is_refused_even_with_a_matching_checksum(tiny, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(tiny / "encoder.onnx", outside)  # same bytes: the recorded sha256 matches
    (tiny / "encoder.onnx").unlink()
    (tiny / "encoder.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle directory"):
        load_bundle(tiny)
    (tiny / "encoder.onnx").unlink()
    shutil.copy(outside, tiny / "real.onnx")
    (tiny / "encoder.onnx").symlink_to("real.onnx")  # a link inside the bundle is fine
    assert load_bundle(tiny).encoder_path.resolve() == (tiny / "real.onnx").resolve()


def test_torch_weights_outside_the_bundle_is_refused(tiny):
    _edit_meta(tiny, torch_weights="/etc/passwd")
    with pytest.raises(BundleError, match="torch_weights '/etc/passwd' must not contain a directory"):
        load_bundle(tiny)
