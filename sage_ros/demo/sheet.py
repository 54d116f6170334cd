"""The contact sheet: input frames beside what their recorded latents decode to, through the consumer API
(sage_ros.runtime.consumer: each topic's recorded info finds its bundle by checksum; no backend of its own), each
input frame marked with the crop window its recorded telemetry reports, and below them the telemetry over the whole
replay: SAGE's trust and the reconstruction error of every TinyVAE, and the puzzle's code entropy."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sage_ros.atomic import atomic_path

from .common import DemoError
from .models import EncoderRun, is_untrained
from .recording import Recording, read_input_frames


# --- contact sheet ---------------------------------------------------------------------------------------------

def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    # 8-bit PSNR of two uint8 images; a one-liner, not worth importing compression.metrics (torch) here.
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _to_uint8_hwc(image_chw: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    return np.clip((image_chw.transpose(1, 2, 0) - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def code_grid(ax, codes: np.ndarray, legend: bool = False) -> None:
    """A puzzle code grid, one tab10 colour per code 0..9; with `legend`, a strip above it keys each colour to its
    code number (matplotlib lifts the column title above the strip)."""
    ax.imshow(codes, cmap="tab10", vmin=-0.5, vmax=9.5, interpolation="nearest")
    if legend:
        strip = ax.inset_axes([0.0, 1.04, 1.0, 0.13])
        strip.imshow(np.arange(10)[None], cmap="tab10", vmin=-0.5, vmax=9.5, aspect="auto")
        for code in range(10):
            strip.text(code, 0, str(code), ha="center", va="center", fontsize=5, color="white")
        strip.set_xticks([]), strip.set_yticks([])
        strip.set_label("code legend")


def pick_stamps(recording: Recording, encoders: list[EncoderRun], count: int) -> list[int]:
    """`count` stamps spread over the replay that every encoder produced an output for."""
    common = set(recording.input_log_ns)
    for enc in encoders:
        common &= {stamp for stamp, *_ in recording.outputs[enc.output_topic]}
    ordered = sorted(common)
    if len(ordered) <= count:
        return ordered
    return [ordered[int(i)] for i in np.linspace(0, len(ordered) - 1, count).round()]


def recorded_decoders(recording: Recording, encoders: list[EncoderRun]) -> dict:
    """node name -> LatentDecoder for the model its recorded `<output>/info` names, found by checksum among the
    bundles beside the one the demo started (so the picture shows what the recording says, and a recording whose
    info disagrees with the started bundle is an error, not a silently wrong picture)."""
    from sage_ros.runtime.consumer import BundleNotFound, LatentDecoder

    decoders = {}
    try:
        for enc in encoders:
            info = recording.infos.get(enc.output_topic)
            if info is None:
                raise DemoError(f"the recording has no {enc.output_topic}/info: it does not say which model made "
                                "those latents")
            try:
                decoder = LatentDecoder(info, [enc.bundle.path.parent], allow_name=False)
            except BundleNotFound as err:
                raise DemoError(str(err)) from None
            decoders[enc.node_name] = decoder
            if decoder.bundle.meta["files"] != enc.bundle.meta["files"]:
                raise DemoError(f"{enc.output_topic}/info names {info.summary()}, not the started {enc.bundle.name}")
    except BaseException:
        for decoder in decoders.values():
            decoder.close()
        raise
    return decoders


WINDOW_COLOURS = ("#ff3b30", "#34c759", "#0a84ff", "#ffcc00")  # one per distinct crop window on a frame


def draw_windows(ax, recording: Recording, encoders: list[EncoderRun], stamp: int) -> str:
    """Outline on the input frame every distinct crop window the encoders' telemetry reports for `stamp` (letterbox
    windows reach past the frame: drawn clipped); returns a short label ("" when no telemetry was recorded)."""
    from matplotlib.patches import Rectangle

    windows = {}
    for enc in encoders:
        values = recording.telemetry.get(enc.output_topic, {}).get(stamp)
        if values is not None:
            key = tuple(round(values[k], 1) for k in ("crop_x", "crop_y", "crop_w", "crop_h"))
            windows.setdefault(key, []).append(enc.node_name)
    for index, (x, y, w, h) in enumerate(windows):
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, linewidth=1.5,
                               edgecolor=WINDOW_COLOURS[index % len(WINDOW_COLOURS)]))
    if not windows:
        return ""
    if len(windows) == 1:
        x, y, w, h = next(iter(windows))
        return f"crop {w:.0f}x{h:.0f} at ({x:.0f},{y:.0f})"
    return f"{len(windows)} crop windows"


def telemetry_panels(fig, spec, recording: Recording, encoders: list[EncoderRun], stamps: list[int]) -> None:
    """Trust and recon_mse of every TinyVAE, and the puzzle's code entropy, over the replay (seconds since the first
    input frame); dotted lines mark the frames shown above."""
    t0 = min(recording.input_log_ns) if recording.input_log_ns else 0
    tinyvae = [e for e in encoders if e.preset == "tinyvae"]
    puzzle = [e for e in encoders if e.preset == "puzzle"]
    panels = [("trust (SAGE formula)", "trust", tinyvae), ("recon_mse (model input in [0,1])", "recon_mse", tinyvae)]
    if puzzle:
        panels.append(("puzzle code entropy (bits)", "code_entropy_bits", puzzle))
    grid = spec.subgridspec(1, len(panels), wspace=0.35)
    for index, (title, field, runs) in enumerate(panels):
        ax = fig.add_subplot(grid[0, index])
        for enc in runs:
            series = sorted(recording.telemetry.get(enc.output_topic, {}).items())
            if series:
                ax.plot([(s - t0) / 1e9 for s, _ in series], np.array([v[field] for _, v in series]), linewidth=1,
                        label=f"{enc.bundle.precision}" if enc.preset == "tinyvae" else enc.bundle.name)
        for stamp in stamps:
            ax.axvline((stamp - t0) / 1e9, color="0.6", linestyle=":", linewidth=0.8)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("replay time (s)", fontsize=7)
        # fixed ranges, so a flat line looks flat: trust 0..1, entropy 0..log2(10), recon error from 0
        top = max((float(np.nanmax(line.get_ydata())) for line in ax.lines[:len(runs)]
                   if isinstance(line.get_ydata(), np.ndarray) and line.get_ydata().size), default=0.0)
        ax.set_ylim(*{"trust": (0, 1), "code_entropy_bits": (0, 3.4)}.get(field, (0, max(0.03, 1.2 * top))))
        ax.tick_params(labelsize=6)
        if ax.lines and runs:
            ax.legend(fontsize=6, loc="best")
        if not any(recording.telemetry.get(e.output_topic) for e in runs):
            ax.text(0.5, 0.5, "no telemetry recorded", ha="center", va="center", fontsize=7, transform=ax.transAxes)


def contact_sheet(path: Path, recording: Recording, encoders: list[EncoderRun], rows: int = 5) -> int:
    """input (with its crop window) | model input | TinyVAE fp32 / int8 / int4 reconstructions (PSNR vs model
    input) | puzzle codes | puzzle decoded, for `rows` frames, above the telemetry over the replay; returns the
    number of frames shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from sage_ros.runtime.preprocess import Preprocessor

    stamps = pick_stamps(recording, encoders, rows)
    if not stamps:
        raise DemoError("no frame was encoded by every encoder; nothing to show (see the summary)")
    frames = read_input_frames(recording.bag, set(stamps), recording.input_topic)
    outputs = {enc.output_topic: {stamp: out for stamp, _, _, out in recording.outputs[enc.output_topic]}
               for enc in encoders}
    tinyvae = [e for e in encoders if e.preset == "tinyvae"]
    puzzle = next((e for e in encoders if e.preset == "puzzle"), None)
    columns = ["input frame", f"model input {tinyvae[0].bundle.input_size[0]}px" if tinyvae else None,
               *[f"TinyVAE {e.bundle.precision}" for e in tinyvae],
               *(["puzzle codes 30x30", "puzzle decoded"] if puzzle else [])]
    columns = [c for c in columns if c]
    fig = plt.figure(figsize=(max(1.9 * len(columns), 7.5), 1.75 * len(stamps) + 2.6))
    layout = fig.add_gridspec(2, 1, height_ratios=[1.75 * len(stamps), 1.7], hspace=0.25)
    tiles = layout[0].subgridspec(len(stamps), len(columns), hspace=0.45, wspace=0.08)
    axes = [[fig.add_subplot(tiles[r, c]) for c in range(len(columns))] for r in range(len(stamps))]
    decoders = recorded_decoders(recording, encoders)
    try:
        for r, stamp in enumerate(stamps):
            cells = [(frames[stamp], f"t={(stamp - min(recording.input_log_ns)) / 1e9:.1f} s")]
            if tinyvae:
                pre = Preprocessor.from_bundle(tinyvae[0].bundle, "resize")
                model_input = _to_uint8_hwc(pre([frames[stamp]])[0], tinyvae[0].bundle.input_range)
                cells.append((model_input, "area resize"))
                for enc in tinyvae:
                    recon = decoders[enc.node_name].decode(recording.latents[enc.output_topic][stamp])
                    trust = recording.telemetry.get(enc.output_topic, {}).get(stamp, {}).get("trust")
                    cells.append((recon, f"PSNR {_psnr(recon, model_input):.2f} dB"
                                  + (f", trust {trust:.2f}" if trust is not None else "")))
            if puzzle:
                codes = outputs[puzzle.output_topic][stamp]["codes"]
                cells.append((codes, f"{len(np.unique(codes))} codes used"))
                cells.append((decoders[puzzle.node_name].decode(recording.latents[puzzle.output_topic][stamp]), ""))
            for c, (image, label) in enumerate(cells):
                ax = axes[r][c]
                if image.ndim == 2:  # a code grid: one colour per code 0..9
                    code_grid(ax, image, legend=r == 0)
                else:
                    ax.imshow(image, interpolation="nearest" if image.shape[0] <= 64 else "antialiased")
                if c == 0:  # the input frame: where the latents looked, from their telemetry
                    window_label = draw_windows(ax, recording, encoders, stamp)
                    label = f"{label}\n{window_label}" if window_label else label
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_xlabel(label, fontsize=7)
                if r == 0:
                    ax.set_title(columns[c], fontsize=8)
        telemetry_panels(fig, layout[1], recording, encoders, stamps)
        fig.subplots_adjust(left=0.04, right=0.98, top=1 - 0.75 / fig.get_figheight(), bottom=0.05)
    finally:
        for decoder in decoders.values():
            decoder.close()
    untrained = any(is_untrained(e.bundle) for e in encoders)
    models = ", ".join(sorted({e.bundle.name for e in encoders}))
    fig.suptitle(f"sage_ros demo: vtest.avi camera frames -> encoder nodes over DDS -> recorded latents decoded\n"
                 f"{'UNTRAINED (seeded) models - plumbing only. ' if untrained else ''}{models}", fontsize=8)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)
    # An adaptive 256-colour palette keeps the committed picture well under 500 KB (photos compress poorly
    # as truecolour PNG); the small tiles lose nothing visible.
    picture = Image.fromarray(rgba[..., :3].copy()).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG", optimize=True)
    return len(stamps)
