"""The subscriber's side over real DDS: an encoder and a latent_decoder, each in its own process (the installed entry
points), and this test as a third-party subscriber.

- `<output>/info` is latched: a subscriber that joins >= 10 s after the encoder gets it within 1 s;
- the decoder's images equal a plain onnxruntime decode of the very latents received, bit for bit;
- a live bundle change (the `bundle` parameter) publishes the new info before the new model's first latent, and
  the decoder follows it;
- the decoder reports an unknown bundle and messages that disagree with their info on /diagnostics;
- `bag encode` -> `bag play` -> latent_decoder gives back the images; `bag record` keeps the info topic.
"""
import json
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import Image
from std_msgs.msg import String

from bag_helpers import sage_ros, write_camera_bag
from ros_helpers import NodeProcess, TestGraph, camera_frames, export_test_bundle, header, stamp_of, wait_for
from sage_ros.ros.diagnostics import status_values
from sage_ros.ros.info import info_qos
from sage_ros.runtime.bundle import load_bundle
from sage_ros.runtime.image_codec import image_to_numpy, numpy_to_image
from sage_ros.runtime.latent_info import LatentInfo, fingerprint, info_json, model_info
from sage_ros.runtime.messages import image_to_output, message_fingerprint

NS = "/decoder_test"
LATE_JOIN_S = 10.0


def offline_rgb8(bundle, z: np.ndarray) -> np.ndarray:
    """An independent decode: onnxruntime session on the bundle's decoder.onnx (1 thread, as the node), then
    [lo, hi] -> uint8 with round-half-up and clipping, HWC."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(bundle.decoder_path), options, providers=["CPUExecutionProvider"])
    (raw,) = session.run(None, {"z": z[None]})
    lo, hi = bundle.input_range
    scaled = (raw[0].transpose(1, 2, 0) - np.float32(lo)) * np.float32(255.0 / (hi - lo)) + np.float32(0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


class Events(list):
    """(kind, receive time, message) in the order this test's executor delivered them."""

    def __init__(self, graph):
        super().__init__()
        self.lock = threading.Lock()
        self.graph = graph

    def watch(self, kind, msg_type, topic, qos=10):
        def append(msg):
            with self.lock:
                self.append((kind, time.monotonic(), msg))
        return self.graph.node.create_subscription(msg_type, topic, append, qos)

    def of(self, kind):
        with self.lock:
            return [msg for k, _, msg in self if k == kind]

    def latest(self, kind, stamp):
        return next((m for m in reversed(self.of(kind)) if stamp_of(m) == stamp), None)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoder_dds")
    models = root / "models"
    tiny8 = load_bundle(export_test_bundle("TinyVAE", models / "tiny8"))
    tiny32 = load_bundle(export_test_bundle("TinyVAE32", models / "tiny32"))
    graph = TestGraph("decoder_test_peer")
    encoder = NodeProcess("tinyvae_encoder", [
        "-r", f"__ns:={NS}", "-p", f"bundle:={tiny8.path}", "-p", "backend:=onnxruntime", "-p", "device:=cpu",
        "-p", "image_topics:=[front/image_raw]", "-p", "qos_reliability:=reliable"], root / "encoder.log")
    decoder = NodeProcess("latent_decoder", [
        "-r", f"__ns:={NS}", "-p", "latent_topics:=[front/latent,fake/latent,bag/latent]",
        "-p", f"model_dirs:=[{models}]", "-p", "backend:=onnxruntime", "-p", "device:=cpu",
        "-p", "qos_reliability:=reliable", "-p", "diagnostics_period:=0.3"], root / "decoder.log")
    try:
        events = Events(graph)
        events.watch("info", String, f"{NS}/front/latent/info", info_qos())
        events.watch("latent", Image, f"{NS}/front/latent")
        events.watch("recon", Image, f"{NS}/front/reconstruction")
        events.watch("bag_recon", Image, f"{NS}/bag/reconstruction")
        events.watch("diagnostics", DiagnosticArray, "/diagnostics")
        camera = graph.node.create_publisher(Image, f"{NS}/front/image_raw", 10)
        encoder.wait_log("backend warm")
        started = time.monotonic()
        decoder.wait_log("decoding")
        wait_for(lambda: camera.get_subscription_count(), 20, what="encoder subscribed")
        yield dict(root=root, models=models, tiny8=tiny8, tiny32=tiny32, graph=graph, events=events, camera=camera,
                   encoder=encoder, decoder=decoder, started=started, frames=camera_frames(4))
    finally:
        decoder.stop()
        encoder.stop()
        graph.close()


