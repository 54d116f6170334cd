"""`sage-ros demo` (issue 5, item 5): end to end on a short slice of the bundled bag with untrained seeded
bundles (the shipped ones may not exist yet; the demo's plumbing is what is tested), Ctrl-C clean-up, clear
errors for missing data / models, and the pieces it is built from (model discovery, header parsing, commands).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sage_ros import demo  # noqa: E402

SHORT_OFFSET = "17"  # the last 3 s of the raw slice: 30 frames


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    from demo_helpers import export_untrained_demo_models

    return export_untrained_demo_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def bag() -> Path:
    from sage_ros.data import DataNotFoundError, vtest_bag_path

    try:
        return vtest_bag_path()
    except DataNotFoundError as err:
        pytest.skip(f"bundled bag missing: {err}")


def _default_sigint() -> None:
    """A suite started as a background job of a non-interactive shell (`bash .ci/run &`) runs with SIGINT ignored,
    and children inherit that: give the demo the disposition a terminal's Ctrl-C would meet."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def demo_process(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(demo.sage_ros_command("demo", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env or os.environ.copy(), cwd=demo.REPO, preexec_fn=_default_sigint)


# --- end to end -------------------------------------------------------------------------------------------------

def test_demo_end_to_end(tmp_path, models_dir, bag):
    out = tmp_path / "demo_out"
    started = time.monotonic()
    proc = demo_process("--models", models_dir, "--out", out, "--start-offset", SHORT_OFFSET)
    stdout, _ = proc.communicate(timeout=240)
    wall = time.monotonic() - started
    assert proc.returncode == 0, stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_played"] == summary["frames_recorded_input"] == 30
    nodes = {row["node"]: row for row in summary["encoders"]}
    assert set(nodes) == {"tinyvae_fp32", "tinyvae_int8", "tinyvae_int4", "puzzle_fp32"}
    for row in nodes.values():
        assert row["frames_in"] == 30, row  # reliable replay: every frame reaches every node
        assert row["frames_out"] + row["dropped"] == row["frames_in"] and row["frames_out"] > 0, row
        assert row["errors"] == 0 and row["untrained"]
        assert row["latency_ms"]["p50"] is not None and row["bytes"]["onnx_total"] > 0
    # sizes are the real files, and the quantized graphs are smaller than the float one
    assert nodes["tinyvae_fp32"]["bytes"]["onnx_total"] == sum(
        (models_dir / "untrained-tinyvae-l16-fp32" / f).stat().st_size for f in ("encoder.onnx", "decoder.onnx"))
    assert nodes["tinyvae_int8"]["onnx_ratio_vs_fp32"] > 1.5 and nodes["tinyvae_int4"]["onnx_ratio_vs_fp32"] > 1.5
    sizes = {row["model"]: row for row in summary["bundles"]}  # every bundle found, with real sizes
    assert set(sizes) == {p.name for p in models_dir.iterdir()}
    assert sizes["untrained-tinyvae-l16-int4"]["onnx_ratio_vs_fp32"] == nodes["tinyvae_int4"]["onnx_ratio_vs_fp32"]
    # the printed summary and the picture
    assert "tinyvae_int4" in stdout and "UNTRAINED" in stdout and "contact sheet" in stdout
    from PIL import Image

    sheet = out / "contact_sheet.png"
    assert sheet.stat().st_size < 500_000
    with Image.open(sheet) as picture:
        assert picture.format == "PNG" and picture.width > 800 and picture.height > 600
    assert summary["contact_sheet_frames"] == 5
    print(f"demo on a 3 s slice: {wall:.1f} s wall")


def test_demo_ctrl_c_stops_every_process(tmp_path, models_dir, bag):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "demo_out"
    # the whole 20 s bag at half rate (40 s): still playing when interrupted, even on a loaded machine
    proc = demo_process("--models", models_dir, "--out", out, "--rate", "0.5")
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # wait until it is playing: encoders, recorder and player all running
        lines.append(line)
        if "playing" in line or time.monotonic() > deadline:
            break
    assert any("playing" in line for line in lines), "".join(lines)
    demo_proc, children = psutil.Process(proc.pid), []
    deadline = time.monotonic() + 30
    while len(children) < 6 and time.monotonic() < deadline:  # "playing" is printed just before the player starts
        children = demo_proc.children(recursive=True)
        time.sleep(0.1)
    assert len(children) >= 6, children  # 4 encoders, the recorder, the player
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted" in rest
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    # the recorder was stopped with SIGINT and closed its bag: what was recorded so far is a whole bag
    from sage_ros.bag.common import open_reader

    reader = open_reader(out / "replay_bag")
    try:
        assert reader.message_count > 0
    finally:
        reader.close()


# --- clear errors ------------------------------------------------------------------------------------------------

def test_demo_missing_models_is_a_clear_error(tmp_path, bag):
    proc = demo_process("--models", tmp_path / "nothing_here", "--out", tmp_path / "out")
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "models directory" in stdout and "--models" in stdout


def test_demo_missing_data_is_a_clear_error(tmp_path, models_dir):
    env = dict(os.environ, SAGE_ROS_DATA=str(tmp_path / "no_data"))
    proc = demo_process("--models", models_dir, "--out", tmp_path / "out", env=env)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "make data" in stdout


