"""`sage-ros bag encode`: offline, no DDS; outputs checked against the torch model and read by two bag readers."""
import subprocess
import sys
from contextlib import closing

import cv2
import numpy as np
import pytest
import torch
from mcap_ros2.reader import read_ros2_messages

from bag_helpers import BAG_T0_NS, REPO, camera_frames, write_camera_bag
from sage_ros.bag.common import BagError, open_reader, typestore
from sage_ros.bag.encode import default_output_topic, encode_bag
from sage_ros.compression.export import export_bundle
from sage_ros.models import TinyVAE, VisionPuzzleVAE
from sage_ros.runtime.messages import image_to_output

FRAMES = 7


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two untrained-but-seeded bundles (TinyVAE L=8, VisionPuzzleVAE L=8) and a bag of 7 camera frames."""
    root = tmp_path_factory.mktemp("encode")
    torch.manual_seed(0)
    tiny = TinyVAE(latent_dim=8).eval()
    puzzle = VisionPuzzleVAE(latent_dim=8).eval()
    export_bundle(tiny, root / "tiny", name="tiny")
    export_bundle(puzzle, root / "puzzle", name="puzzle")
    frames = camera_frames(FRAMES)
    stamps = write_camera_bag(root / "in", frames)
    return root, tiny, puzzle, frames, stamps


def read_rosbags(bag, info=False):
    """(topic, bag time, message) of the latents (or, with info=True, of the <topic>/info messages)."""
    store = typestore()
    with closing(open_reader(bag)) as reader:
        return [(c.topic, t, store.deserialize_cdr(d, c.msgtype)) for c, t, d in reader.messages()
                if c.topic.endswith("/info") == info and not c.topic.endswith("/telemetry")]


def test_latents_match_the_torch_model_frame_by_frame_with_source_headers(setup, tmp_path):
    root, tiny, _, frames, stamps = setup
    summary = encode_bag(root / "in", tmp_path / "out", root / "tiny", topic="/camera/image_raw", batch=3)
    assert summary.frames == FRAMES and summary.bad_frames == 0 and summary.out_topic == "/camera/latent"

    messages = read_rosbags(tmp_path / "out")
    assert [topic for topic, _, _ in messages] == ["/camera/latent"] * FRAMES
    assert [t for _, t, _ in messages] == [BAG_T0_NS + int(i * 1e9 / 10.0) for i in range(FRAMES)]  # source bag times
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, _, m in messages] == stamps
    assert {m.header.frame_id for _, _, m in messages} == {"camera_optical_frame"}
    assert {(m.encoding, m.height, m.width, m.step) for _, _, m in messages} == {("32FC1", 3, 8, 32)}

    # independent reference: INTER_AREA resize to 64 px, [0, 1], the torch model's deterministic mu / logvar
    batch = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32) / 255
    with torch.no_grad():
        mu, logvar = tiny.encode(torch.from_numpy(batch).permute(0, 3, 1, 2))
    got = [image_to_output(m) for _, _, m in messages]
    np.testing.assert_allclose(np.stack([g["mu"] for g in got]), mu.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.stack([g["logvar"] for g in got]), logvar.numpy(), atol=1e-4)

    # a second, independent implementation reads the same bag (schemas embedded by rosbags)
    decoded = list(read_ros2_messages(next((tmp_path / "out").glob("*.mcap")), topics=["/camera/latent"]))
    assert len(decoded) == FRAMES
    last = decoded[-1].ros_msg
    assert (last.encoding, last.height, last.width, last.header.frame_id) == ("32FC1", 3, 8, "camera_optical_frame")
    np.testing.assert_array_equal(np.frombuffer(bytes(last.data), "<f4").reshape(3, 8)[0], got[-1]["mu"])


def test_the_bag_says_which_model_made_its_latents(setup, tmp_path):
    """One latched <topic>/info at the bag's start (before every latent), naming the bundle by its checksums."""
    import json

    from sage_ros.runtime.bundle import load_bundle
    from sage_ros.runtime.latent_info import LatentInfo

    root = setup[0]
    encode_bag(root / "in", tmp_path / "out", root / "tiny", crop="center")
    infos, latents = read_rosbags(tmp_path / "out", info=True), read_rosbags(tmp_path / "out")
    assert [topic for topic, _, _ in infos] == ["/camera/latent/info"]
    assert infos[0][1] <= min(t for _, t, _ in latents)
    info = LatentInfo.parse(infos[0][2].data)
    bundle = load_bundle(root / "tiny")
    assert (info.model, info["latent_dim"], info["input"]["crop_mode"]) == ("tiny", 8, "center")
    assert (info["encoder_sha256"], info["decoder_sha256"]) == (bundle.meta["files"]["encoder.onnx"],
                                                                bundle.meta["files"]["decoder.onnx"])
    assert json.loads(infos[0][2].data)["format_version"] == 2
    with closing(open_reader(tmp_path / "out")) as reader:
        qos = next(c for c in reader.connections if c.topic.endswith("/info")).ext.offered_qos_profiles[0]
    assert (qos.reliability.name, qos.durability.name, qos.depth) == ("RELIABLE", "TRANSIENT_LOCAL", 1)


