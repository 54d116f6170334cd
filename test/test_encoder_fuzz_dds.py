"""Issue #11 findings 1 and 2 over real DDS: a short fuzz run against encoder nodes on their default input QoS
(best effort, keep last 5), counting every frame.

Two cameras per node. Each round publishes, back to back, a valid frame and a random malformed one on camera A, and
the same on camera B; then it waits 50 ms. Every valid frame must come out as a latent (0 lost to a malformed
one, same camera or the other), every malformed one must be counted in bad_frames, and the node must stay up.
The compressed node also gets a stream of decompression bombs on one camera while the other keeps its rate, and
its peak memory (VmHWM) must not grow by 50 MB.
"""
import random
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image

from ros_helpers import NodeProcess, TestGraph, camera_frames, export_test_bundle, header, stamp_of, wait_for
from sage_ros.ros.diagnostics import status_values
from sage_ros.runtime.image_codec import encode_compressed, numpy_to_image
from test_image_codec_robustness import jpeg_bomb, png_bomb

ROUNDS = 80
PERIOD_S = 0.05


@pytest.fixture(scope="module")
def graph():
    with TestGraph("hardening_peer") as graph:
        yield graph


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return export_test_bundle("TinyVAE", tmp_path_factory.mktemp("hardening") / "bundle")


@pytest.fixture(scope="module")
def small_frames():
    return [cv2.resize(frame, (160, 120), interpolation=cv2.INTER_AREA) for frame in camera_frames(4)]


def start_node(tmp_path: Path, graph, bundle_dir, ns: str, transport: str):
    node = NodeProcess("tinyvae_encoder", [
        "-r", f"__ns:={ns}", "-p", f"bundle:={bundle_dir}", "-p", "backend:=onnxruntime", "-p", "device:=cpu",
        "-p", "image_topics:=[a/image,b/image]", "-p", f"input_transport:={transport}",
        "-p", "diagnostics_period:=0.3"], tmp_path / f"{ns.strip('/')}.log")
    suffix = "/compressed" if transport == "compressed" else ""
    kind = CompressedImage if transport == "compressed" else Image
    env = {"node": node, "a": graph.node.create_publisher(kind, f"{ns}/a/image{suffix}", 10),
           "b": graph.node.create_publisher(kind, f"{ns}/b/image{suffix}", 10),
           "a_latent": graph.collect(Image, f"{ns}/a/latent"), "b_latent": graph.collect(Image, f"{ns}/b/latent"),
           "diagnostics": graph.collect(DiagnosticArray, "/diagnostics")}
    node.wait_log("backend warm", timeout=40)
    wait_for(lambda: env["a"].get_subscription_count() and env["b"].get_subscription_count(), 20)
    wait_for(lambda: env["a_latent"].matched() and env["b_latent"].matched() and env["diagnostics"].matched(), 20)
    time.sleep(0.5)
    return env


def counters(env, ns: str) -> dict:
    for array in reversed(list(env["diagnostics"])):
        if array.status and array.status[0].name.startswith(f"{ns}/tinyvae_encoder"):
            return status_values(array)
    return {}


def malformed_raw(rng: random.Random, frame: np.ndarray, sec: int):
    msg = numpy_to_image(frame, "rgb8", header=header(sec))
    kind = rng.choice(["short", "long", "encoding", "zero", "step", "nan", "oddyuv", "huge", "bigendian16"])
    if kind == "short":
        msg.data = msg.data[:-rng.randint(1, 500)]
    elif kind == "long":
        msg.data.extend(bytes(rng.randint(1, 50)))
    elif kind == "encoding":
        msg.encoding = rng.choice(["rgb9", "", "jpeg", "BGR8", "bayer_xyz8"])
    elif kind == "zero":
        msg.height = 0
    elif kind == "step":
        msg.step = rng.randint(0, msg.step - 1)
    elif kind == "nan":
        msg = numpy_to_image(np.full((12, 16), np.nan, np.float32), "32FC1", header=header(sec))
    elif kind == "oddyuv":
        msg = numpy_to_image(np.zeros((4, 6, 2), np.uint8), "yuv422", header=header(sec))
        msg.width, msg.step = 5, 10
    elif kind == "huge":  # width x height beyond max_input_pixels, data length consistent with it
        msg.height, msg.width, msg.step = 70000, 70000, 0
        msg.data = msg.data[:0]
    elif kind == "bigendian16":  # data one byte short of mono16's step * height
        msg = numpy_to_image(np.zeros((6, 6), np.uint16), "mono16", header=header(sec), is_bigendian=True)
        msg.data = msg.data[:-1]
    return msg


def run_rounds(env, make_good, make_bad, rounds=ROUNDS):
    for sec in range(1, rounds + 1):
        for camera in ("a", "b"):
            env[camera].publish(make_good(camera, sec))
            env[camera].publish(make_bad(camera, sec))
        time.sleep(PERIOD_S)


