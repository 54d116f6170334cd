"""The demo shows telemetry: the recording reads <output>/telemetry by the info's field names, the contact sheet
outlines each input frame's crop window and plots trust / recon error over the replay, the summary has medians."""
import numpy as np

from bag_helpers import REPO, camera_frames, write_camera_bag
from sage_ros.bag.encode import encode_bag
from sage_ros.demo import EncoderRun, read_recording
from sage_ros.demo.sheet import draw_windows, telemetry_panels
from sage_ros.demo.summary import _telemetry
from sage_ros.runtime.bundle import load_bundle

MODEL = REPO / "models" / "tinyvae_l8_fp32"


def test_recording_sheet_and_summary_show_the_telemetry(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    write_camera_bag(tmp_path / "in", camera_frames(4, height=96, width=160))
    encode_bag(tmp_path / "in", tmp_path / "out", MODEL, topic="/camera/image_raw", crop="center")
    recording = read_recording(tmp_path / "out", ["/camera/latent"], "/camera/image_raw")
    telemetry = recording.telemetry["/camera/latent"]
    assert len(telemetry) == 4 and set(telemetry) == set(recording.latents["/camera/latent"])
    stamp = min(telemetry)
    assert (telemetry[stamp]["crop_x"], telemetry[stamp]["crop_w"], telemetry[stamp]["crop_h"]) == (32, 96, 96)

    run = EncoderRun("tinyvae_fp32", "tinyvae", load_bundle(MODEL), "/camera/latent")
    recording.input_log_ns = {s: s for s in telemetry}
    fig = plt.figure()
    ax = fig.add_subplot(2, 1, 1)
    ax.imshow(np.zeros((96, 160, 3), np.uint8))
    assert draw_windows(ax, recording, [run], stamp) == "crop 96x96 at (32,0)"
    (patch,) = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert (patch.get_x() + 0.5, patch.get_y() + 0.5, patch.get_width(), patch.get_height()) == (32, 0, 96, 96)
    assert draw_windows(ax, recording, [run], stamp + 1) == ""  # no telemetry for that stamp: nothing drawn
    telemetry_panels(fig, fig.add_gridspec(2, 1)[1], recording, [run], [stamp])
    trust_ax, mse_ax = fig.axes[1:3]
    assert trust_ax.get_title().startswith("trust") and len(trust_ax.lines[0].get_xdata()) == 4
    np.testing.assert_allclose(trust_ax.lines[0].get_ydata(), [telemetry[s]["trust"] for s in sorted(telemetry)])
    assert trust_ax.get_ylim() == (0.0, 1.0)
    plt.close(fig)

    summary = _telemetry(telemetry)
    assert summary["messages"] == 4 and 0 < summary["trust_p50"] < 1 and summary["recon_mse_p50"] > 0