def publish_until(env, frame, sec, kinds=("latent", "recon"), timeout=15.0):
    """Publish a frame until every kind of output for its stamp arrived; return them."""
    msg = numpy_to_image(frame, "rgb8", header=header(sec))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        env["camera"].publish(msg)
        try:
            return wait_for(lambda: (found := [env["events"].latest(k, stamp_of(msg)) for k in kinds])
                            and all(m is not None for m in found) and found, min(3.0, deadline - time.monotonic()))
        except AssertionError:
            continue
    raise AssertionError(f"no {kinds} for stamp {sec}:\n{env['decoder'].log()}")


def decoder_status(env, after):
    for array in reversed(env["events"].of("diagnostics")):
        status = array.status[0]
        stamp = array.header.stamp.sec + array.header.stamp.nanosec * 1e-9
        if "latent decoder" in status.name and stamp >= after:
            return status_values(array), status
    return None


def test_info_is_latched_and_names_the_bundle(env):
    message = wait_for(lambda: env["events"].of("info"), 10, what="info")[0]
    assert json.loads(message.data) == model_info(env["tiny8"], "resize")
    assert LatentInfo.parse(message.data).model == env["tiny8"].name


def test_decoded_images_equal_an_offline_decode_bit_for_bit(env):
    for i, frame in enumerate(env["frames"][:3]):
        latent_msg, recon = publish_until(env, frame, 100 + i)
        assert (recon.encoding, recon.height, recon.width) == ("rgb8", 64, 64)
        assert recon.header.frame_id == latent_msg.header.frame_id and stamp_of(recon) == (100 + i, 1000 * (100 + i))
        expected = offline_rgb8(env["tiny8"], image_to_output(latent_msg)["mu"])
        np.testing.assert_array_equal(image_to_numpy(recon), expected)
    after = time.time()
    values, status = wait_for(lambda: decoder_status(env, after), 5, what="decoder diagnostics")
    assert values["front/latent: matched_by"] == "checksum"
    assert values["front/latent: bundle"] == str(env["tiny8"].path)
    assert int(values["front/latent: published"]) >= 3


def test_a_subscriber_joining_10s_late_gets_the_info_within_1s(env):
    time.sleep(max(0.0, LATE_JOIN_S - (time.monotonic() - env["started"])))
    late = []
    joined = time.monotonic()
    subscription = env["graph"].node.create_subscription(String, f"{NS}/front/latent/info",
                                                         lambda msg: late.append(time.monotonic()), info_qos())
    try:
        wait_for(lambda: late, 5, what="latched info")
        delay = late[0] - joined
        print(f"late subscriber ({joined - env['started']:.1f} s after the encoder activated) got the info "
              f"{delay * 1000:.0f} ms after subscribing")
        assert delay < 1.0
    finally:
        env["graph"].node.destroy_subscription(subscription)


def set_bundle(env, path):
    client = env["graph"].node.create_client(SetParameters, f"{NS}/tinyvae_encoder/set_parameters")
    request = SetParameters.Request(parameters=[Parameter(name="bundle", value=ParameterValue(
        type=ParameterType.PARAMETER_STRING, string_value=str(path)))])
    return env["graph"].call(client, request, timeout=30, resend_s=5).results[0]


