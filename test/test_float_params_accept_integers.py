"""Every float parameter takes an integer (`-p max_rate:=5`), at start and on a live change, and an out-of-range
integer (`max_rate:=-1`) gets the range message, not rclpy's bare "of type 'INTEGER', expecting type 'DOUBLE'"."""
import pytest
import rclpy
from rclpy.parameter import Parameter

from sage_ros.ros import params as P

FLOAT_PARAMS = [spec for spec in P.PARAMS if spec.ros_type is float]
DECODER_FLOAT_PARAMS = [spec for spec in P.DECODER_PARAMS if spec.ros_type is float]


@pytest.fixture
def context(rclpy_context):
    return rclpy_context


def in_range_int(spec) -> int:
    lo, hi = spec.float_range
    return int(max(lo, min(hi, 5)))


@pytest.mark.parametrize("spec", FLOAT_PARAMS, ids=lambda s: s.name)
def test_encoder_float_parameter_takes_an_integer_at_start(context, spec):
    from sage_ros.ros.encoder_node import EncoderNode

    value = in_range_int(spec)
    node = EncoderNode("tinyvae", context=context, parameter_overrides=[Parameter(spec.name, value=value)])
    try:
        assert node._param(spec.name) == float(value) and type(node._param(spec.name)) is float
    finally:
        node.destroy_node()


def test_integer_max_rate_live_and_out_of_range_reason(context):
    from sage_ros.ros.encoder_node import EncoderNode

    node = EncoderNode("tinyvae", context=context)
    try:
        result = node.set_parameters([Parameter("max_rate", value=5)])[0]
        assert result.successful, result.reason
        assert node._live["max_rate"] == 5.0 and type(node._live["max_rate"]) is float
        result = node.set_parameters([Parameter("max_rate", value=-1)])[0]
        assert not result.successful and "max_rate must be in [0.0, 1000.0], got -1" in result.reason
        result = node.set_parameters([Parameter("max_rate", value="fast")])[0]
        assert not result.successful and "max_rate must be of type float" in result.reason
        assert node._live["max_rate"] == 5.0
    finally:
        node.destroy_node()


def test_out_of_range_integer_at_start_names_the_range(context):
    from sage_ros.ros.encoder_node import EncoderNode

    with pytest.raises(Exception, match=r"max_rate must be in \[0.0, 1000.0\], got -1"):
        EncoderNode("tinyvae", context=context, parameter_overrides=[Parameter("max_rate", value=-1)])


@pytest.mark.parametrize("spec", DECODER_FLOAT_PARAMS, ids=lambda s: s.name)
def test_decoder_float_parameter_takes_an_integer(context, spec):
    from sage_ros.ros.decoder_node import LatentDecoderNode

    value = in_range_int(spec)
    node = LatentDecoderNode(context=context, parameter_overrides=[Parameter(spec.name, value=value)])
    try:
        assert node._param(spec.name) == float(value)
    finally:
        node.close()
        node.destroy_node()


def test_the_command_line_form_is_accepted(tmp_path):
    """`-p max_rate:=5` as typed: rcl parses 5 as an INTEGER; the node must start (autostart off: no bundle work)."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "tinyvae_encoder"
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, rclpy\nfrom sage_ros.ros.encoder_node import EncoderNode\n"
         "rclpy.init(args=sys.argv)\nn = EncoderNode('tinyvae')\nprint('max_rate', repr(n._param('max_rate')))\n",
         "--ros-args", "-p", "max_rate:=5", "-p", "autostart:=false"], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert "max_rate 5.0" in probe.stdout
    bad = subprocess.run([str(exe), "--ros-args", "-p", "max_rate:=-1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "max_rate must be in" in bad.stderr, bad.stderr
