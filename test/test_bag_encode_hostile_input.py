"""`bag encode` on hostile input: malformed messages, a metadata.yaml that lies, bags with nothing to encode.

Before (9ec98e2): one truncated / empty / garbage / bad-UTF-8 CDR payload among 20 frames -> SerdeError traceback,
exit 1, no output; a metadata.yaml naming the image topic (or its type) wrongly -> "encoded 0 frames", exit 0, for
mcap and sqlite3 alike; a 0-message input -> exit 0 and an info stamped 2**63 - 1. Now: malformed messages are
skipped and counted, the storage's own connection records are trusted over metadata.yaml, and 0 frames is an error.
"""
from contextlib import closing

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer

from bag_helpers import BAG_T0_NS, image_msg
from sage_ros.bag.common import BagError, open_reader, typestore
from sage_ros.bag.encode import encode_bag
from sage_ros.cli import main as sage_ros_main
from sage_ros.compression.export import export_bundle
from sage_ros.models import TinyVAE

IMAGE = "sensor_msgs/msg/Image"
FRAMES = 20


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    return export_bundle(TinyVAE(latent_dim=8).eval(), tmp_path_factory.mktemp("hostile") / "tiny", name="tiny")


def _good(store, index):
    return bytes(store.serialize_cdr(image_msg(store, index), IMAGE))


def _bad_utf8(store, index):
    data = _good(store, index)
    assert data.count(b"rgb8") == 1
    return data.replace(b"rgb8", b"\xff\xfe\xfd\xfc")


MALFORMED = {
    "truncated": lambda store, i: _good(store, i)[:40],
    "empty": lambda store, i: b"",
    "garbage": lambda store, i: b"\x00\x01\x00\x00" + np.random.default_rng(i).integers(0, 256, 333, dtype=np.uint8).tobytes(),
    "bad_utf8": _bad_utf8,
}


def write_bag(path, payloads, storage="mcap", topic="/camera/image_raw"):
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connection = writer.add_connection(topic, IMAGE, typestore=typestore())
        for i, data in enumerate(payloads):
            writer.write(connection, BAG_T0_NS + i * 100_000_000, data)


def latent_stamps(bag):
    with closing(open_reader(bag)) as reader:
        return [t for c, t, _ in reader.messages() if c.topic == "/camera/latent"]


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_one_malformed_message_is_skipped_counted_and_the_rest_encoded(bundle, tmp_path, kind, capsys):
    store = typestore()
    payloads = [_good(store, i) for i in range(FRAMES)]
    payloads[7] = MALFORMED[kind](store, 7)
    write_bag(tmp_path / "in", payloads)
    code = sage_ros_main(["bag", "encode", str(tmp_path / "in"), str(tmp_path / "out"), "--bundle", str(bundle),
                          "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "encoded 19 frames" in out and "1 undecodable frames skipped" in out, out
    assert "Traceback" not in err and ("malformed" in err or "unsupported" in err), err
    assert latent_stamps(tmp_path / "out") == [BAG_T0_NS + i * 100_000_000 for i in range(FRAMES) if i != 7]


def test_every_message_malformed_is_an_error_and_leaves_no_output(bundle, tmp_path, capsys):
    write_bag(tmp_path / "in", [b"", b"\x00\x01", b"junk" * 10])
    code = sage_ros_main(["bag", "encode", str(tmp_path / "in"), str(tmp_path / "out"), "--bundle", str(bundle),
                          "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "encoded 0 frames: all 3 messages" in err, err
    assert not (tmp_path / "out").exists()


def _lie(bag, old, new):
    meta = bag / "metadata.yaml"
    text = meta.read_text()
    assert old in text
    meta.write_text(text.replace(old, new))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("lie", [("name: /camera/image_raw", "name: /camera/elsewhere"),
                                 (f"type: {IMAGE}", "type: std_msgs/msg/String")], ids=["topic", "type"])
def test_metadata_that_lies_does_not_hide_the_stored_frames(bundle, tmp_path, storage, lie, capsys):
    store = typestore()
    write_bag(tmp_path / "in", [_good(store, i) for i in range(FRAMES)], storage=storage)
    _lie(tmp_path / "in", *lie)
    code = sage_ros_main(["bag", "encode", str(tmp_path / "in"), str(tmp_path / "out"), "--bundle", str(bundle),
                          "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"encoded {FRAMES} frames of /camera/image_raw" in out, out
    assert "metadata.yaml disagrees with the storage" in err, err
    assert len(latent_stamps(tmp_path / "out")) == FRAMES


def test_metadata_that_declares_no_messages_is_not_believed(bundle, tmp_path, capsys):
    store = typestore()
    write_bag(tmp_path / "in", [_good(store, i) for i in range(5)])
    _lie(tmp_path / "in", "message_count: 5\n  relative", "message_count: 0\n  relative")  # the bag total
    summary = encode_bag(tmp_path / "in", tmp_path / "out", bundle)
    assert summary.frames == 5
    with closing(open_reader(tmp_path / "out")) as reader:
        info_stamps = [t for c, t, _ in reader.messages() if c.topic.endswith("/info")]
    assert info_stamps == [BAG_T0_NS]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_bag_with_no_messages_is_an_error_not_an_info_stamped_2_63(bundle, tmp_path, storage, capsys):
    write_bag(tmp_path / "in", [], storage=storage)
    with pytest.raises(BagError, match="holds no messages"):
        encode_bag(tmp_path / "in", tmp_path / "out", bundle)
    assert not (tmp_path / "out").exists()
    code = sage_ros_main(["bag", "encode", str(tmp_path / "in"), str(tmp_path / "out"), "--bundle", str(bundle),
                          "--no-progress"])
    assert code == 1 and "holds no messages" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