# --- pieces -----------------------------------------------------------------------------------------------------

def test_find_models_groups_by_latent_and_precision(tmp_path, models_dir):
    import shutil

    found = demo.find_models(models_dir)
    assert list(found.tinyvae) == ["fp32", "int8", "int4"]
    assert {b.latent_shape for b in found.tinyvae.values()} == {(16,)}
    assert found.puzzle is not None and found.puzzle.is_vq
    # a corrupt bundle is skipped (with a message), not run
    broken = tmp_path / "models"
    shutil.copytree(models_dir, broken)
    (broken / "untrained-tinyvae-l16-int8" / "encoder.onnx").write_bytes(b"not onnx")
    assert list(demo.find_models(broken).tinyvae) == ["fp32", "int4"]
    with pytest.raises(demo.DemoError, match="no TinyVAE bundle"):
        demo.find_models(tmp_path)  # a directory without bundles


def test_header_parse_matches_full_deserialization(bag):
    from sage_ros.bag.common import open_reader, typestore

    store, checked = typestore(), 0
    reader = open_reader(bag)
    try:
        connections = [c for c in reader.connections if c.topic == demo.RAW_TOPIC]
        for conn, _, data in reader.messages(connections=connections):
            msg = store.deserialize_cdr(data, conn.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            assert demo._deserialize_header(data) == (stamp, msg.header.frame_id)
            checked += 1
            if checked == 3:
                break
    finally:
        reader.close()
    assert checked == 3


def test_encoder_command_types():
    command = demo.encoder_command("tinyvae", Path("/b"), "n", {"max_rate": 10.0, "qos_depth": 10,
                                                                "image_topics": ["/a/image", "/b/image"],
                                                                "publish_reconstruction": True},
                                   {"/camera/latent": "/x/latent"})
    assert command[0].endswith("tinyvae_encoder")
    assert "max_rate:=10.0" in command  # a double must look like one, or the node rejects it
    assert "qos_depth:=10" in command and "image_topics:=[/a/image,/b/image]" in command
    assert "publish_reconstruction:=true" in command and "/camera/latent:=/x/latent" in command


def test_summary_percentiles_and_rates():
    assert demo._percentiles([1.0, 2.0, 3.0, 4.0]) == {"p50": 2.5, "p90": 3.7, "p99": 3.97}
    assert demo._percentiles([]) == {"p50": None, "p90": None, "p99": None}
    assert demo._rate_hz([0, 100_000_000, 200_000_000]) == 10.0
    assert demo._rate_hz([5]) is None
    assert np.isclose(demo._psnr(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)), 0.0)


def test_find_models_picks_the_shipped_bundles():
    """What `make demo` runs: the node's default TinyVAE-family bundle with its shipped siblings of the same
    architecture and latent size (fp32 first) and the fp32 puzzle model."""
    from sage_ros.demo.models import TINYVAE_FAMILY
    from sage_ros.ros.params import DEFAULT_BUNDLES
    models_dir = demo.default_models_dir()
    if not any(models_dir.glob("*/bundle.json")):
        pytest.skip(f"no shipped bundles under {models_dir}")
    found = demo.find_models(models_dir)
    assert found.tinyvae["fp32"].name == DEFAULT_BUNDLES["tinyvae"] and list(found.tinyvae)[0] == "fp32"
    assert len(found.tinyvae) >= 2
    assert len({(b.architecture, b.latent_shape) for b in found.tinyvae.values()}) == 1
    assert all(b.architecture in TINYVAE_FAMILY and not demo.is_untrained(b) for b in found.tinyvae.values())
    assert found.puzzle is not None and found.puzzle.precision == "fp32"


def test_contact_sheet_decodes_only_through_the_recorded_info(tmp_path):
    """The picture's decoders come from each output's recorded <output>/info (consumer API, bundle by checksum):
    a recording without it, or whose info names another model, is an error rather than a silently wrong picture."""
    from demo_helpers import export_untrained_tinyvae
    from sage_ros.demo.sheet import recorded_decoders
    from sage_ros.runtime.bundle import load_bundle
    from sage_ros.runtime.latent_info import LatentInfo, model_info

    fp32 = load_bundle(export_untrained_tinyvae(tmp_path / "models" / "fp32", "fp32"))
    int8 = load_bundle(export_untrained_tinyvae(tmp_path / "models" / "int8", "int8"))
    run = demo.EncoderRun("tinyvae_fp32", "tinyvae", fp32, "/camera/tinyvae_fp32/latent")
    recording = demo.Recording(outputs={run.output_topic: []})
    with pytest.raises(demo.DemoError, match="no /camera/tinyvae_fp32/latent/info"):
        recorded_decoders(recording, [run])
    recording.infos[run.output_topic] = LatentInfo.parse(model_info(int8))
    with pytest.raises(demo.DemoError, match="not the started"):
        recorded_decoders(recording, [run])
    recording.infos[run.output_topic] = LatentInfo.parse(model_info(fp32))
    decoders = recorded_decoders(recording, [run])
    assert decoders["tinyvae_fp32"].matched_by == "checksum"
    decoders["tinyvae_fp32"].close()
