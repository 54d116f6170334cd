"""Every latent carries the identity (fingerprint) of the model that made it, so no consumer ever decodes a latent
with another model's decoder, however late the new model's info arrives (old code: after a bundle swap with a
stalled decoder, 63-144 wrong reconstructions per run, diagnostics OK). Layout: runtime/latent_info.py."""
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from std_msgs.msg import String

from ros_helpers import header
from sage_ros.runtime.bundle import load_bundle
from sage_ros.runtime.consumer import (InfoMismatch, LatentDecoder, ModelGate, ModelMismatch, ModelUnknown,
                                       latent_from_message, made_by)
from sage_ros.runtime.image_codec import ImageFields, image_to_numpy
from sage_ros.runtime.latent_info import LatentInfo, bundle_fingerprint, identity_rows, info_json, model_info
from sage_ros.runtime.messages import identity_block, image_to_output, message_fingerprint, output_to_image, read_identity


def export_pair(root: Path):
    """Two different TinyVAE models with the same latent size (L=8): A (seeded) and B (A's weights perturbed)."""
    import torch

    from runtime_helpers import seeded_model
    from sage_ros.compression.export import export_bundle

    a = export_bundle(seeded_model("TinyVAE"), root / "a", name="model-a", precision="fp32",
                      metrics={"note": "tests only"}, created_by="test")
    model = seeded_model("TinyVAE")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    b = export_bundle(model, root / "b", name="model-b", precision="fp32", metrics={"note": "tests only"},
                      created_by="test")
    return load_bundle(a), load_bundle(b)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return export_pair(tmp_path_factory.mktemp("models"))


def latent_msg(bundle, mu, stamp=1, fingerprint=True):
    outputs = {"mu": mu[None].astype(np.float32), "logvar": np.zeros((1, mu.size), np.float32)}
    if fingerprint:
        outputs["fingerprint"] = np.array([bundle_fingerprint(bundle)])
    return output_to_image(outputs, 0, header=header(stamp), msg=ImageFields(data=np.empty(0, np.uint8)))


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 8, 64])
def test_latent_identity_rows_round_trip_as_plain_32fc1(width):
    fp = "a1b2c3d4e5f6"
    block = identity_block(fp, "latent", width)
    assert block.shape == (identity_rows("latent", width), width) and block.dtype == np.float32
    assert read_identity(block, "latent") == fp
    assert np.all(block == np.round(block)) and block.max() <= 65535  # small integers: exact in float32
    outputs = {"mu": np.ones((1, width), np.float32), "logvar": np.zeros((1, width), np.float32),
               "fingerprint": np.array([fp])}
    msg = output_to_image(outputs, 0, msg=ImageFields(data=np.empty(0, np.uint8)))
    assert msg.encoding == "32FC1" and image_to_numpy(msg).shape == (2 + block.shape[0], width)  # stock reader
    assert message_fingerprint(msg) == fp
    np.testing.assert_array_equal(image_to_output(msg)["mu"], np.ones(width, np.float32))


def test_puzzle_identity_row_is_mono8():
    fp = "00ff10ab9c01"
    outputs = {"codes": np.full((1, 30, 30), 7, np.int64), "fingerprint": np.array([fp])}
    msg = output_to_image(outputs, 0, msg=ImageFields(data=np.empty(0, np.uint8)))
    assert msg.encoding == "mono8" and (msg.height, msg.width) == (31, 30)
    assert message_fingerprint(msg) == fp
    np.testing.assert_array_equal(image_to_output(msg)["codes"], np.full((30, 30), 7, np.uint8))
    assert read_identity(np.zeros(30, np.uint8), "puzzle") is None


