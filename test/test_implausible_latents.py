"""Latents of +-3e38, NaN or inf in mu / log sigma^2 are counted as errors in /diagnostics and never published as
valid latents (old code published them: a downstream decoder then drew garbage with diagnostics OK)."""
import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter

from ros_helpers import camera_frames, export_test_bundle, header, poison_mu, wait_for
from sage_ros.ros.diagnostics import level_and_message
from sage_ros.ros.encoding import MAX_ABS_LATENT, implausible_rows
from sage_ros.runtime.image_codec import numpy_to_image


def test_implausible_rows_names_each_bad_row():
    mu = np.zeros((5, 4), np.float32)
    mu[1, 2], mu[2, 0], mu[3, 3] = 3e38, np.nan, -np.inf
    logvar = np.zeros((5, 4), np.float32)
    logvar[4, 1] = -3e38
    bad = implausible_rows({"mu": mu, "logvar": logvar})
    assert sorted(bad) == [1, 2, 3, 4]
    assert "implausible" in bad[1] and "not finite" in bad[2] and "logvar" in bad[4]
    assert implausible_rows({"mu": np.full((2, 3), MAX_ABS_LATENT, np.float32), "logvar": np.zeros((2, 3))}) == {}
    assert implausible_rows({"codes": np.zeros((1, 30, 30), np.int64)}) == {}


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return export_test_bundle("TinyVAE", tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.mark.parametrize("value", [3e38, -3e38, np.nan, np.inf])
def test_the_node_counts_and_withholds_them(tiny_bundle, value):
    from sage_ros.ros.encoder_node import SUCCESS, EncoderNode

    context = rclpy.Context()
    rclpy.init(context=context)
    node = EncoderNode("tinyvae", context=context, parameter_overrides=[
        Parameter("bundle", value=str(tiny_bundle)), Parameter("backend", value="onnxruntime"),
        Parameter("device", value="cpu")])
    try:
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        poison_mu(node.backend, slice(None), 0, value)
        node._on_frame(0, numpy_to_image(camera_frames(1)[0], "rgb8", header=header(7)))
        wait_for(lambda: node.stats._counts["errors"] >= 1, 15, what="the error counted")
        snap = node.stats.snapshot()
        assert snap.counts["published"] == 0
        level, _ = level_and_message(snap, active=True)
        assert level == b"\x02" and "mu of row 0" in snap.last_error
    finally:
        node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
