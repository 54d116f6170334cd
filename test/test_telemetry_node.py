"""<output>/telemetry from live encoder nodes over real DDS: one message per latent with the latent's exact header,
fields named by the latched info, values equal to an offline computation of the same frame; live crop_mode and
publish_telemetry changes; the puzzle node with JPEG input (window in the source's pixels, decode opt-in)."""
import math
import time

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from ros_helpers import NodeProcess, TestGraph, camera_frames, header, stamp_of, wait_for
from sage_ros.runtime import telemetry as T
from sage_ros.runtime.backends import make_backend
from sage_ros.runtime.bundle import load_bundle
from sage_ros.runtime.consumer import shipped_model_dirs
from sage_ros.runtime.image_codec import encode_compressed, numpy_to_image
from sage_ros.runtime.latent_info import LatentInfo
from sage_ros.runtime.messages import message_fingerprint
from sage_ros.runtime.preprocess import Preprocessor

NS = "/tel_test"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def frames():
    return camera_frames(4)


@pytest.fixture(scope="module")
def graph():
    with TestGraph("telemetry_test_peer") as graph:
        yield graph


def start(graph, tmp, executable, bundle, cam, extra=(), compressed=False):
    node = NodeProcess(executable, [
        "-r", f"__ns:={NS}", "-p", f"bundle:={bundle}", "-p", "backend:=onnxruntime", "-p", "device:=cpu",
        "-p", f"image_topics:=[{cam}/image_raw]", "-p", "qos_reliability:=reliable",
        "-p", f"input_transport:={'compressed' if compressed else 'raw'}", *extra], tmp / f"{cam}.log",
        name=f"{cam}_encoder")
    kind = "puzzle" if executable == "puzzle_encoder" else "latent"
    env = {"node": node,
           "pub": graph.node.create_publisher(CompressedImage if compressed else Image,
                                              f"{NS}/{cam}/image_raw" + ("/compressed" if compressed else ""), 10),
           "out": graph.collect(Image, f"{NS}/{cam}/{kind}"),
           "telemetry": graph.collect(Image, f"{NS}/{cam}/{kind}/telemetry"),
           "info": graph.collect(String, f"{NS}/{cam}/{kind}/info", LATCHED)}
    node.wait_log("backend warm", 60)
    wait_for(lambda: env["pub"].get_subscription_count() and env["out"].matched() and env["telemetry"].matched(),
             30, what="graph matched")
    wait_for(lambda: len(env["info"]), 30, what="info")
    return env


def by_stamp(messages, stamp):
    return next((m for m in list(messages) if stamp_of(m) == stamp), None)


def send_until(env, msg, topic="telemetry", timeout=20.0):
    """Publish msg until its telemetry (or latent) arrives (a loaded host may lose the first to discovery)."""
    deadline = time.monotonic() + timeout
    while True:
        env["pub"].publish(msg)
        try:
            return wait_for(lambda: by_stamp(env[topic], stamp_of(msg)), 3.0)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def set_param(graph, node_name, **values):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = graph.node.create_client(SetParameters, f"{NS}/{node_name}/set_parameters")
    request = SetParameters.Request()
    for name, value in values.items():
        kind, field = ((ParameterType.PARAMETER_BOOL, "bool_value") if isinstance(value, bool)
                       else (ParameterType.PARAMETER_STRING, "string_value"))
        request.parameters.append(Parameter(name=name, value=ParameterValue(type=kind, **{field: value})))
    results = graph.call(client, request, timeout=30, resend_s=5).results
    assert all(r.successful for r in results), [r.reason for r in results]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, graph):
    env = start(graph, tmp_path_factory.mktemp("tiny"), "tinyvae_encoder", "tinyvae_l8_fp32", "tcam")
    try:
        yield env
    finally:
        env["node"].stop()


def test_bag_record_records_telemetry_beside_the_latent(tmp_path, tiny, frames):
    from bag_helpers import sage_ros
    from test_telemetry_bag import read_bag

    record = sage_ros("bag", "record", tmp_path / "rec", "--topics", f"{NS}/tcam/latent", "--max-messages", "9",
                      "--duration", "60")
    sec = 800
    while record.poll() is None and sec < 900:  # until the recorder has its 9 messages (info + latents + telemetry)
        tiny["pub"].publish(numpy_to_image(frames[0], "rgb8", header=header(sec)))
        sec += 1
        time.sleep(0.3)
    output, _ = record.communicate(timeout=30)
    assert record.returncode == 0, output
    topics = read_bag(tmp_path / "rec")
    assert f"{NS}/tcam/latent/telemetry" in topics and f"{NS}/tcam/latent/info" in topics, output
    info = LatentInfo.parse(topics[f"{NS}/tcam/latent/info"][0][1].data)
    latent_stamps = {stamp_of(m) for _, m in topics.get(f"{NS}/tcam/latent", [])}
    for _, msg in topics[f"{NS}/tcam/latent/telemetry"]:
        assert 800 <= msg.header.stamp.sec < sec
        assert 0 <= T.telemetry_from_message(msg, info)["trust"] <= 1
    assert latent_stamps and latent_stamps <= {(s, s * 1000) for s in range(800, sec)}


