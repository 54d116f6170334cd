"""Names every part of `sage-ros demo` shares: the repository, topics, markers and the error type."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAW_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = RAW_TOPIC + "/compressed"  # the whole video as JPEG (79.5 s, 795 frames)
DIAGNOSTICS_TOPIC = "/diagnostics"
TINYVAE_PRECISIONS = ("fp32", "int8", "int4")  # the contact sheet's reconstruction columns, in this order
ENCODER_READY_LOG = "backend warm"  # the encoder node logs this once it is active
UNTRAINED_MARK = "untrained"  # in a bundle's name or metrics note: seeded test bundles, never shipped


class DemoError(RuntimeError):
    """Something the demo needs is missing or a step failed; the message says which and what to do."""
