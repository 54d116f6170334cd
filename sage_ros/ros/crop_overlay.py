"""The latent_decoder's optional crop overlay: the camera frame with the latent's reconstruction drawn where the
model looked (the crop window its `<output>/telemetry` reports) and that window outlined, on
`<parent>/reconstruction_overlay` (rgb8, the frame's size, the latent's header).

Off by default; on for a latent topic when the decoder's `frame_topics` names that camera's raw image topic. The
frame, the telemetry and the decoded latent are joined by header stamp (runtime/consumer.StampJoiner; frames that
never get a latent are evicted, bounded). Only raw `sensor_msgs/Image` frames: this is for an operator's screen.
"""
from __future__ import annotations

from typing import Any, Callable

from sensor_msgs.msg import Image

from sage_ros.ros.qos import output_qos
from sage_ros.runtime.consumer import StampJoiner, stamp_ns
from sage_ros.runtime.image_codec import ImageConversionError, image_msg_to_rgb8, image_to_numpy, numpy_to_image
from sage_ros.runtime.telemetry import TelemetryError, overlay_reconstruction, telemetry_from_message, telemetry_topic

OVERLAY_NAME = "reconstruction_overlay"


class CropOverlay:
    """Subscribes `frame_topic` and `<latent_topic>/telemetry` on `node`; `add_reconstruction(header, image_msg)`
    hands it each decoded latent. `info()` returns the stream's current LatentInfo (field names). `qos`: the
    decoder's latent subscription QoS (qos_reliability, qos_depth), used for frames and telemetry too."""

    def __init__(self, node, latent_topic: str, frame_topic: str, output_topic: str, info: Callable[[], Any],
                 qos: Any = 10):
        self.node, self.info = node, info
        self.joiner = StampJoiner(("reconstruction", "telemetry", "frame"), capacity=30)
        self.counts = {"published": 0, "errors": 0}
        self.last_error = ""
        self.output_topic = output_topic
        self.publisher = node.create_publisher(Image, output_topic, output_qos(depth=2))
        self.subscriptions = [
            node.create_subscription(Image, frame_topic, self._on_frame, qos),
            node.create_subscription(Image, telemetry_topic(node.resolve_topic_name(latent_topic)),
                                     self._on_telemetry, qos)]

    def _on_frame(self, msg: Image) -> None:
        self._use(self.joiner.add("frame", stamp_ns(msg.header), msg))

    def _on_telemetry(self, msg: Image) -> None:
        self._use(self.joiner.add("telemetry", stamp_ns(msg.header), msg))

    def add_reconstruction(self, header: Any, image: Image) -> None:
        self._use(self.joiner.add("reconstruction", stamp_ns(header), image))

    def _use(self, joined: dict | None) -> None:
        if joined is None:
            return
        try:
            info = self.info()
            if info is None:
                raise TelemetryError("no info yet")
            values = telemetry_from_message(joined["telemetry"], info)
            frame = image_msg_to_rgb8(joined["frame"])
            overlay = overlay_reconstruction(frame, image_to_numpy(joined["reconstruction"]), values)
            self.publisher.publish(numpy_to_image(overlay, "rgb8", header=joined["reconstruction"].header))
            self.counts["published"] += 1
        except (TelemetryError, ImageConversionError, ValueError, RuntimeError) as err:
            self.counts["errors"] += 1
            self.last_error = str(err)
            self.node.get_logger().warning(f"crop overlay on '{self.output_topic}': {err}",
                                           throttle_duration_sec=5.0)
