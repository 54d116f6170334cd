"""The encoder node: camera frames in, VAE latents (or puzzle code grids) out, as a ROS 2 lifecycle node.

One class serves every bundle; the executables `tinyvae_encoder` and `puzzle_encoder` only preset the node
name and the default bundle. Lifecycle (as yolo_ros): configure loads + verifies the bundle and creates the
backend and publishers; activate warms the backend up and subscribes; deactivate unsubscribes, stops the
worker and drops pending frames; cleanup closes the backend. With `autostart` (default) the node walks
itself to active, since a bare `ros2 run` has no lifecycle manager; a robot's manager can still drive it.

Threads: the executor thread only stores each message in its camera's slot (latest frame wins); one worker
thread decodes, encodes (one batched backend call for every camera with a pending frame) and publishes.
Nothing queues, so latency never grows; every overwritten frame is counted as dropped.

Imports: no torch here or below (runtime/ is torch-free; the torch backend imports it only when chosen).
"""
from __future__ import annotations

import sys
import threading
import time
from functools import partial
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from sage_ros.ros import params as P
from sage_ros.ros.cameras import PRESETS, Camera, resolve_bundle
from sage_ros.ros.compat import watch_publishers
from sage_ros.ros.diagnostics import EncoderStats, diagnostic_array, encoder_info
from sage_ros.ros.graph_check import PublisherCheck, output_beside
from sage_ros.ros.info import AckWatch, info_qos, info_topic
from sage_ros.ros.encoding import (ImageConversionError, LatestFrameSlots, Pending, admission_error,
                                   decode_batch, decode_min_size, drop_implausible, encode_prepared,
                                   frame_from_message, output_messages, reconstruction_messages)
from sage_ros.ros.qos import input_qos, output_qos, publisher_events, subscription_events
from sage_ros.ros.worker import RatePacer, SupervisedWorker
from sage_ros.runtime.backends import BackendError, make_backend
from sage_ros.runtime.bundle import BundleError, load_bundle
from sage_ros.runtime.latent_info import info_json, model_info
from sage_ros.runtime.preprocess import Preprocessor
from sage_ros.runtime.telemetry import (batch_telemetry, bundle_fields, source_hw, telemetry_images, telemetry_topic,
                                        warm_decoder)

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
LIVE_PARAMS = ("crop_mode", "max_rate", "publish_reconstruction", "max_input_pixels", "publish_telemetry",
               "telemetry_decode")  # applied while running
THROTTLE_S = 5.0  # at most one log line per cause and call site this often
INFO_ACK_S = 1.0  # longest wait (in total, per change, off the frame path) for subscribers to acknowledge an info


