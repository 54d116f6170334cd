"""Encoders on one or more cameras: TinyVAE latents and/or VisionPuzzleVAE code grids.

    ros2 launch sage_ros perception.launch.py camera:=/camera/image_raw
    ros2 launch sage_ros perception.launch.py camera:=/front/image_raw,/rear/image_raw encoders:=both \
        backend:=tensorrt large_data:=true
    ros2 launch sage_ros perception.launch.py encoders:=none decoder:=true    # operator machine: decoder only

Each encoder is one lifecycle node serving every camera given (frames pending together are encoded in one
batched call); outputs go beside each camera topic: /camera/latent, /camera/puzzle. The nodes configure and
activate themselves (parameter `autostart`, in params_file); a lifecycle manager can still drive them.
Launch arguments override params_file for the keys they name; params_file holds every other knob.
With decoder:=true a latent_decoder node (a plain node) turns the latents of those cameras back into images on
/camera/reconstruction (/camera/puzzle_reconstruction): beside the encoders, or alone (encoders:=none) on another
machine; it finds each model's bundle among the installed ones by the checksums in <latent topic>/info.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

# encoder choice -> (executable == node name, launch argument holding its bundle)
ENCODERS = {"tinyvae": ("tinyvae_encoder", "tinyvae_bundle"), "puzzle": ("puzzle_encoder", "puzzle_bundle")}
OUTPUT_KIND = {"tinyvae": "latent", "puzzle": "puzzle"}  # the topic each encoder publishes beside its camera
# (name, default, description, choices); defaults agree with sage_ros/ros/params.py (a test checks it).
ARGUMENTS = (
    ("camera", "/camera/image_raw", "Image topic(s) to encode, comma-separated for several cameras", None),
    ("namespace", "", "Namespace of the encoder nodes", None),
    ("encoders", "tinyvae", "Which encoders to run (none: only the decoder, e.g. on an operator machine)",
     ("tinyvae", "puzzle", "both", "none")),
    ("decoder", "false", "Also start latent_decoder: latents + <topic>/info in, rgb8 reconstruction out",
     ("true", "false")),
    ("latent_topics", "", "Topics the decoder decodes, comma-separated; empty: <camera namespace>/latent and/or "
     "/puzzle for the encoders chosen (both kinds with encoders:=none)", None),
    ("backend", "auto", "Inference backend", ("auto", "onnxruntime", "tensorrt", "torch")),
    ("device", "auto", "auto, cpu, cuda or cuda:N", None),
    ("input_transport", "raw", "raw (sensor_msgs/Image) or compressed (<camera>/compressed)", ("raw", "compressed")),
    ("tinyvae_bundle", "tinyvae_linskip_l64_fp32",
     "TinyVAE bundle: a directory, or the name of a shipped bundle in share/sage_ros/models", None),
    ("puzzle_bundle", "puzzle_l64_fp32",
     "VisionPuzzleVAE bundle: a directory, or the name of a shipped bundle in share/sage_ros/models", None),
    ("use_sim_time", "false", "Use /clock (bag replay)", ("true", "false")),
    ("large_data", "false", "Set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for the encoders (~4x lower latency for VGA "
     "frames with Fast DDS). Every other participant (camera driver, ros2 topic echo, rviz, bag recorder) must set it "
     "too: without it, it does not even discover the encoders", ("true", "false")),
    ("log_level", "info", "Node log level", ("debug", "info", "warn", "error", "fatal")),
)


LARGE_DATA_NOTE = (
    "large_data:=true: the encoders run with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA. Start EVERY participant that "
    "talks to them (camera driver, ros2 topic echo / bag record, rviz, latent_decoder) with "
    "`export FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA` too: a participant without it does not discover the encoders "
    "(no frames in, no latents out, no error). Fast DDS only (rmw_fastrtps_cpp); see docs/jetson.md.")


def _encoder_nodes(context):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    chosen = {"both": ("tinyvae", "puzzle"), "none": ()}.get(arg("encoders"), (arg("encoders"),))
    cameras = [topic.strip() for topic in arg("camera").split(",") if topic.strip()]
    nodes = []
    if arg("decoder") == "true":
        nodes.append(_decoder_node(arg, cameras, chosen or ("tinyvae", "puzzle")))
    for encoder in chosen:
        executable, bundle_argument = ENCODERS[encoder]
        overrides = {"image_topics": cameras, "bundle": arg(bundle_argument), "backend": arg("backend"),
                     "device": arg("device"), "input_transport": arg("input_transport"),
                     "use_sim_time": arg("use_sim_time") == "true"}
        nodes.append(LifecycleNode(
            package="sage_ros", executable=executable, name=executable, namespace=arg("namespace"),
            parameters=[arg("params_file"), overrides], output="screen",
            arguments=["--ros-args", "--log-level", arg("log_level")]))
    return nodes


def latent_topics_for(cameras: list[str], encoders) -> list[str]:
    """Where the chosen encoders publish for these cameras (beside each camera topic, as the node does)."""
    return [(camera.rsplit("/", 1)[0] + "/" if "/" in camera else "") + OUTPUT_KIND[encoder]
            for camera in cameras for encoder in encoders]


def _decoder_node(arg, cameras, encoders):
    topics = [t.strip() for t in arg("latent_topics").split(",") if t.strip()] or latent_topics_for(cameras, encoders)
    overrides = {"latent_topics": topics, "backend": arg("backend"), "device": arg("device"),
                 "use_sim_time": arg("use_sim_time") == "true"}
    return Node(package="sage_ros", executable="latent_decoder", name="latent_decoder", namespace=arg("namespace"),
                parameters=[arg("params_file"), overrides], output="screen",
                arguments=["--ros-args", "--log-level", arg("log_level")])


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=description,
                                      **({"choices": list(choices)} if choices else {}))
                for name, default, description, choices in ARGUMENTS]
    declared.append(DeclareLaunchArgument(
        "params_file", default_value=PathJoinSubstitution([FindPackageShare("sage_ros"), "config", "perception.yaml"]),
        description="ROS parameter file for the encoders and the decoder"))
    return LaunchDescription([
        *declared,
        SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA",
                               condition=IfCondition(LaunchConfiguration("large_data"))),
        LogInfo(msg=LARGE_DATA_NOTE, condition=IfCondition(LaunchConfiguration("large_data"))),
        OpaqueFunction(function=_encoder_nodes),
    ])
