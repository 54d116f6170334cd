"""Every encoder-node parameter, declared in one place.

`PARAMS` is plain data so that the launch/config test can validate `config/perception.yaml` without a ROS
graph; `declare_parameters` turns it into ROS declarations with descriptors (description, ranges,
read_only), and `validate` is the one check used at start (declaration) and on every change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from sage_ros.runtime.settings import BACKENDS, CROP_MODES, DEFAULT_MAX_PIXELS

# Bundle each executable loads when `bundle` is empty: directory names under the shipped models/
# (share/sage_ros/models). fp32: onnxruntime runs TinyVAE's int8 QDQ graph slower than fp32 on a CPU, fp32
# puzzle codes are exactly the evaluated model's, and TensorRT builds an FP16 engine from fp32 ONNX on a Jetson
# (docs/ros.md). TinyVAE: the TinyVAELinSkip variant, which ties the seed on the test crops and beats it by ~3 dB on
# photographs of a family no model trained on (README, models/reports/lofo/). Kept here (no rclpy) so bench/ and
# the tests read the same names.
DEFAULT_BUNDLES = {"tinyvae": "tinyvae_linskip_l64_fp32", "puzzle": "puzzle_l64_fp32"}
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# ROS 2 topic-name tokens (design article "Topic and Service name mapping"): no empty tokens, no
# leading digit, [A-Za-z0-9_] only; a leading "/" makes the name absolute, "~" means the node's name.
_TOPIC = re.compile(r"^(/|~/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any  # its Python type is the ROS type (bool, int, float, str, list[str])
    description: str
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    read_only: bool = False  # True where a change needs a reconfigure (the node reads it at configure)

    @property
    def ros_type(self) -> type:
        return list if isinstance(self.default, list) else type(self.default)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("bundle", "", "Model bundle directory (bundle.json + encoder.onnx + decoder.onnx). A bare name is "
              "also looked up in the shipped models (share/sage_ros/models/). Empty: this executable's default "
              "bundle. Changing it on a configured node loads, checks and warms the new bundle up, then swaps it in "
              "between two frames and publishes the new <output>/info before its first latent (a bundle of the other "
              "kind, latent vs puzzle, needs a cleanup + configure); a bundle that fails to load is rejected and "
              "the old one keeps running."),
    ParamSpec("backend", "auto", "Inference backend: auto = tensorrt if it imports with a GPU, else onnxruntime "
              "(CUDA/TensorRT execution providers when present, else CPU); torch is the reference.",
              choices=BACKENDS, read_only=True),
    ParamSpec("device", "auto", "Device for the backend: auto (cuda:0 when TensorRT or onnxruntime can reach a GPU, "
              "else cpu), cpu, cuda or cuda:N.", read_only=True),
    ParamSpec("image_topics", ["image"], "Input image topics (one node serves several cameras and batches frames "
              "that are pending together). Outputs go beside each input: <parent of topic>/latent (or puzzle, "
              "reconstruction). With input_transport=compressed the node subscribes <topic>/compressed.",
              read_only=True),
    ParamSpec("input_transport", "raw", "raw: sensor_msgs/Image on <topic>; compressed: "
              "sensor_msgs/CompressedImage on <topic>/compressed, decoded at reduced resolution.",
              choices=TRANSPORTS, read_only=True),
    ParamSpec("qos_reliability", "best_effort", "Input QoS reliability. best_effort (sensor data) matches every "
              "camera driver; reliable only matches reliable publishers.", choices=RELIABILITIES, read_only=True),
    ParamSpec("qos_depth", 5, "Input QoS history depth (keep last), as rclpy's sensor-data profile. The node "
              "still encodes only the newest frame (latest frame wins), so a deeper history adds no latency; with "
              "depth 1 the middleware itself replaces a good frame by a malformed one that follows it before the "
              "node can refuse the malformed one (measured: bench/input_depth.py).",
              int_range=(1, 100), read_only=True),
    ParamSpec("max_input_pixels", DEFAULT_MAX_PIXELS, "Most pixels (width x height) an input frame may have or, "
              "compressed, declare in its PNG/JPEG header; larger frames are refused before decoding and counted "
              "as bad_frames (decompression bombs). Default 4096 x 4096: every camera up to 16 MP.",
              int_range=(1, 1 << 30)),
    ParamSpec("crop_mode", "resize", "How a frame becomes the model input: resize (whole frame, area "
              "interpolation, as in training), center (centre square crop), letterbox (pad to square), motion "
              "(window around the peak of frame-difference energy).", choices=CROP_MODES),
    ParamSpec("max_rate", 0.0, "Most inferences per second (0 = as fast as frames come); frames in between are "
              "dropped (counted) rather than queued.", float_range=(0.0, 1000.0)),
    ParamSpec("publish_reconstruction", False, "Also decode each latent and publish it as rgb8 on "
              "'reconstruction' (TinyVAE family) or 'puzzle_reconstruction' (puzzle); costs a decoder run."),
    ParamSpec("publish_telemetry", True, "Publish <output>/telemetry beside every latent / puzzle: a 32FC1 1 x N "
              "Image with the latent's header holding the crop window in source pixels, reconstruction error, KL, "
              "SAGE's trust, timings (field names and units in <output>/info; docs/ros.md). For the TinyVAE family "
              "it costs one decoder run per frame."),
    ParamSpec("telemetry_decode", False, "Puzzle model only: also decode each grid for telemetry's recon_mse / "
              "recon_psnr_db (a 224 px decoder run per frame, several ms on a CPU); off: those fields are NaN. "
              "The TinyVAE family always decodes (trust needs the reconstruction error)."),
    ParamSpec("intra_op_threads", 1, "Threads for one inference (onnxruntime / torch); 0 = library default. "
              "1 keeps a sub-millisecond TinyVAE from competing with the camera driver for cores; more can help "
              "the 224 px puzzle model on a multi-core board.",
              int_range=(0, 64), read_only=True),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", float_range=(0.1, 60.0),
              read_only=True),
    ParamSpec("autostart", True, "Configure and activate at start (no lifecycle manager needed); false leaves "
              "the node unconfigured for a manager to drive through the lifecycle services.", read_only=True),
)
SPECS = {spec.name: spec for spec in PARAMS}

# The latent_decoder node (ros/decoder_node.py): latents + <output>/info in, rgb8 reconstructions out.
DECODER_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("latent_topics", ["latent"], "Latent (or puzzle) topics to decode, each with its latched <topic>/info. "
              "Images go beside each input: <parent of topic>/reconstruction (puzzle_reconstruction for puzzles).",
              read_only=True),
    ParamSpec("model_dirs", [""], "Extra directories holding bundles (<dir>/<bundle>/bundle.json), searched before "
              "the shipped models (share/sage_ros/models/); empty entries are ignored.", read_only=True),
    ParamSpec("match_by_name", True, "When no bundle has the info's encoder/decoder sha256, use a bundle with the "
              "info's model name (diagnostics then warn that its decoder differs from the robot's)."),
    ParamSpec("backend", "auto", "Inference backend for the decoder (as the encoders' backend parameter).",
              choices=BACKENDS, read_only=True),
    ParamSpec("device", "auto", "Device for the backend: auto, cpu, cuda or cuda:N.", read_only=True),
    ParamSpec("intra_op_threads", 1, "Threads for one decoder run (onnxruntime / torch); 0 = library default.",
              int_range=(0, 64), read_only=True),
    ParamSpec("qos_reliability", "best_effort", "Latent subscription reliability. best_effort matches every "
              "publisher (encoder nodes are reliable, `bag play` defaults to best effort); reliable only matches "
              "reliable publishers.", choices=RELIABILITIES, read_only=True),
    ParamSpec("qos_depth", 10, "Latent subscription history depth (keep last).", int_range=(1, 100), read_only=True),
    ParamSpec("hold_latents", 30, "Latents per topic made by a model whose <topic>/info has not arrived yet (each "
              "latent carries its model's fingerprint): held, oldest dropped first (counted), and decoded with the "
              "right bundle when that info arrives; 0 drops them at once. Never decoded with another model.",
              int_range=(0, 1000), read_only=True),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", float_range=(0.1, 60.0),
              read_only=True),
    ParamSpec("frame_topics", [""], "Per latent topic (same order), the raw camera image topic its encoder reads; "
              "non-empty: also publish <parent>/reconstruction_overlay, that camera frame with the reconstruction "
              "drawn into the crop window from <topic>/telemetry and the window outlined (joined by stamp). "
              "Empty entries (the default): off.", read_only=True),
)
DECODER_SPECS = {spec.name: spec for spec in DECODER_PARAMS}


def _type_error(spec: ParamSpec, value: Any) -> str | None:
    # ROS parameters are statically typed, except that the float ones are declared with dynamic_typing so that an
    # integer value reaches this check (then the range check) instead of rclpy's bare type error.
    expected = spec.ros_type
    if expected is bool or expected is int:
        ok = type(value) is expected
    elif expected is float:  # an integer is a valid double (`-p max_rate:=5`); a bool is not
        ok = type(value) in (float, int)
    elif expected is list:
        ok = isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)
    else:
        ok = isinstance(value, str)
    return None if ok else f"{spec.name} must be of type {expected.__name__}, got {type(value).__name__} {value!r}"


def validate(name: str, value: Any, specs: dict[str, ParamSpec] | None = None) -> str | None:
    """None if `value` is acceptable for parameter `name` (of the encoder, or of `specs`), else the reason."""
    specs = SPECS if specs is None else specs
    spec = specs.get(name)
    if spec is None:
        return f"unknown parameter {name!r}; known: {', '.join(specs)}"
    reason = _type_error(spec, value)
    if reason:
        return reason
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if spec.int_range and not spec.int_range[0] <= value <= spec.int_range[1]:
        return f"{name} must be in [{spec.int_range[0]}, {spec.int_range[1]}], got {value}"
    if spec.float_range and not (spec.float_range[0] <= value <= spec.float_range[1]):  # also catches NaN
        return f"{name} must be in [{spec.float_range[0]}, {spec.float_range[1]}], got {value}"
    if name == "device" and not _DEVICE.match(value):
        return f"device must be auto, cpu, cuda or cuda:N, got {value!r}"
    if name == "image_topics":
        return _topics_error(list(value))
    if name == "frame_topics":
        bad = [topic for topic in value if topic and not _TOPIC.match(topic)]
        if bad:
            return f"frame_topics has invalid topic names {bad}"
    if name == "latent_topics":
        bad = [topic for topic in value if not _TOPIC.match(topic)]
        if not value or bad or len(set(value)) != len(value):
            return f"latent_topics must be distinct valid topic names, at least one; got {list(value)}"
    return None


def _topics_error(topics: list[str]) -> str | None:
    if not topics:
        return "image_topics must name at least one topic"
    bad = [topic for topic in topics if not _TOPIC.match(topic)]
    if bad:
        return f"image_topics has invalid topic names {bad}"
    parents = [output_namespace(topic) for topic in topics]
    if len(set(parents)) != len(parents):
        return (f"image_topics {topics} would publish onto the same outputs; give each camera its own "
                "namespace (e.g. front/image_raw, rear/image_raw)")
    return None


def output_namespace(image_topic: str) -> str:
    """Outputs live beside their input, as image_pipeline does: '/cam/image_raw' -> '/cam/', 'image' -> ''."""
    return image_topic.rsplit("/", 1)[0] + "/" if "/" in image_topic else ""


def coerce(name: str, value: Any, specs: dict[str, ParamSpec] | None = None) -> Any:
    """The value the node uses: an integer given for a float parameter as a float (validate accepted it)."""
    spec = (SPECS if specs is None else specs).get(name)
    if spec is not None and spec.ros_type is float and type(value) is int:
        return float(value)
    return value


def validate_all(values: dict[str, Any], specs: dict[str, ParamSpec] | None = None) -> list[str]:
    """Reasons for every invalid entry of a parameter dict (unknown names included)."""
    return [reason for name, value in values.items() if (reason := validate(name, value, specs))]


def declare_parameters(node, defaults: dict[str, Any] | None = None, extra: Iterable[ParamSpec] = (),
                       params: Iterable[ParamSpec] = PARAMS) -> None:
    """Declare `params` (the encoder's PARAMS by default) on `node` (with per-executable `defaults`); overrides from
    the command line or a parameter file are validated by the node's on-set callback, registered before this."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    ros_types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                 float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
                 list: ParameterType.PARAMETER_STRING_ARRAY}
    defaults = defaults or {}
    for spec in (*params, *extra):
        descriptor = ParameterDescriptor(name=spec.name, type=ros_types[spec.ros_type], read_only=spec.read_only,
                                         description=spec.description)
        if spec.choices:
            descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
        if spec.int_range:
            descriptor.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1],
                                                     step=1)]
        if spec.ros_type is float:
            # accepts `-p max_rate:=5` (an INTEGER) at start and on change; on_set_parameters checks type and range
            descriptor.dynamic_typing = True
        if spec.float_range:
            descriptor.floating_point_range = [FloatingPointRange(from_value=spec.float_range[0],
                                                                  to_value=spec.float_range[1], step=0.0)]
        node.declare_parameter(spec.name, defaults.get(spec.name, spec.default), descriptor)


def on_set_parameters(params, specs: dict[str, ParamSpec] | None = None) -> "SetParametersResult":  # noqa: F821
    """add_on_set_parameters_callback body: reject any invalid value with its reason."""
    from rcl_interfaces.msg import SetParametersResult

    specs = SPECS if specs is None else specs
    for param in params:
        if param.name in specs:
            reason = validate(param.name, param.value, specs)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)
