"""Reading the recorded bag back: input stamps and log times, every output with the info that says which model
made it (sage_ros.runtime.consumer), /diagnostics, and the input frames a picture needs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .common import DIAGNOSTICS_TOPIC, RAW_TOPIC


# --- reading the recording back --------------------------------------------------------------------------------

@dataclass
class Recording:
    """What the recorder wrote, keyed by header stamp (ns). Log times are the recorder's receive times."""
    input_log_ns: dict = field(default_factory=dict)  # stamp -> log time of the source frame
    input_frame_ids: dict = field(default_factory=dict)  # stamp -> frame_id
    outputs: dict = field(default_factory=dict)  # topic -> list of (stamp, frame_id, log time, {"mu",..}|{"codes"})
    infos: dict = field(default_factory=dict)  # topic -> LatentInfo from its recorded <topic>/info (the last one)
    latents: dict = field(default_factory=dict)  # topic -> {stamp: Latent} checked against that info
    telemetry: dict = field(default_factory=dict)  # topic -> {stamp: {field: value}} from <topic>/telemetry
    diagnostics: dict = field(default_factory=dict)  # status name -> key/values of its last message
    bag: Path | None = None
    input_topic: str = RAW_TOPIC


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def read_recording(bag: Path, output_topics: list[str], input_topic: str = RAW_TOPIC) -> Recording:
    """Everything the demo needs from its recorded bag. Outputs whose `<topic>/info` was recorded (`bag record` adds
    it) are read through the consumer API, checked against that info (InfoMismatch names any disagreement), and
    kept as Latents in `latents` too; others are read without a check. Each output's recorded `<topic>/telemetry`
    (which `bag record` adds) is read by the field names its info lists, into `telemetry`."""
    from sage_ros.bag.common import open_reader, typestore
    from sage_ros.runtime.consumer import LatentInfo, latent_from_message
    from sage_ros.runtime.messages import image_to_output
    from sage_ros.runtime.telemetry import TELEMETRY_SUFFIX, telemetry_from_message

    store = typestore()
    recording = Recording(outputs={topic: [] for topic in output_topics}, bag=Path(bag), input_topic=input_topic,
                          latents={topic: {} for topic in output_topics},
                          telemetry={topic: {} for topic in output_topics})
    reader = open_reader(bag)
    try:
        info_connections = [c for c in reader.connections if c.topic[:-len("/info")] in recording.outputs
                            and c.topic.endswith("/info")]
        for conn, _, data in reader.messages(connections=info_connections):
            recording.infos[conn.topic[:-len("/info")]] = LatentInfo.parse(store.deserialize_cdr(data, conn.msgtype).data)
        for conn, log_ns, data in reader.messages():
            if conn.topic == input_topic:
                header = _deserialize_header(data)
                recording.input_log_ns[header[0]] = log_ns
                recording.input_frame_ids[header[0]] = header[1]
            elif conn.topic in recording.outputs:
                msg = store.deserialize_cdr(data, conn.msgtype)
                info = recording.infos.get(conn.topic)
                if info is None:
                    output = image_to_output(msg)
                else:
                    latent = recording.latents[conn.topic][_stamp_ns(msg.header)] = latent_from_message(msg, info)
                    output = {"codes": latent.codes} if info.is_puzzle else {"mu": latent.mu, "logvar": latent.logvar}
                recording.outputs[conn.topic].append((_stamp_ns(msg.header), msg.header.frame_id, log_ns, output))
            elif conn.topic.endswith(TELEMETRY_SUFFIX) and conn.topic[:-len(TELEMETRY_SUFFIX)] in recording.outputs:
                topic = conn.topic[:-len(TELEMETRY_SUFFIX)]
                if topic in recording.infos:  # field names come from the info; without it the values mean nothing
                    msg = store.deserialize_cdr(data, conn.msgtype)
                    values = telemetry_from_message(msg, recording.infos[topic])
                    recording.telemetry[topic][_stamp_ns(msg.header)] = values
            elif conn.topic == DIAGNOSTICS_TOPIC:
                msg = store.deserialize_cdr(data, conn.msgtype)
                for status in msg.status:
                    recording.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}
    finally:
        reader.close()
    return recording


def _deserialize_header(data) -> tuple[int, str]:
    """(stamp ns, frame_id) of a serialized sensor_msgs/Image without copying its 1.3 MB of pixels.

    Hand-written because rosbags deserializes the whole message; CDR layout of the leading Header:
    4-byte encapsulation, int32 sec, uint32 nanosec, uint32 length (incl. NUL) + frame_id bytes."""
    view = memoryview(data)
    order = "<" if view[1] == 1 else ">"  # encapsulation CDR_LE = 0x0001, CDR_BE = 0x0000
    sec, nanosec, length = np.frombuffer(view[4:16], dtype=np.dtype(f"{order}u4"))
    sec = int(np.int32(np.uint32(sec)))
    frame_id = bytes(view[16:16 + int(length) - 1]).decode()
    return sec * 1_000_000_000 + int(nanosec), frame_id


def read_input_frames(bag: Path, stamps: set[int], topic: str = RAW_TOPIC) -> dict[int, np.ndarray]:
    """Recorded input frames (uint8 RGB, full size) with these header stamps, from a raw or JPEG topic."""
    from sage_ros.bag.common import open_reader, typestore
    from sage_ros.runtime.image_codec import decode_compressed, image_msg_to_rgb8

    store, frames = typestore(), {}
    reader = open_reader(bag)
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        for conn, _, data in reader.messages(connections=connections):
            if _deserialize_header(data)[0] in stamps:
                msg = store.deserialize_cdr(data, conn.msgtype)
                to_rgb = decode_compressed if conn.msgtype.endswith("CompressedImage") else image_msg_to_rgb8
                frames[_stamp_ns(msg.header)] = to_rgb(msg).copy()
    finally:
        reader.close()
    return frames