def test_consumer_refuses_another_models_latent_and_unidentified_ones(pair):
    a, b = pair
    assert bundle_fingerprint(a) != bundle_fingerprint(b)
    info_a = LatentInfo.parse(info_json(model_info(a)))
    mu = np.linspace(-1, 1, 8)
    assert latent_from_message(latent_msg(a, mu), info_a).mu.shape == (8,)
    assert made_by(latent_msg(a, mu), info_a) and not made_by(latent_msg(b, mu), info_a)
    with pytest.raises(ModelMismatch, match="not by model-a"):
        latent_from_message(latent_msg(b, mu), info_a)
    with pytest.raises(ModelUnknown, match="cannot tell"):
        latent_from_message(latent_msg(a, mu, fingerprint=False), info_a)
    damaged = latent_msg(a, mu)
    data = bytearray(damaged.data)
    data[-4:] = np.float32(1.0).tobytes()  # a non-zero padding cell: not a well-formed identity
    damaged.data = bytes(data)
    with pytest.raises(InfoMismatch):
        latent_from_message(damaged, info_a)


def test_gate_holds_latents_until_their_models_info_and_bounds_the_hold(pair):
    a, b = pair
    info_a, info_b = (LatentInfo.parse(info_json(model_info(x))) for x in (a, b))
    gate = ModelGate(hold=3)
    assert gate.add(latent_msg(a, np.zeros(8), 1)) is None  # before any info: held
    assert len(gate.set_info(info_a)) == 1
    mu = np.linspace(-1, 1, 8)
    assert gate.add(latent_msg(a, mu, 2)) is not None
    for stamp in range(3, 8):  # B's latents, B's info late: held (3), the 2 oldest dropped
        assert gate.add(latent_msg(b, mu, stamp)) is None
    assert gate.counts["dropped"] == 2 and gate.pending() == 3
    released = gate.set_info(info_b)
    assert [msg.header.stamp.sec for msg, _ in released] == [5, 6, 7]
    assert gate.counts["released"] == 4 and gate.pending() == 0
    assert gate.add(latent_msg(a, mu, 9)) is None and gate.pending() == 1  # A again, info not back yet: held


def test_latent_decoder_node_never_decodes_with_the_wrong_model(pair):
    """The issue's scenario without SIGSTOP: the new model's latents reach the decoder before its info."""
    from sage_ros.ros.decoder_node import LatentDecoderNode

    a, b = pair
    context = rclpy.Context()
    rclpy.init(context=context)
    node = LatentDecoderNode(context=context, parameter_overrides=[
        Parameter("model_dirs", value=[str(a.path.parent)]), Parameter("backend", value="onnxruntime"),
        Parameter("device", value="cpu"), Parameter("latent_topics", value=["cam/latent"]),
        Parameter("hold_latents", value=8)])
    stream = node.streams[0]
    assert stream.gate.hold == 8
    decoded = []
    try:
        node._on_info(stream, String(data=info_json(model_info(a))))
        real_publish = stream.publisher.publish
        stream.publisher.publish = lambda image: (decoded.append(image), real_publish(image))
        rng = np.random.default_rng(3)
        mus = [rng.normal(size=8).astype(np.float32) for _ in range(6)]
        node._on_latent(stream, latent_msg(a, mus[0], 10))
        for i in range(1, 6):  # swap: B's latents first, its info late
            node._on_latent(stream, latent_msg(b, mus[i], 10 + i))
        assert len(decoded) == 1  # held, not decoded with A's decoder
        node._on_info(stream, String(data=info_json(model_info(b))))
        assert len(decoded) == 6 and stream.counts["released"] == 5
        with LatentDecoder(LatentInfo.parse(info_json(model_info(a))), bundle=a.path) as dec_a, \
                LatentDecoder(LatentInfo.parse(info_json(model_info(b))), bundle=b.path) as dec_b:
            from sage_ros.runtime.consumer import Latent
            expected = [dec_a.decode(Latent(mu=mus[0]))] + [dec_b.decode(Latent(mu=m)) for m in mus[1:]]
            wrong = dec_a.decode(Latent(mu=mus[1]))
        for image, want in zip(decoded, expected):
            np.testing.assert_array_equal(image_to_numpy(image), want)
        assert not np.array_equal(wrong, expected[1])  # the models really differ
        # a latent that says nothing about its model is dropped and counted, never decoded
        node._on_latent(stream, latent_msg(b, mus[1], 30, fingerprint=False))
        assert len(decoded) == 6 and stream.counts["dropped_unknown_model"] >= 1
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
