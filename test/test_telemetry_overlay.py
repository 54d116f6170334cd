"""The latent_decoder's crop overlay: the reconstruction drawn back into the crop window of the full frame, as a
pure function (every window kind) and over DDS (frame_topics on, joined with the encoder's telemetry by stamp)."""
import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image

from ros_helpers import NodeProcess, camera_frames, header, stamp_of, wait_for
from sage_ros.runtime.image_codec import image_msg_to_rgb8, numpy_to_image
from sage_ros.runtime.telemetry import overlay_reconstruction

RED = (255, 59, 48)


def values(x, y, w, h, source=(240, 320)):
    return {"crop_x": x, "crop_y": y, "crop_w": w, "crop_h": h, "source_height": source[0], "source_width": source[1]}


def test_overlay_puts_the_reconstruction_into_the_window_and_outlines_it():
    frame = np.full((240, 320, 3), 30, np.uint8)
    recon = np.full((64, 64, 3), 200, np.uint8)
    out = overlay_reconstruction(frame, recon, values(40, 0, 240, 240))  # a centre crop
    assert out.shape == frame.shape and (frame == 30).all()  # the frame itself is not touched
    assert (out[10:230, 50:270] == 200).all()  # inside the window: the reconstruction
    assert (out[:, :38] == 30).all() and (out[:, 282:] == 30).all()  # outside: the frame
    assert tuple(out[120, 40]) == RED and tuple(out[0, 150]) == RED  # the outline
    # letterbox: the window reaches past the frame (its padding); only the part inside is drawn
    letter = overlay_reconstruction(frame, recon, values(0, -40, 320, 320))
    assert (letter[5:235, 5:315] == 200).all()
    # a frame at half the source size: the window is scaled to it
    half = overlay_reconstruction(frame[:120, :160], recon, values(40, 0, 240, 240))
    assert (half[5:115, 25:135] == 200).all() and (half[:, :18] == 30).all()
    with pytest.raises(ValueError, match="outside"):
        overlay_reconstruction(frame, recon, values(400, 0, 64, 64))
    with pytest.raises(ValueError, match="not a window"):
        overlay_reconstruction(frame, recon, values(0, 0, float("nan"), 64))


def test_latent_decoder_publishes_the_overlay_when_frame_topics_names_the_camera(tmp_path):
    from ros_helpers import TestGraph

    graph = TestGraph("overlay_test_peer")
    ns = "/ovl_test"
    encoder = NodeProcess("tinyvae_encoder", [
        "-r", f"__ns:={ns}", "-p", "bundle:=tinyvae_l8_fp32", "-p", "backend:=onnxruntime", "-p", "device:=cpu",
        "-p", "image_topics:=[cam/image_raw]", "-p", "qos_reliability:=reliable", "-p", "crop_mode:=center"],
        tmp_path / "encoder.log")
    decoder = NodeProcess("latent_decoder", [
        "-p", f"latent_topics:=[{ns}/cam/latent]", "-p", f"frame_topics:=[{ns}/cam/image_raw]",
        "-p", "qos_reliability:=reliable", "-p", "backend:=onnxruntime", "-p", "device:=cpu"],
        tmp_path / "decoder.log")
    try:
        publisher = graph.node.create_publisher(Image, f"{ns}/cam/image_raw", 10)
        overlays = graph.collect(Image, f"{ns}/cam/reconstruction_overlay")
        encoder.wait_log("backend warm", 60)
        wait_for(lambda: publisher.get_subscription_count() >= 2 and overlays.matched(), 30, what="graph matched")
        frame = cv2.resize(camera_frames(1)[0], (320, 240), interpolation=cv2.INTER_AREA)
        found = None
        for sec in range(900, 930):  # until the decoder has the info and all three parts of one stamp
            publisher.publish(numpy_to_image(frame, "rgb8", header=header(sec)))
            try:
                found = wait_for(lambda: next((m for m in list(overlays) if stamp_of(m) == (sec, sec * 1000)), None),
                                 2.0)
                break
            except AssertionError:
                continue
        assert found is not None, decoder.log()[-2000:]
        assert found.header.frame_id == "camera_optical_frame" and (found.height, found.width) == (240, 320)
        image = image_msg_to_rgb8(found)
        assert tuple(image[120, 40]) == RED and tuple(image[0, 150]) == RED  # the centre window, outlined
        np.testing.assert_array_equal(image[:, :38], frame[:, :38])  # outside the window: the camera frame
        assert np.abs(image[20:220, 60:260].astype(int) - frame[20:220, 60:260]).mean() > 1  # inside: the latent
    finally:
        decoder.stop()
        encoder.stop()
        graph.close()
