"""Telemetry in bags and through the consumer API: `sage-ros bag encode` writes <out>/telemetry beside the latents
(one per latent, same header and bag time, fields named by the bag's info); StampJoiner pairs each latent with its
telemetry and its source frame; `bag record` adds <topic>/telemetry beside latent / puzzle topics."""
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from bag_helpers import REPO, camera_frames, write_camera_bag
from sage_ros.bag.common import open_reader, typestore
from sage_ros.bag.encode import encode_bag
from sage_ros.bag.record import RecordOptions, with_info_topics
from sage_ros.runtime import telemetry as T
from sage_ros.runtime.backends import make_backend
from sage_ros.runtime.bundle import load_bundle
from sage_ros.runtime.consumer import LatentInfo, StampJoiner, latent_from_message, stamp_ns, telemetry_from_message
from sage_ros.runtime.image_codec import image_msg_to_rgb8
from sage_ros.runtime.preprocess import Preprocessor

MODEL = REPO / "models" / "tinyvae_l8_fp32"


def read_bag(bag: Path) -> dict:
    """topic -> [(bag time, message)]."""
    store, out = typestore(), {}
    with closing(open_reader(bag)) as reader:
        for connection, time_ns, data in reader.messages():
            out.setdefault(connection.topic, []).append((time_ns, store.deserialize_cdr(data, connection.msgtype)))
    return out


def test_bag_encode_writes_telemetry_that_joins_latents_and_frames(tmp_path):
    frames = camera_frames(5, height=96, width=160)
    write_camera_bag(tmp_path / "in", frames)
    summary = encode_bag(tmp_path / "in", tmp_path / "out", MODEL, topic="/camera/image_raw", batch=2, crop="center")
    assert summary.frames == 5
    topics = read_bag(tmp_path / "out")
    latents, telemetry = topics["/camera/latent"], topics["/camera/latent/telemetry"]
    info = LatentInfo.parse(topics["/camera/latent/info"][0][1].data)
    assert [t for t, _ in telemetry] == [t for t, _ in latents]  # the source frame's bag time, like the latent
    assert [(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for _, m in telemetry] == \
        [(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for _, m in latents]

    joiner = StampJoiner(("latent", "telemetry", "frame"))
    joined = []
    for _, msg in telemetry[::-1]:  # any order, any side first
        assert joiner.add("telemetry", stamp_ns(msg.header), telemetry_from_message(msg, info)) is None
    for _, msg in read_bag(tmp_path / "in")["/camera/image_raw"]:  # frames from the source bag
        assert joiner.add("frame", stamp_ns(msg.header), image_msg_to_rgb8(msg)) is None
    for _, msg in latents:
        joined.append(joiner.add("latent", stamp_ns(msg.header), latent_from_message(msg, info)))
    assert all(joined) and joiner.pending() == {"latent": 0, "telemetry": 0, "frame": 0}

    bundle = load_bundle(MODEL)
    with make_backend(bundle, "onnxruntime", "cpu", intra_op_threads=1) as backend:
        for item in joined:
            prepared = Preprocessor.from_bundle(bundle, "center").prepare(item["frame"])
            outputs = backend.encode(prepared.batch)
            np.testing.assert_allclose(item["latent"].mu, outputs["mu"][0], rtol=1e-5, atol=1e-6)
            expected = T.batch_telemetry(backend, prepared, outputs, frames_hw=[item["frame"].shape[:2]])[0]
            values = item["telemetry"]
            for name in ("recon_mse", "kl_per_dim", "trust", "latent_norm", "crop_x", "crop_y", "crop_w", "crop_h"):
                assert values[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-6), name
            assert (values["crop_x"], values["crop_w"], values["source_width"]) == (32, 96, 160)
            assert values["encode_ms"] > 0 and values["total_ms"] >= values["encode_ms"]


def test_bag_encode_cli_no_telemetry(tmp_path):
    write_camera_bag(tmp_path / "in", camera_frames(2))
    result = subprocess.run([sys.executable, "-m", "sage_ros.cli", "bag", "encode", tmp_path / "in", tmp_path / "out",
                             "--model", MODEL, "--no-telemetry", "--no-progress"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "/camera/latent/telemetry" not in read_bag(tmp_path / "out")


def test_stamp_joiner_evicts_the_oldest_unmatched_and_refuses_unknown_sides():
    joiner = StampJoiner(("latent", "telemetry"), capacity=2)
    for stamp in range(4):
        joiner.add("latent", stamp, f"latent{stamp}")
    assert joiner.evicted == {"latent": 2, "telemetry": 0} and joiner.pending() == {"latent": 2, "telemetry": 0}
    assert joiner.add("telemetry", 0, "t0") is None  # its latent was evicted
    assert joiner.add("telemetry", 3, "t3") == {"latent": "latent3", "telemetry": "t3"}
    with pytest.raises(KeyError, match="unknown side"):
        joiner.add("frame", 1, None)
    with pytest.raises(ValueError, match="distinct"):
        StampJoiner(("latent", "latent"))


def test_bag_record_adds_telemetry_beside_latent_and_puzzle_topics():
    topics = ["/a/latent", "/b/image_raw", "/c/puzzle"]
    assert RecordOptions(topics=topics).with_telemetry
    assert with_info_topics(topics, with_telemetry=True) == [
        "/a/latent", "/a/latent/info", "/a/latent/telemetry", "/b/image_raw", "/c/puzzle", "/c/puzzle/info",
        "/c/puzzle/telemetry"]
    assert with_info_topics(topics, with_info=False, with_telemetry=True) == [
        "/a/latent", "/a/latent/telemetry", "/b/image_raw", "/c/puzzle", "/c/puzzle/telemetry"]