class EncoderNode(LifecycleNode):
    def __init__(self, preset: str = "tinyvae", node_name: str | None = None, **node_kwargs):
        self.preset = preset
        self._live = {name: P.SPECS[name].default for name in LIVE_PARAMS}
        self._pacer = RatePacer(lambda: self._live["max_rate"])  # a max_rate change wakes the waiting worker
        super().__init__(node_name or PRESETS[preset].node_name, **node_kwargs)
        # Registered before declaring, so command-line / parameter-file values are validated at start too.
        self.add_on_set_parameters_callback(self._on_set_parameters)
        P.declare_parameters(self)
        self.stats = EncoderStats()
        self.bundle = None
        self.backend = None
        self.cameras: list[Camera] = []
        self._preprocessor: Preprocessor | None = None
        self._slots: LatestFrameSlots | None = None
        self._stop = threading.Event()
        self._supervisor = SupervisedWorker(self._work, self._stop, self._worker_crashed)  # restarts a dead loop
        self._active = False
        self._compressed = False
        self._model_lock = threading.Lock()  # the worker's batch vs a live bundle change (see _swap_bundle)
        self._info_text = ""  # the <output>/info JSON last published
        self._info_key: tuple = ()  # (bundle, crop_mode) it describes
        self._acks = AckWatch(self.get_logger(), INFO_ACK_S)
        self._input_check: PublisherCheck | None = None  # mistyped input topics (made on activate)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(self._param("diagnostics_period"), self.publish_diagnostics)

    @property
    def _worker(self) -> threading.Thread | None:
        return self._supervisor.thread

    def _param(self, name: str) -> Any:
        return P.coerce(name, self.get_parameter(name).value)

    def _on_set_parameters(self, params):
        result = P.on_set_parameters(params)
        for param in params if result.successful else ():
            # configured: swap now; else configure reads it (also while declaring, before __init__ set backend)
            if param.name == "bundle" and getattr(self, "backend", None) is not None:
                reason = self._swap_bundle(param.value)
                if reason:  # refused: the old bundle keeps running; the reason also goes to /diagnostics
                    result.successful, result.reason = False, reason
                    self.stats.error(f"bundle change refused: {reason}")
                    self.get_logger().warning(f"bundle change refused: {reason}")
        if result.successful:
            for param in params:
                if param.name in LIVE_PARAMS:
                    self._live[param.name] = P.coerce(param.name, param.value)
            self._pacer.notify()
        return result

    # --- lifecycle ------------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        # rclpy turns an exception in a transition callback into a silent ERROR: report it here instead.
        try:
            self._configure()
        except (BundleError, BackendError, ValueError, OSError, ImportError) as err:
            self.get_logger().error(f"cannot configure: {err}")
            self._release_backend()
            return FAILURE
        return super().on_configure(state)

    def _configure(self) -> None:
        self.bundle = load_bundle(resolve_bundle(self._param("bundle"), self.preset))
        self.backend = make_backend(self.bundle, self._param("backend"), self._param("device"),
                                    **self._backend_options())
        kind = "puzzle" if self.bundle.is_vq else "latent"
        transport = self._param("input_transport")
        self._compressed = transport == "compressed"
        self.cameras = []
        recon = "puzzle_reconstruction" if self.bundle.is_vq else "reconstruction"
        for topic in self._param("image_topics"):
            # outputs beside the input as resolved: `-r image:=/camera/image_raw` -> /camera/latent (graph_check.py)
            input_topic = topic + "/compressed" if self._compressed else topic
            self.cameras.append(Camera(
                image_topic=topic, input_topic=input_topic,
                output_topic=output_beside(self, input_topic, kind, self._compressed),
                reconstruction_topic=output_beside(self, input_topic, recon, self._compressed)))
        for camera in self.cameras:
            camera.publisher = self.create_lifecycle_publisher(
                Image, camera.output_topic, output_qos(),
                event_callbacks=publisher_events(self.get_logger(), camera.output_topic))
            # beside the output as remapped (`-r latent:=x` moves the info to x/info too)
            camera.info_publisher = self.create_lifecycle_publisher(
                String, info_topic(self.resolve_topic_name(camera.output_topic)), info_qos())
            camera.telemetry_publisher = self.create_lifecycle_publisher(
                Image, telemetry_topic(self.resolve_topic_name(camera.output_topic)), output_qos())
        info = self.backend.describe()
        self.get_logger().info(
            f"configured: {self.bundle.name} ({self.bundle.architecture}, {self.bundle.precision}) from "
            f"{self.bundle.path} on {info.get('backend')} {info.get('device')} "
            + (f"(device {info['requested_device']} asked for, not available) " if "requested_device" in info else "")
            + f"{info.get('providers', '')}; {[self.resolve_topic_name(c.input_topic) for c in self.cameras]} -> "
            f"{[self.resolve_topic_name(c.output_topic) for c in self.cameras]}")

    def _backend_options(self) -> dict:
        threads = self._param("intra_op_threads")
        backend = self._param("backend")
        if backend in ("auto", "onnxruntime"):
            return {"intra_op_threads": threads}
        return {"threads": threads} if backend == "torch" else {}

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            started = time.perf_counter()
            for batch_size in sorted({1, len(self.cameras)}):  # both batch shapes the worker will use most
                self.backend.warmup(batch_size=batch_size)
            warm_decoder(self.backend, self._live["publish_telemetry"], self._live["telemetry_decode"])
            self.get_logger().info(f"backend warm in {time.perf_counter() - started:.2f} s")
        except BackendError as err:
            self.get_logger().error(f"cannot activate: backend warm-up failed: {err}")
            return FAILURE
        result = super().on_activate(state)  # enables the lifecycle publishers
        self._publish_info(self._live["crop_mode"], force=True)  # latched: late subscribers get it at once
        self._slots = LatestFrameSlots(len(self.cameras))
        message_type = CompressedImage if self._compressed else Image
        qos = input_qos(self._param("qos_reliability"), self._param("qos_depth"))
        for index, camera in enumerate(self.cameras):
            events = subscription_events(self.get_logger(), camera.input_topic,
                                         on_matched=partial(self._on_matched, camera),
                                         on_lost=partial(self.stats.add, "lost"),
                                         reliable=self._param("qos_reliability") == "reliable")
            camera.subscription = self.create_subscription(
                message_type, camera.input_topic, partial(self._on_frame, index), qos, event_callbacks=events)
            camera.publisher_watch = watch_publishers(self, camera.subscription, events,
                                                      period=min(self._param("diagnostics_period"), 0.5))
        self._input_check = PublisherCheck(self, [(self.resolve_topic_name(c.input_topic), "sensor_msgs/msg/" + (
            "CompressedImage" if self._compressed else "Image")) for c in self.cameras],
            exclude=[self.resolve_topic_name(t) for c in self.cameras for t in (c.output_topic, c.reconstruction_topic)])
        self._stop.clear()
        self._supervisor.start()
        self._active = True
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_running()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_backend()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_running()
        self._release_backend()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_running()
        self._release_backend()
        return SUCCESS  # back to unconfigured; a manager may configure again

    def _stop_running(self) -> None:
        self._active = False
        self._stop.set()
        if self._slots is not None:
            self._slots.wake()
        self._supervisor.join(timeout=5.0)
        for camera in self.cameras:
            if camera.publisher_watch is not None:
                camera.publisher_watch.destroy()
                camera.publisher_watch = None
            if camera.subscription is not None:
                self.destroy_subscription(camera.subscription)
                camera.subscription = None
        if self._slots is not None:
            self._slots.clear()
            self._slots = None

    def _release_backend(self) -> None:
        for camera in self.cameras:
            for publisher in (camera.publisher, camera.reconstruction_publisher, camera.info_publisher,
                              camera.telemetry_publisher):
                if publisher is not None:
                    self.destroy_lifecycle_publisher(publisher)
        self.cameras = []
        if self.backend is not None:
            self.backend.close()
        self.backend, self.bundle, self._preprocessor = None, None, None

    def autostart(self) -> bool:
        """configure + activate; False (after logging why) if either fails."""
        if self.trigger_configure() != SUCCESS:
            self.get_logger().fatal("configure failed (see above); exiting")
            return False
        if self.trigger_activate() != SUCCESS:
            self.get_logger().fatal("activate failed (see above); exiting")
            return False
        return True

    # --- data path ------------------------------------------------------------------------------------------

    def _on_frame(self, camera: int, msg) -> None:
        # Validate before the slot: a malformed or oversized frame must never evict a good one (issue #11).
        self.stats.add("received")
        reason = admission_error(msg, compressed=self._compressed, max_pixels=self._live["max_input_pixels"])
        if reason is not None:
            self._bad_frame(camera, reason)
            return
        slots = self._slots
        if slots is not None and slots.put(camera, Pending(msg, time.monotonic())):
            self.stats.add("dropped")

    def _bad_frame(self, camera: int, reason: str) -> None:
        topic = self.cameras[camera].input_topic if camera < len(self.cameras) else str(camera)
        self.stats.error(f"bad frame on {topic}: {reason}", "bad_frames")
        self.get_logger().warning(f"bad frame on '{topic}': {reason}", throttle_duration_sec=THROTTLE_S)

    def _on_matched(self, camera: Camera, count: int) -> None:
        camera.publishers_matched = count

    def _worker_crashed(self, text: str) -> None:  # any end of the worker loop: ERROR, counted, restarted
        self.stats.error(text.split("\n")[0], "worker_restarts")
        self.get_logger().error(text, throttle_duration_sec=THROTTLE_S)

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._pacer.wait(self._stop):  # max_rate: frames arriving meanwhile overwrite their slot (drops)
                continue
            slots = self._slots
            batch = slots.take(timeout=0.1) if slots is not None else []
            if not batch or self._stop.is_set():
                continue
            self._pacer.started()
            try:
                with self._model_lock:
                    self.process(batch)
            except Exception as err:  # noqa: BLE001 - the worker must outlive any single bad batch
                self.stats.error(f"{type(err).__name__}: {err}")
                self.get_logger().error(f"encoding failed: {type(err).__name__}: {err}",
                                        throttle_duration_sec=THROTTLE_S)

    def _frames(self, batch: list[tuple[int, Pending]]) -> tuple[list, list]:
        """Decode every pending message; bad ones are counted and logged (throttled), never encoded."""
        decode = partial(frame_from_message, compressed=self._compressed,
                         min_size=decode_min_size(self.bundle, self._live["crop_mode"]),
                         max_pixels=self._live["max_input_pixels"])
        frames, kept, bad, superseded = decode_batch(batch, decode)
        for camera, reason in bad:
            self._bad_frame(camera, reason)
        self.stats.add("dropped", -superseded)  # counted dropped when superseded; encoded after all
        return frames, kept

    def process(self, batch: list[tuple[int, Pending]]) -> None:
        """Encode one batch of pending frames (one per camera) and publish the results."""
        frames, kept = self._frames(batch)
        if not frames:
            return
        preprocessor = self._current_preprocessor()
        self._publish_info(preprocessor.crop_mode)  # a new crop mode or model: its info before its first latent
        started = time.perf_counter()
        try:
            prepared, outputs = encode_prepared(self.backend, preprocessor, frames, [camera for camera, _ in kept])
        except (BackendError, ImageConversionError) as err:
            self.stats.error(f"inference: {err}")
            self.get_logger().error(f"inference failed: {err}", throttle_duration_sec=THROTTLE_S)
            return
        inference_s = time.perf_counter() - started
        outputs, rows, refused = drop_implausible(outputs)
        for row, reason in refused.items():  # counted as errors, never published as valid latents
            self.stats.error(f"encoder output on {self.cameras[kept[row][0]].input_topic}: {reason}")
            self.get_logger().error(f"not publishing: {reason}", throttle_duration_sec=THROTTLE_S)
        if refused:  # telemetry reads the same rows as the latents
            kept, frames, prepared = [kept[r] for r in rows], [frames[r] for r in rows], prepared.subset(rows)
        if not kept:
            return
        headers = [pending.msg.header for _, pending in kept]
        messages = output_messages(outputs, headers)
        for (camera, pending), message in zip(kept, messages):
            if self._publish(self.cameras[camera].publisher, message):
                self.stats.add("published")
                self.stats.observe(time.monotonic() - pending.received, inference_s)
        if self._live["publish_telemetry"]:
            self._publish_telemetry(kept, frames, prepared, outputs, headers, inference_s)
        if self._live["publish_reconstruction"]:
            self._publish_reconstructions(kept, outputs, headers)

    def _publish_telemetry(self, kept, frames, prepared, outputs, headers, inference_s: float) -> None:
        """<output>/telemetry for every latent of the batch (runtime/telemetry.py), with the latent's header."""
        try:
            rows = batch_telemetry(self.backend, prepared, outputs, frames_hw=[frame.shape[:2] for frame in frames],
                                   sources_hw=[source_hw(pending.msg, self._compressed) for _, pending in kept],
                                   encode_s=inference_s, received=[pending.received for _, pending in kept],
                                   decode=not self.bundle.is_vq or self._live["telemetry_decode"])
            messages = telemetry_images(rows, bundle_fields(self.bundle), headers)
        except (BackendError, ImageConversionError, ValueError) as err:  # the latents went out; only telemetry lost
            self.stats.error(f"telemetry: {err}")
            self.get_logger().error(f"telemetry failed: {err}", throttle_duration_sec=THROTTLE_S)
            return
        for (camera, _), message in zip(kept, messages):
            self._publish(self.cameras[camera].telemetry_publisher, message)

    def _publish_reconstructions(self, kept, outputs, headers) -> None:
        try:
            images = reconstruction_messages(self.backend, outputs, headers)
        except BackendError as err:
            self.stats.error(f"decoder: {err}")
            self.get_logger().error(f"reconstruction failed: {err}", throttle_duration_sec=THROTTLE_S)
            return
        for (camera_index, _), image in zip(kept, images):
            camera = self.cameras[camera_index]
            if camera.reconstruction_publisher is None:  # created on first use: it is off by default
                camera.reconstruction_publisher = self.create_lifecycle_publisher(
                    Image, camera.reconstruction_topic, output_qos(depth=2))
                camera.reconstruction_publisher.on_activate(None)
            self._publish(camera.reconstruction_publisher, image)

    def _current_preprocessor(self) -> Preprocessor:
        crop_mode = self._live["crop_mode"]
        if self._preprocessor is None or self._preprocessor.crop_mode != crop_mode:
            self._preprocessor = Preprocessor.from_bundle(self.bundle, crop_mode)
        return self._preprocessor

    # --- model identity (<output>/info) and live bundle changes --------------------------------------------------

    def _publish_info(self, crop_mode: str, force: bool = False) -> None:
        """Publish the info JSON on every camera's <output>/info when it differs from the last one (or `force`),
        before the first latent the new model or crop mode makes. Acknowledgements are awaited off the frame path
        (AckWatch: at most INFO_ACK_S in total, a WARN when a subscriber did not acknowledge): each latent carries
        its model's fingerprint, so a consumer with a late info holds the latent rather than misreading it."""
        if (self.bundle, crop_mode) == self._info_key and not force:  # the per-batch call costs one comparison
            return
        text = info_json(model_info(self.bundle, crop_mode))
        published = [camera.info_publisher for camera in self.cameras
                     if camera.info_publisher is not None and self._publish(camera.info_publisher, String(data=text))]
        self._info_text, self._info_key = text, (self.bundle, crop_mode)
        if published:
            self._acks.watch(published, f"{self.bundle.name} ({crop_mode})")

    def _swap_bundle(self, value: str) -> str | None:
        """The `bundle` parameter changed while configured: load, check and warm the new bundle up, then replace the
        old one between two batches (its info goes out before the new model's first latent). None when done, else
        why not (the old bundle keeps running)."""
        try:
            bundle = load_bundle(resolve_bundle(value, self.preset))
        except BundleError as err:
            return f"bundle: {err}"
        if bundle.is_vq != self.bundle.is_vq:
            return (f"bundle: {bundle.name} ({bundle.architecture}) publishes on a different topic than "
                    f"{self.bundle.name} ({self.bundle.architecture}); deactivate, cleanup, set bundle, configure")
        try:
            backend = make_backend(bundle, self._param("backend"), self._param("device"), **self._backend_options())
            for batch_size in sorted({1, len(self.cameras)}):
                backend.warmup(batch_size=batch_size)
            warm_decoder(backend, self._live["publish_telemetry"], self._live["telemetry_decode"])
        except (BackendError, ValueError, OSError, ImportError) as err:
            return f"bundle: cannot start {bundle.name}: {err}"
        with self._model_lock:  # the worker finishes its batch (old model) first
            old = self.backend
            self.bundle, self.backend, self._preprocessor = bundle, backend, None
            if self._active:
                self._publish_info(self._live["crop_mode"])
        old.close()
        self.get_logger().info(f"bundle changed: now {bundle.name} ({bundle.architecture}, {bundle.precision}) "
                               f"from {bundle.path}")
        return None

    def _publish(self, publisher, message) -> bool:
        # Publishing can fail (RCLError) under load or while shutting down: count it and go on.
        try:
            publisher.publish(message)
            return True
        except RuntimeError as err:  # rclpy's RCLError is a RuntimeError
            self.stats.error(f"publish: {err}", "publish_errors")
            self.get_logger().warning(f"publish failed: {err}", throttle_duration_sec=THROTTLE_S)
            return False

    # --- diagnostics ----------------------------------------------------------------------------------------

    def diagnostics_info(self) -> dict[str, str]:
        return encoder_info(self)

    def publish_diagnostics(self) -> None:
        self._supervisor.check(self._active)  # a worker thread that ended anyway: ERROR, counted, restarted
        info = self.diagnostics_info()
        check = self._input_check if self._active else None
        missing = check.poll() if check is not None else {}
        no_publisher = "; ".join(f"no publisher on {topic}" + (f" (similar: {', '.join(m)})" if m else "")
                                 for topic, m in missing.items())
        array = diagnostic_array(self.stats.snapshot(), name=f"{self.get_fully_qualified_name()}: encoder",
                                 hardware_id=info.get("device", self._param("device")), info=info,
                                 active=self._active, stamp=self.get_clock().now().to_msg(), no_publisher=no_publisher)
        try:
            self._diagnostics_pub.publish(array)
        except RuntimeError as err:
            self.get_logger().warning(f"diagnostics publish failed: {err}", throttle_duration_sec=THROTTLE_S)


def main(args: list[str] | None = None, preset: str = "tinyvae") -> int:
    """Run one encoder node until Ctrl-C / SIGTERM. Exit codes: 0 ok, 1 configure/activate failed (autostart),
    2 invalid parameters (or arguments rclpy cannot parse, e.g. a missing --params-file)."""
    from sage_ros.ros.run import run_node

    return run_node(PRESETS[preset].node_name, lambda: EncoderNode(preset), args,
                    start=lambda node: not node.get_parameter("autostart").value or node.autostart(),
                    close=lambda node: node.on_shutdown(None))


def main_tinyvae(args: list[str] | None = None) -> int:
    return main(args, "tinyvae")


def main_puzzle(args: list[str] | None = None) -> int:
    return main(args, "puzzle")


if __name__ == "__main__":
    sys.exit(main())
