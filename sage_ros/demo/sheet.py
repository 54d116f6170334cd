"""The contact sheet: input frames beside what their recorded latents decode to, through the consumer API
(sage_ros.runtime.consumer: each topic's recorded info finds its bundle by checksum; no backend of its own)."""
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


def contact_sheet(path: Path, recording: Recording, encoders: list[EncoderRun], rows: int = 5) -> int:
    """input | model input | TinyVAE fp32 / int8 / int4 reconstructions (PSNR vs model input) | puzzle codes |
    puzzle decoded, for `rows` frames; returns the number of frames shown."""
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
    fig, axes = plt.subplots(len(stamps), len(columns), figsize=(1.9 * len(columns), 1.75 * len(stamps) + 0.6),
                             squeeze=False)
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
                    cells.append((recon, f"PSNR {_psnr(recon, model_input):.2f} dB"))
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
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_xlabel(label, fontsize=7)
                if r == 0:
                    ax.set_title(columns[c], fontsize=8)
    finally:
        for decoder in decoders.values():
            decoder.close()
    untrained = any(is_untrained(e.bundle) for e in encoders)
    models = ", ".join(sorted({e.bundle.name for e in encoders}))
    fig.suptitle(f"sage_ros demo: vtest.avi camera frames -> encoder nodes over DDS -> recorded latents decoded\n"
                 f"{'UNTRAINED (seeded) models - plumbing only. ' if untrained else ''}{models}", fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)
    # An adaptive 256-colour palette keeps the committed picture well under 500 KB (photos compress poorly
    # as truecolour PNG); the small tiles lose nothing visible.
    picture = Image.fromarray(rgba[..., :3].copy()).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG", optimize=True)
    return len(stamps)