def test_bundle_change_publishes_the_new_info_before_the_first_new_latent(env):
    refused = set_bundle(env, env["root"] / "missing")
    assert not refused.successful and "not found" in refused.reason
    publish_until(env, env["frames"][0], 200)  # still the old model
    assert set_bundle(env, env["tiny32"].path).successful
    latent_msg, recon = publish_until(env, env["frames"][1], 201)
    assert latent_msg.width == 64 and (recon.height, recon.width) == (32, 32)
    with env["events"].lock:
        order = [(kind, msg) for kind, _, msg in env["events"] if kind in ("info", "latent")]
    new_info = next(i for i, (kind, msg) in enumerate(order)
                    if kind == "info" and LatentInfo.parse(msg.data).model == env["tiny32"].name)
    first_new = next(i for i, (kind, msg) in enumerate(order) if kind == "latent" and msg.width == 64)
    # the info is published before the new model's first latent (no longer awaited: each latent says its model)
    new_fp = LatentInfo.parse(order[new_info][1].data).fingerprint
    assert message_fingerprint(order[first_new][1]) == new_fp
    assert all(message_fingerprint(msg) == new_fp for kind, msg in order[new_info:] if kind == "latent"
               and msg.width == 64)
    assert json.loads(order[new_info][1].data) == model_info(env["tiny32"], "resize")
    np.testing.assert_array_equal(image_to_numpy(recon), offline_rgb8(env["tiny32"], image_to_output(latent_msg)["mu"]))
    assert "bundle changed" in env["encoder"].log()


def test_unknown_bundle_and_disagreeing_messages_are_reported(env):
    graph, tiny8 = env["graph"], env["tiny8"]
    info_pub = graph.node.create_publisher(String, f"{NS}/fake/latent/info", info_qos())
    latent_pub = graph.node.create_publisher(Image, f"{NS}/fake/latent", 10)
    try:
        unknown = dict(model_info(tiny8), model="nobody", encoder_sha256="0" * 64, decoder_sha256="1" * 64,
                       fingerprint=fingerprint("nobody", "0" * 64, "1" * 64))
        info_pub.publish(String(data=info_json(unknown)))
        after = time.time()
        values, status = wait_for(lambda: (d := decoder_status(env, after)) and "fake/latent: problem" in d[0] and d,
                                  10, what="unknown-bundle diagnostics")
        assert status.level == DiagnosticStatus.ERROR and "no bundle for nobody" in values["fake/latent: problem"]

        info_pub.publish(String(data=info_json(model_info(tiny8))))
        wait_for(lambda: f"'fake/latent': {tiny8.name}" in env["decoder"].log(), 10, what="known bundle taken")
        wide = numpy_to_image(np.zeros((2, 9), np.float32), "32FC1", header=header(300))
        wait_for(lambda: latent_pub.get_subscription_count(), 10)

        def reported():
            latent_pub.publish(wide)
            d = decoder_status(env, time.time() - 0.5)
            return d and int(d[0].get("fake/latent: mismatched", 0)) >= 1 and d
        values, status = wait_for(reported, 10, interval=0.3, what="mismatch diagnostics")
        assert "2 x 9 but info" in values["fake/latent: last_mismatch"]
        assert "problem" not in " ".join(values)  # the bundle itself is known now
    finally:
        graph.node.destroy_publisher(info_pub)
        graph.node.destroy_publisher(latent_pub)


def test_bag_encode_then_play_into_the_decoder_gives_back_the_images(env):
    from sage_ros.bag.common import open_reader, typestore
    from sage_ros.bag.encode import encode_bag

    root, tiny8 = env["root"], env["tiny8"]
    write_camera_bag(root / "camera_bag", env["frames"])
    encode_bag(root / "camera_bag", root / "latent_bag", tiny8.path, topic="/camera/image_raw",
               backend="onnxruntime")
    store, latents = typestore(), {}
    reader = open_reader(root / "latent_bag")
    try:
        for conn, _, data in reader.messages():
            if conn.topic == "/camera/latent":
                msg = store.deserialize_cdr(data, conn.msgtype)
                latents[stamp_of(msg)] = image_to_output(msg)["mu"]
    finally:
        reader.close()
    play = sage_ros("bag", "play", root / "latent_bag", "--topics", "/camera/latent", "/camera/latent/info",
                    "--remap", f"/camera/latent:={NS}/bag/latent", "--remap", f"/camera/latent/info:={NS}/bag/latent/info",
                    "--qos", "reliable", "--wait-for-subscribers", "1", "--wait-timeout", "30")
    out, _ = play.communicate(timeout=90)
    assert play.returncode == 0, out
    images = wait_for(lambda: len(env["events"].of("bag_recon")) >= len(latents) and env["events"].of("bag_recon"),
                      15, what=f"{len(latents)} reconstructions\n{env['decoder'].log()}")
    assert len(images) == len(latents) == len(env["frames"])
    for image in images:
        np.testing.assert_array_equal(image_to_numpy(image), offline_rgb8(tiny8, latents[stamp_of(image)]))


