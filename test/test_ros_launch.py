"""launch/perception.launch.py and config/perception.yaml, checked without launch_ros (not on PyPI).

The launch file is executed against small stand-ins for the launch / launch_ros classes it uses, which record
their arguments; the nodes it would start are then checked against setup.py's console entry points and the
node's declared parameters, and the parameter file is loaded by the real node (rcl's YAML parser).
"""
import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from sage_ros.ros import params as P
from sage_ros.ros.encoder_node import PRESETS

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "perception.launch.py"
CONFIG_FILE = REPO / "config" / "perception.yaml"
LAUNCH_OVERRIDDEN = {"image_topics", "bundle", "backend", "device", "input_transport", "use_sim_time"}
DECODER_LAUNCH_OVERRIDDEN = {"latent_topics", "backend", "device", "use_sim_time"}
DECODER_SECTION = "/**/latent_decoder"


class Recorded:
    """Stand-in for any launch action / substitution: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


class PathJoinSubstitution(Recorded):
    def perform(self, context):
        return str(Path(*[part.perform(context) if hasattr(part, "perform") else part for part in self.args[0]]))


class FindPackageShare(Recorded):
    def perform(self, context):
        return str(REPO)  # the source tree has the share/ layout for launch/ and config/


class Context:
    def __init__(self, configurations):
        self.launch_configurations = configurations


@pytest.fixture(scope="module")
def launch_module():
    stubs = {
        "launch": {"LaunchDescription": Recorded},
        "launch.actions": {"DeclareLaunchArgument": Recorded, "LogInfo": Recorded, "OpaqueFunction": Recorded,
                           "SetEnvironmentVariable": Recorded},
        "launch.conditions": {"IfCondition": Recorded},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration,
                                 "PathJoinSubstitution": PathJoinSubstitution},
        "launch_ros.actions": {"LifecycleNode": Recorded, "Node": Recorded},
        "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
        "launch_ros": {},
    }
    saved = {name: sys.modules.get(name) for name in stubs}
    for name, attributes in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
    try:
        spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def declared_defaults(description):
    defaults = {}
    for action in description.args[0]:
        if isinstance(action, Recorded) and "default_value" in action.kwargs:
            default = action.kwargs["default_value"]
            defaults[action.args[0]] = default.perform(None) if hasattr(default, "perform") else default
    return defaults


def nodes_for(launch_module, **arguments):
    description = launch_module.generate_launch_description()
    configurations = {**declared_defaults(description), **arguments}
    opaque = [a for a in description.args[0] if a.kwargs.get("function")]
    assert len(opaque) == 1
    return opaque[0].kwargs["function"](Context(configurations))


def console_scripts():
    """Entry point names from setup.py, read with ast (setup() is not run)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {entry.value.split("=")[0].strip(): entry.value.split("=")[1].strip()
                            for entry in value.elts}
    raise AssertionError("no console_scripts in setup.py")


def test_launch_defaults_agree_with_the_node(launch_module):
    defaults = declared_defaults(launch_module.generate_launch_description())
    for name in ("backend", "device", "input_transport"):
        assert defaults[name] == P.SPECS[name].default, name
    assert defaults["tinyvae_bundle"] == PRESETS["tinyvae"].default_bundle
    assert defaults["puzzle_bundle"] == PRESETS["puzzle"].default_bundle
    assert Path(defaults["params_file"]) == CONFIG_FILE
    for action in launch_module.generate_launch_description().args[0]:
        choices = action.kwargs.get("choices")
        if choices and action.args[0] in P.SPECS:
            assert tuple(choices) == P.SPECS[action.args[0]].choices


@pytest.mark.parametrize("encoders, names", [("tinyvae", ["tinyvae_encoder"]), ("puzzle", ["puzzle_encoder"]),
                                             ("both", ["tinyvae_encoder", "puzzle_encoder"])])
def test_launch_starts_entry_points_with_valid_parameters(launch_module, encoders, names):
    nodes = nodes_for(launch_module, encoders=encoders, camera="/front/image_raw, /rear/image_raw",
                      namespace="robot1", use_sim_time="true")
    scripts = console_scripts()
    assert [n.kwargs["executable"] for n in nodes] == names
    for node in nodes:
        kwargs = node.kwargs
        assert kwargs["package"] == "sage_ros" and kwargs["name"] == kwargs["executable"]
        assert scripts[kwargs["executable"]].startswith("sage_ros.ros.encoder_node:main_")
        assert kwargs["namespace"] == "robot1"
        params_file, overrides = kwargs["parameters"]
        assert Path(params_file) == CONFIG_FILE and set(overrides) == LAUNCH_OVERRIDDEN
        assert overrides["image_topics"] == ["/front/image_raw", "/rear/image_raw"]
        assert overrides["use_sim_time"] is True
        assert P.validate_all({k: v for k, v in overrides.items() if k != "use_sim_time"}) == []