def assert_every_good_frame_encoded(env, ns, rounds, bad_sent, extra_bad=0):
    expected = {(sec, 1000 * sec) for sec in range(1, rounds + 1)}
    try:
        wait_for(lambda: expected <= {stamp_of(m) for m in list(env["a_latent"])}
                 and expected <= {stamp_of(m) for m in list(env["b_latent"])}, 15)
    except AssertionError:
        pass
    got = {camera: len(expected & {stamp_of(m) for m in list(env[f"{camera}_latent"])}) for camera in ("a", "b")}
    time.sleep(1.0)  # one more diagnostics period after the last frame

    def settled():
        c = counters(env, ns)
        return c and int(c["frames_received"]) == sum(int(c[k]) for k in ("frames_published", "bad_frames",
                                                                          "dropped_frames")) and c
    values = wait_for(settled, 10, what="every received frame accounted for")
    print(f"{ns}: valid frames encoded a {got['a']}/{rounds}, b {got['b']}/{rounds}; bad_frames "
          f"{values['bad_frames']} ({bad_sent} sent in the rounds, {extra_bad} more in a burst); received "
          f"{values['frames_received']}, published {values['frames_published']}, dropped {values['dropped_frames']}, "
          f"lost {values['lost_frames']}, errors {values['errors']}")
    assert env["node"].process.poll() is None  # 0 crashes
    assert got == {"a": rounds, "b": rounds}, (got, values)  # 0 valid frames lost
    # every malformed frame of the rounds reached the node (2 per camera per round fit its depth-5 history) and was
    # counted; of a burst of 10 at once the middleware's keep-last 5 may drop some before the node sees them
    assert bad_sent <= int(values["bad_frames"]) <= bad_sent + extra_bad
    assert int(values["errors"]) == 0
    assert all(stamp_of(m)[0] < 100000 for m in list(env["a_latent"]) + list(env["b_latent"]))  # no bad one encoded


def test_raw_fuzz_no_good_frame_lost(tmp_path, graph, bundle_dir, small_frames):
    ns = "/hard_raw"
    env = start_node(tmp_path, graph, bundle_dir, ns, "raw")
    try:
        rng = random.Random(11)
        run_rounds(env, lambda camera, sec: numpy_to_image(small_frames[sec % 4], "rgb8", header=header(sec)),
                   lambda camera, sec: malformed_raw(rng, small_frames[sec % 4], 100000 + sec))
        assert_every_good_frame_encoded(env, ns, ROUNDS, bad_sent=2 * ROUNDS)
    finally:
        env["node"].stop()


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_compressed_fuzz_and_bomb_stream(tmp_path, graph, bundle_dir, small_frames):
    ns = "/hard_jpeg"
    env = start_node(tmp_path, graph, bundle_dir, ns, "compressed")
    try:
        jpegs = [encode_compressed(frame, "jpeg", 90) for frame in small_frames]
        bombs = [png_bomb(32000, 32000, rows=8), jpeg_bomb(65500, 65500), png_bomb(16000, 16000, rows=8)]
        bad_payloads = [*bombs, jpegs[0][: len(jpegs[0]) // 2], jpegs[1][:-200], b"\xff\xd8\xff" + bytes(60),
                        b"GIF89a" + bytes(40), b""]
        rng = random.Random(12)

        def good(camera, sec):
            return CompressedImage(header=header(sec), format="jpeg", data=jpegs[sec % 4])

        def bad(camera, sec):
            return CompressedImage(header=header(100000 + sec), format=rng.choice(["jpeg", "png", "rgb8; jpeg"]),
                                   data=rng.choice(bad_payloads))

        hwm_before = _vm_hwm_kib(env["node"].process.pid)
        run_rounds(env, good, bad)
        # a bomb stream on camera a (400 bombs in ~2 s) while camera b keeps 20 Hz of valid frames
        stream_rounds = 40
        for index in range(stream_rounds):
            for bomb_index in range(10):
                env["a"].publish(CompressedImage(header=header(200000 + index), format="png",
                                                 data=bombs[bomb_index % len(bombs)]))
            env["b"].publish(good("b", ROUNDS + 1 + index))
            time.sleep(PERIOD_S)
        got_b = wait_for(lambda: (s := {stamp_of(m) for m in list(env["b_latent"])}) and
                         sum((ROUNDS + 1 + i, 1000 * (ROUNDS + 1 + i)) in s for i in range(stream_rounds))
                         == stream_rounds, 15, what="camera b's frames during the bomb stream")
        assert got_b
        hwm_growth = _vm_hwm_kib(env["node"].process.pid) - hwm_before
        print(f"{ns}: peak memory growth over {2 * ROUNDS + 10 * stream_rounds} malformed frames incl. "
              f"{10 * stream_rounds}+ bombs: {hwm_growth / 1024:.1f} MiB")
        assert hwm_growth < 50 * 1024
        assert_every_good_frame_encoded(env, ns, ROUNDS, bad_sent=2 * ROUNDS, extra_bad=10 * stream_rounds)
    finally:
        env["node"].stop()
