"""`sage-ros demo`: real camera frames in, latents out, over real DDS, with a summary and a picture.

    sage-ros demo --out demo_out [--models models/] [--rate 1.0] [--start-offset 0] [--update-docs]

The bundled real-camera bag (data_cache/bags/vtest, /camera/image_raw: 20 s of vtest.avi, 768x576 rgb8 at 10 fps)
is replayed by `sage-ros bag play` into one encoder node per model (TinyVAE fp32 / int8 / int4 and the
VisionPuzzleVAE, each its own process and DDS participant, as `ros2 run sage_ros tinyvae_encoder` starts it),
and `sage-ros bag record` records the input, every latent / puzzle topic and /diagnostics into one mcap bag.
Everything afterwards is read back from that bag: frames in/out, rates, latency percentiles (the recorder's
receive time of a latent minus its receive time of the source frame with the same header stamp: one clock),
drops (the nodes' /diagnostics counters) and the bundles' file sizes. The contact sheet decodes the recorded
latents through the consumer API (sage_ros.runtime.consumer): each output's recorded `<output>/info` says which
model made it, its bundle is found by checksum, and its decoder.onnx turns the latents into the pictures shown beside
the frames they came from.

Transport: the replay path is reliable (play --qos reliable, encoders qos_reliability:=reliable, qos_depth 10):
measured here, 768x576 rgb8 frames over best-effort DDS lose 30-60 % even at 5 fps under load, which would make
the demo about DDS rather than the encoders. The nodes still drop frames the latest-frame-wins way when they
fall behind, and count them.

Parts (this package): common (names, DemoError), processes (child processes and their commands), models (which
bundles, sizes), replay (the ROS graph), recording (reading the bag back), summary (numbers), sheet (the picture,
decoded through sage_ros.runtime.consumer). The replay tests (test/test_replay_*.py) build on them too.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from sage_ros.atomic import atomic_path, atomic_write_json, atomic_write_text
from sage_ros.runtime.settings import BACKENDS

from .common import (BIN, COMPRESSED_TOPIC, DIAGNOSTICS_TOPIC, ENCODER_READY_LOG, RAW_TOPIC, REPO,  # noqa: F401
                     TINYVAE_PRECISIONS, UNTRAINED_MARK, DemoError)
from .models import (DemoModels, EncoderRun, bundle_bytes, default_models_dir, demo_encoders,  # noqa: F401
                     find_models, is_untrained, size_table)
from .processes import Child, ProcessGroup, child_env, encoder_command, sage_ros_command  # noqa: F401
from .recording import Recording, _deserialize_header, read_input_frames, read_recording  # noqa: F401
from .replay import GraphProbe, ReplayOptions, ReplayResult, run_replay  # noqa: F401
from .sheet import _psnr, contact_sheet, pick_stamps  # noqa: F401
from .summary import _percentiles, _rate_hz, summarize, summary_text  # noqa: F401


# --- the verb --------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out)")
    parser.add_argument("--models", type=Path, default=None,
                        help="directory of model bundles (default: the shipped models: share/sage_ros/models of an "
                             "installed package, else the checkout's models/)")
    parser.add_argument("--bag", type=Path, default=None, help="input bag (default: the bundled vtest bag)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback rate (default 1.0 = 10 fps)")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                        help="start S seconds into the 20 s raw slice (shorter demo)")
    parser.add_argument("--transport", default="raw", choices=("raw", "compressed"),
                        help="raw: /camera/image_raw (20 s, rgb8); compressed: /camera/image_raw/compressed (the "
                             "whole 79.5 s video as JPEG; use --start-offset, e.g. 60) with input_transport:=compressed")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--rows", type=int, default=5, help="frames on the contact sheet (default 5)")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID for the demo's processes (default: $ROS_DOMAIN_ID, else one of its own)")
    parser.add_argument("--large-data", action="store_true",
                        help="run every process with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA")
    parser.add_argument("--update-docs", action="store_true",
                        help="also copy the contact sheet to docs/demo_contact_sheet.png")


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM takes the same clean path as Ctrl-C: children stopped, bag closed


def run(args) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        return _run(args, started)
    except DemoError as err:
        print(f"sage-ros demo: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sage-ros demo: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130


def _run(args, started: float) -> int:
    from sage_ros.data import DataNotFoundError, vtest_bag_path

    try:
        bag_in = args.bag or vtest_bag_path()
    except DataNotFoundError as err:
        raise DemoError(str(err)) from None
    if not Path(bag_in).exists():
        raise DemoError(f"bag {bag_in} not found")
    models = find_models(args.models or default_models_dir())
    encoders = demo_encoders(models)
    missing = [p for p in TINYVAE_PRECISIONS if p not in models.tinyvae]
    if missing or models.puzzle is None:
        print(f"sage-ros demo: note: no TinyVAE {missing} bundle(s)" * bool(missing)
              + " / no VisionPuzzleVAE bundle" * (models.puzzle is None) + "; running the rest")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag_out = out / "replay_bag"
    if bag_out.exists():  # our own output of an earlier run (a recorder refuses to overwrite a bag)
        shutil.rmtree(bag_out)
    options = ReplayOptions(rate=args.rate, start_offset=args.start_offset, backend=args.backend,
                            transport=args.transport)
    env = child_env(args.domain_id, args.large_data)
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_BUILTIN_TRANSPORTS"):  # our graph probe: same DDS set-up
        if key in env:
            os.environ[key] = env[key]
    with ProcessGroup(out / "logs", env) as group:
        result = run_replay(Path(bag_in), bag_out, encoders, group, options,
                            on_phase=lambda text: print(f"[{time.monotonic() - started:5.1f} s] {text}", flush=True))
    print(f"[{time.monotonic() - started:5.1f} s] replay done; reading {bag_out}", flush=True)
    recording = read_recording(bag_out, [e.output_topic for e in encoders], options.input_topic)
    summary = summarize(recording, encoders, result, options)
    summary["bundles"] = size_table(models.found)
    sheet = out / "contact_sheet.png"
    summary["contact_sheet_frames"] = contact_sheet(sheet, recording, encoders, rows=args.rows)
    summary["contact_sheet"] = str(sheet)
    summary["wall_s"]["total"] = round(time.monotonic() - started, 2)
    text = summary_text(summary) + f"\ncontact sheet: {sheet}; bag: {bag_out}; wall time {summary['wall_s']['total']:.1f} s"
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.txt", text + "\n")
    if args.update_docs:
        with atomic_path(REPO / "docs" / "demo_contact_sheet.png", suffix=".png") as tmp:
            shutil.copyfile(sheet, tmp)
        print(f"copied the contact sheet to {REPO / 'docs' / 'demo_contact_sheet.png'}")
    print(text, flush=True)
    return 0