def test_bag_record_keeps_the_info_topic(env):
    from sage_ros.bag.common import open_reader, typestore

    out = env["root"] / "recorded"
    record = sage_ros("bag", "record", out, "--topics", f"{NS}/front/latent", "--max-messages", "2",
                      "--duration", "30", "--no-telemetry")
    sec = 400
    while record.poll() is None and sec < 460:  # publish until the recorder has its 2 messages (info + 1 latent)
        env["camera"].publish(numpy_to_image(env["frames"][2], "rgb8", header=header(sec)))
        sec += 1
        time.sleep(0.5)
    output, _ = record.communicate(timeout=30)
    assert record.returncode == 0, output
    store = typestore()
    reader = open_reader(out)
    try:
        topics = {c.topic: c for c in reader.connections}
        infos = [store.deserialize_cdr(d, c.msgtype).data for c, _, d in reader.messages()
                 if c.topic.endswith("/info")]
    finally:
        reader.close()
    assert set(topics) == {f"{NS}/front/latent", f"{NS}/front/latent/info"}
    assert topics[f"{NS}/front/latent/info"].ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"
    assert infos == [env["events"].of("info")[-1].data]  # latched before recording began, still recorded


def test_a_crop_mode_change_is_announced_before_its_first_latent(env):
    client = env["graph"].node.create_client(SetParameters, f"{NS}/tinyvae_encoder/set_parameters")
    request = SetParameters.Request(parameters=[Parameter(name="crop_mode", value=ParameterValue(
        type=ParameterType.PARAMETER_STRING, string_value="center"))])
    assert env["graph"].call(client, request, timeout=30, resend_s=5).results[0].successful
    try:
        with env["events"].lock:
            before = len(env["events"])
        latent_msg, _ = publish_until(env, env["frames"][3], 500)
        with env["events"].lock:
            order = [(kind, msg) for kind, _, msg in env["events"][before:] if kind in ("info", "latent")]
        infos = [i for i, (kind, msg) in enumerate(order)
                 if kind == "info" and json.loads(msg.data)["input"]["crop_mode"] == "center"]
        first = next(i for i, (kind, msg) in enumerate(order) if kind == "latent" and stamp_of(msg) == (500, 500000))
        assert infos and infos[0] < first, order
    finally:
        request.parameters[0].value.string_value = "resize"
        env["graph"].call(client, request, timeout=30, resend_s=5)


def test_decoder_status_levels():
    """ERROR for an unknown bundle or disagreeing messages, WARN before any info or for a name-only match, OK."""
    from collections import Counter
    from types import SimpleNamespace

    from sage_ros.ros.decoder_node import Stream, stream_level

    stream = Stream("cam/latent")
    assert stream_level(stream, Counter())[0] == 1 and "waiting for cam/latent/info" in stream_level(stream, Counter())[1]
    stream.info = LatentInfo.parse(model_info(SimpleNamespace(
        name="m", architecture="TinyVAE", precision="fp32", is_vq=False, input_size=(64, 64), latent_shape=(8,),
        input_range=(0.0, 1.0), meta={"input": {}}, encoder_path=SimpleNamespace(name="e"),
        decoder_path=SimpleNamespace(name="d"), sha256=lambda name: name * 64)))
    stream.decoder = SimpleNamespace(matched_by="name", bundle=SimpleNamespace(name="m"))
    assert stream_level(stream, Counter(published=3))[0] == 1
    stream.decoder.matched_by = "checksum"
    assert stream_level(stream, Counter(published=3)) == (0, "cam/latent: decoding m (3 images in the last interval)")
    stream.last_mismatch = "message is 2 x 9"
    assert stream_level(stream, Counter(mismatched=1))[0] == 2
    stream.problem = "cannot decode m: no bundle"
    assert stream_level(stream, Counter())[0] == 2


def test_bag_record_adds_the_info_topic_of_each_latent_or_puzzle_topic():
    from sage_ros.bag.record import with_info_topics

    topics = ["/a/latent", "/b/image_raw", "/c/puzzle", "/a/latent/info"]
    assert with_info_topics(topics) == ["/a/latent", "/a/latent/info", "/b/image_raw", "/c/puzzle", "/c/puzzle/info"]
    assert with_info_topics(topics, with_info=False) == topics