def test_batch_size_does_not_change_results(setup, tmp_path):
    root = setup[0]
    encode_bag(root / "in", tmp_path / "b1", root / "tiny", batch=1)
    encode_bag(root / "in", tmp_path / "b16", root / "tiny", batch=16)
    one, many = ([image_to_output(m)["mu"] for _, _, m in read_rosbags(tmp_path / b)] for b in ("b1", "b16"))
    np.testing.assert_allclose(np.stack(one), np.stack(many), atol=1e-5)


def test_compressed_topic_to_puzzle_grids_through_the_cli(setup, tmp_path):
    root, _, puzzle, frames, stamps = setup
    result = subprocess.run([sys.executable, "-m", "sage_ros.cli", "bag", "encode", root / "in", tmp_path / "out",
                             "--bundle", root / "puzzle", "--topic", "/camera/image_raw/compressed", "--batch", "4"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"encoded {FRAMES} frames of /camera/image_raw/compressed -> /camera/puzzle" in result.stdout
    messages = read_rosbags(tmp_path / "out")
    assert len(messages) == FRAMES
    assert {(m.encoding, m.height, m.width) for _, _, m in messages} == {("mono8", 31, 30)}
    codes = np.stack([image_to_output(m)["codes"] for _, _, m in messages])
    assert codes.max() <= 9
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, _, m in messages] == stamps
    decoded = [m.ros_msg for m in read_ros2_messages(next((tmp_path / "out").glob("*.mcap")), topics=["/camera/puzzle"])]
    np.testing.assert_array_equal(np.frombuffer(bytes(decoded[0].data), np.uint8).reshape(31, 30)[:30], codes[0])
    # the codes are the model's: decode the JPEGs as the reader does and compare with torch argmin codes
    with closing(open_reader(root / "in")) as reader:
        jpegs = [typestore().deserialize_cdr(d, c.msgtype) for c, _, d in reader.messages() if c.topic.endswith("compressed")]
    rgb = np.stack([cv2.resize(cv2.imdecode(j.data, cv2.IMREAD_COLOR)[:, :, ::-1], (224, 224), interpolation=cv2.INTER_AREA)
                    for j in jpegs]).astype(np.float32) / 127.5 - 1.0
    with torch.no_grad():
        expected = puzzle.encode(torch.from_numpy(rgb).permute(0, 3, 1, 2))
    expected = expected[-1] if isinstance(expected, tuple) else expected
    agreement = (expected.numpy().astype(np.uint8) == codes).mean()
    assert agreement > 0.99, agreement


@pytest.mark.parametrize("topic, kind, expected", [
    ("/camera/image_raw", "latent", "/camera/latent"),
    ("/camera/image_raw/compressed", "puzzle", "/camera/puzzle"),
    ("/image", "latent", "/latent"),
])
def test_default_output_topic_is_where_the_node_publishes(topic, kind, expected):
    assert default_output_topic(topic, kind) == expected


def test_bad_inputs_fail_clearly(setup, tmp_path):
    root = setup[0]
    with pytest.raises(BagError, match="topics not in bag"):
        encode_bag(root / "in", tmp_path / "x", root / "tiny", topic="/nope")
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError, match="exists already"):
        encode_bag(root / "in", tmp_path / "exists", root / "tiny")
    result = subprocess.run([sys.executable, "-m", "sage_ros.cli", "bag", "encode", root / "in", tmp_path / "y",
                             "--bundle", tmp_path / "no_bundle"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "error" in result.stderr, result.stderr  # a bad --bundle is a usage error
    assert not (tmp_path / "y").exists()


def test_real_camera_bag_every_frame_encoded_once_with_its_stamp(setup, tmp_path):
    """The bundled real-camera bag (768 x 576 rgb8, 200 frames): one latent per frame, stamps one to one."""
    from sage_ros.data import vtest_bag_path

    bag = vtest_bag_path()
    store = typestore()
    with closing(open_reader(bag)) as reader:
        connection = next(c for c in reader.connections if c.topic == "/camera/image_raw")
        source = [store.deserialize_cdr(d, c.msgtype).header for c, _, d in reader.messages([connection])]
    summary = encode_bag(bag, tmp_path / "out", setup[0] / "tiny", topic="/camera/image_raw", batch=32)
    latents = [m for _, _, m in read_rosbags(tmp_path / "out")]
    assert summary.frames == len(source) == len(latents) == connection.msgcount
    assert [(h.stamp.sec, h.stamp.nanosec, h.frame_id) for h in source] == \
        [(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for m in latents]
    mu = np.stack([image_to_output(m)["mu"] for m in latents])
    assert np.isfinite(mu).all() and mu.std(axis=0).min() > 0  # frames differ, so latents differ