@pytest.mark.parametrize("encoders, expected", [
    ("none", ["/front/latent", "/front/puzzle", "/rear/latent", "/rear/puzzle"]),
    ("tinyvae", ["/front/latent", "/rear/latent"]),
    ("both", ["/front/latent", "/front/puzzle", "/rear/latent", "/rear/puzzle"]),
])
def test_decoder_alone_or_beside_the_encoders(launch_module, encoders, expected):
    nodes = nodes_for(launch_module, encoders=encoders, decoder="true", camera="/front/image_raw,/rear/image_raw",
                      namespace="operator")
    decoder = [n for n in nodes if n.kwargs["executable"] == "latent_decoder"]
    assert len(decoder) == 1 and len(nodes) == 1 + {"none": 0, "tinyvae": 1, "both": 2}[encoders]
    kwargs = decoder[0].kwargs
    assert console_scripts()["latent_decoder"] == "sage_ros.ros.decoder_node:main"
    assert kwargs["name"] == "latent_decoder" and kwargs["namespace"] == "operator"
    params_file, overrides = kwargs["parameters"]
    assert Path(params_file) == CONFIG_FILE and set(overrides) == DECODER_LAUNCH_OVERRIDDEN
    assert overrides["latent_topics"] == expected
    assert P.validate_all({k: v for k, v in overrides.items() if k != "use_sim_time"}, P.DECODER_SPECS) == []
    explicit = nodes_for(launch_module, encoders="none", decoder="true", latent_topics="/a/latent, /b/puzzle")
    assert explicit[0].kwargs["parameters"][1]["latent_topics"] == ["/a/latent", "/b/puzzle"]
    assert all(n.kwargs["executable"] != "latent_decoder" for n in nodes_for(launch_module))  # off by default


def test_large_data_transport_is_an_option(launch_module):
    description = launch_module.generate_launch_description()
    env = [a for a in description.args[0] if a.args[:1] == ("FASTDDS_BUILTIN_TRANSPORTS",)]
    assert len(env) == 1 and env[0].args[1] == "LARGE_DATA"
    assert env[0].kwargs["condition"].args[0].args[0] == "large_data"


def test_parameter_file_keys_validate_against_declarations():
    config = yaml.safe_load(CONFIG_FILE.read_text())
    executables = {f"/**/{preset.node_name}" for preset in PRESETS.values()}
    assert set(config) == executables | {DECODER_SECTION}
    decoder = config.pop(DECODER_SECTION)["ros__parameters"]
    assert P.validate_all(decoder, P.DECODER_SPECS) == []
    assert set(decoder) == {spec.name for spec in P.DECODER_PARAMS} - DECODER_LAUNCH_OVERRIDDEN
    for name, value in decoder.items():
        assert value == P.DECODER_SPECS[name].default, f"decoder {name}: file and code defaults differ"
    for section in config.values():
        values = section["ros__parameters"]
        assert P.validate_all(values) == []
        assert not LAUNCH_OVERRIDDEN & set(values), "launch arguments would silently override these"
        assert set(values) == {spec.name for spec in P.PARAMS} - LAUNCH_OVERRIDDEN  # every other knob, documented
        for name, value in values.items():
            assert value == P.SPECS[name].default, f"{name}: file and code defaults differ"


def test_a_bad_value_in_the_file_is_caught():
    reasons = P.validate_all({"max_rate": -1, "crop_mode": "zoom", "qos_depth": 500, "no_such": 1})
    assert len(reasons) == 4 and "max_rate must be in" in reasons[0]


def test_real_node_loads_the_parameter_file():
    """rcl parses the file (wildcard node names included) and the node's declarations accept every value."""
    import rclpy

    from sage_ros.ros.encoder_node import EncoderNode

    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(CONFIG_FILE), "-r", "__ns:=/robot1"])
    try:
        config = yaml.safe_load(CONFIG_FILE.read_text())
        for preset in PRESETS.values():
            node = EncoderNode(next(k for k, v in PRESETS.items() if v is preset), context=context)
            expected = config[f"/**/{preset.node_name}"]["ros__parameters"]
            assert {name: node.get_parameter(name).value for name in expected} == expected
            node.destroy_node()
        from sage_ros.ros.decoder_node import LatentDecoderNode

        node = LatentDecoderNode(context=context)
        expected = config[DECODER_SECTION]["ros__parameters"]
        assert {name: node.get_parameter(name).value for name in expected} == expected
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_docs_list_every_parameter_and_launch_argument(launch_module):
    docs = (REPO / "docs" / "ros.md").read_text()
    for spec in (*P.PARAMS, *P.DECODER_PARAMS):
        assert f"| `{spec.name}` |" in docs, spec.name
    assert "latent_decoder" in docs
    for name in declared_defaults(launch_module.generate_launch_description()):
        assert f"| `{name}` |" in docs, name


def test_large_data_sets_the_transport_and_says_every_participant_needs_it(launch_module):
    actions = launch_module.generate_launch_description().args[0]
    conditional = [a for a in actions if isinstance(a.kwargs.get("condition"), Recorded)
                   and a.kwargs["condition"].args[0].args[0] == "large_data"]
    env = [a for a in conditional if a.args == ("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")]
    notes = [a for a in conditional if "msg" in a.kwargs]
    assert len(env) == 1 and len(notes) == 1, [(a.args, a.kwargs) for a in conditional]
    message = notes[0].kwargs["msg"]
    assert "export FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA" in message and "EVERY participant" in message
