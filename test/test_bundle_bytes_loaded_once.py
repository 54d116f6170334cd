"""Time of check = time of use: a bundle's files are read once at load, verified, and every backend loads from
those bytes. Old code opened decoder.onnx only at the first decode, so a decoder.onnx replaced after the load was
used under the old checksums (the decoder, the consumer API and the encoder's publish_reconstruction)."""
import shutil

import numpy as np
import pytest

from ros_helpers import export_test_bundle
from sage_ros.runtime.backends import make_backend
from sage_ros.runtime.bundle import load_bundle
from sage_ros.runtime.consumer import Latent, LatentDecoder
from sage_ros.runtime.latent_info import LatentInfo, info_json, model_info


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tiny = export_test_bundle("TinyVAE", root / "tiny")
    other = export_test_bundle("TinyVAE32", root / "other")  # a different decoder.onnx to swap in
    return tiny, other


def swap_in(victim, donor):
    """Replace the file on disk (same name), as an operator or a concurrent export would."""
    shutil.copyfile(donor / "decoder.onnx", victim / "decoder.onnx.tmp")
    (victim / "decoder.onnx.tmp").replace(victim / "decoder.onnx")


def test_a_decoder_replaced_after_load_is_never_used(bundles, tmp_path):
    tiny, other = bundles
    work = tmp_path / "tiny"
    shutil.copytree(tiny, work)
    z = np.random.default_rng(0).normal(size=(1, 8)).astype(np.float32)
    reference = make_backend(load_bundle(tiny), "onnxruntime", "cpu").decode(z)

    bundle = load_bundle(work)
    backend = make_backend(bundle, "onnxruntime", "cpu")  # the encoder node's backend (publish_reconstruction)
    info = LatentInfo.parse(info_json(model_info(bundle)))
    consumer = LatentDecoder(info, bundle=bundle)          # the consumer API / latent_decoder
    swap_in(work, other)                                   # before the first decode
    np.testing.assert_array_equal(backend.decode(z), reference)
    np.testing.assert_array_equal(consumer.decode(Latent(mu=z[0])), consumer.decode(Latent(mu=z[0])))
    assert consumer.decode(Latent(mu=z[0])).shape == (64, 64, 3)  # tiny's 64 px, not the swapped-in 32 px one


def test_torch_backend_loads_the_verified_weights(bundles, tmp_path):
    pytest.importorskip("torch")
    tiny, _ = bundles
    work = tmp_path / "tiny"
    shutil.copytree(tiny, work)
    bundle = load_bundle(work)
    (work / "model.safetensors").write_bytes(b"garbage written after the load")
    backend = make_backend(bundle, "torch", "cpu")
    z = np.zeros((1, 8), np.float32)
    np.testing.assert_allclose(backend.decode(z), make_backend(load_bundle(tiny), "torch", "cpu").decode(z))


def test_each_file_is_read_once_at_load(bundles):
    bundle = load_bundle(bundles[0])
    assert set(bundle.blobs) == set(bundle.meta["files"])
    import hashlib
    for name, data in bundle.blobs.items():
        assert hashlib.sha256(data).hexdigest() == bundle.meta["files"][name]