def test_tinyvae_telemetry_has_the_latent_header_and_the_offline_values(tiny, graph, frames):
    env = tiny
    info = LatentInfo.parse(env["info"][-1].data)
    fields = info["telemetry"]["fields"]
    bundle = load_bundle(shipped_model_dirs()[-1] / "tinyvae_l8_fp32")
    with make_backend(bundle, "onnxruntime", "cpu", intra_op_threads=1) as backend:
        for i, frame in enumerate(frames[:2]):
            msg = numpy_to_image(frame, "rgb8", header=header(500 + i, f"optical_{i}"))
            telemetry = send_until(env, msg)
            latent = wait_for(lambda: by_stamp(env["out"], stamp_of(msg)), 10)
            assert telemetry.header.frame_id == latent.header.frame_id == f"optical_{i}"
            assert stamp_of(telemetry) == stamp_of(latent)
            assert (telemetry.encoding, telemetry.height, telemetry.width) == ("32FC1", 1, len(fields))
            values = T.telemetry_from_message(telemetry, info)
            assert T.telemetry_fingerprint(values) == message_fingerprint(latent) == info["fingerprint"]
            prepared = Preprocessor.from_bundle(bundle, "resize").prepare(frame)
            offline = T.batch_telemetry(backend, prepared, backend.encode(prepared.batch),
                                        frames_hw=[frame.shape[:2]])[0]
            for name in ("recon_mse", "kl_per_dim", "trust", "latent_norm", "latent_dim", "crop_x", "crop_y",
                         "crop_w", "crop_h", "source_width", "source_height", "motion_found"):
                assert values[name] == pytest.approx(offline[name], rel=1e-4, abs=1e-6), name
            assert (values["crop_w"], values["crop_h"]) == (frame.shape[1], frame.shape[0])
            assert 0.0 <= values["trust"] <= 1.0
            assert 0 < values["encode_ms"] <= values["total_ms"]
    # live changes: a centre crop's window; telemetry off -> latents only; on again
    set_param(graph, "tcam_encoder", crop_mode="center")
    centred = send_until(env, numpy_to_image(frames[2], "rgb8", header=header(600)))
    height, width = frames[2].shape[:2]
    values = T.telemetry_from_message(centred, info)
    assert (values["crop_x"], values["crop_y"], values["crop_w"], values["crop_h"]) == (
        (width - height) // 2, 0, height, height)
    set_param(graph, "tcam_encoder", publish_telemetry=False)
    silent = numpy_to_image(frames[3], "rgb8", header=header(601))
    send_until(env, silent, topic="out")
    set_param(graph, "tcam_encoder", publish_telemetry=True)
    send_until(env, numpy_to_image(frames[3], "rgb8", header=header(602)))
    # telemetry of 601 would have been sent on the same reliable writer before 602's, so it would be here
    assert by_stamp(env["telemetry"], (601, 601000)) is None
    assert len({stamp_of(m) for m in env["telemetry"]}) == len(env["telemetry"])  # one per latent


def test_puzzle_telemetry_with_jpeg_input_reports_the_window_in_source_pixels(tmp_path, graph, frames):
    """768x576 JPEGs letterboxed into 224x224 (decoded at reduced size: the node needs only 224 px): the window is
    the whole source frame plus its padding, in source pixels; the histogram covers the 900 cells; recon fields are
    NaN until telemetry_decode is on."""
    env = start(graph, tmp_path, "puzzle_encoder", "puzzle_l64_fp32", "pcam", compressed=True,
                extra=["-p", "crop_mode:=letterbox"])
    try:
        info = LatentInfo.parse(env["info"][-1].data)
        frame = frames[0]
        height, width = frame.shape[:2]

        def jpeg(sec):
            msg = CompressedImage(format="jpeg", header=header(sec))
            msg.data = encode_compressed(frame, "jpeg", 90)
            return msg

        values = T.telemetry_from_message(send_until(env, jpeg(700)), info)
        puzzle = wait_for(lambda: by_stamp(env["out"], (700, 700000)), 10)
        codes = np.frombuffer(bytes(puzzle.data), np.uint8)[:900]  # the grid; an identity row follows
        assert [values[f"code_hist_{k}"] for k in range(10)] == np.bincount(codes, minlength=10).tolist()
        assert values["code_entropy_bits"] == pytest.approx(float(T.entropy_bits(np.bincount(codes, minlength=10))),
                                                            abs=1e-5)
        assert (values["source_width"], values["source_height"]) == (width, height)
        pad = (width - height) / 2  # letterbox of a landscape frame: padding above and below, in source pixels
        assert values["crop_x"] == pytest.approx(0, abs=0.5) and values["crop_w"] == pytest.approx(width, abs=1)
        assert values["crop_y"] == pytest.approx(-pad, abs=2) and values["crop_h"] == pytest.approx(width, abs=2)
        assert math.isnan(values["recon_mse"])
        set_param(graph, "pcam_encoder", telemetry_decode=True)
        values = T.telemetry_from_message(send_until(env, jpeg(701)), info)
        assert 0 < values["recon_mse"] < 0.5 and values["recon_psnr_db"] > 3
    finally:
        env["node"].stop()
