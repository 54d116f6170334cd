"""Report writers for quantize / evaluate: markdown tables and PNG plots (matplotlib, Agg backend, atomic).

The report.json schemas are documented in docs/quantization.md; this module only renders them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sage_ros.atomic import atomic_path


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def tensor_table(tensors: list[dict]) -> str:
    gptq = any("output_mse" in t for t in tensors)
    rows = [[t["tensor"], t["module"], "x".join(map(str, t["shape"])), t["scheme"], t.get("group_size"),
             t["rounding"], t["float32_bytes"], t["quantized_bytes"], t["weight_mse"], t["weight_mse_minmax"]]
            + ([t.get("output_mse"), t.get("output_mse_rounding_mse")] if gptq else [])
            for t in tensors]
    return _table(["tensor", "layer", "shape", "scheme", "group", "rounding", "fp32 B", "quantized B",
                   "weight MSE", "weight MSE (min/max)"]
                  + (["output MSE (calib.)", "output MSE, mse rounding"] if gptq else []), rows)


def quantize_markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [
        f"# Weight quantization: {report['architecture']} L={report['latent_dim']}, {cfg['scheme']}",
        "", f"Command: `{report['created_by']}`", "",
        f"Config: {cfg}", "",
        f"File bytes: quantized {report['bytes']['quantized']:,} vs fp32 {report['bytes']['fp32']:,} "
        f"-> **{report['ratio_vs_fp32']:.2f}x** (real safetensors files, scales and float tensors included).", "",
        f"Weight MSE over all quantized weights: {_fmt(report['weight_mse'])} "
        f"(plain min/max scales: {_fmt(report['weight_mse_minmax'])}).", "",
    ]
    if "evaluation" in report:
        ev = report["evaluation"]
        lines += [f"## Held-out evaluation ({ev['data']} / {ev['split']}, {ev['n_images']} images)", "",
                  _table(["model", "MSE", "PSNR dB", "SSIM", "mu rel L2", "mu cosine"],
                         [["float", ev["reference"]["mse"], ev["reference"]["psnr"], ev["reference"]["ssim"],
                           None, None],
                          [cfg["scheme"], ev["mse"], ev["psnr"], ev["ssim"], ev["mu_rel_l2"], ev["mu_cosine"]]]),
                  ""]
        if "code_agreement" in ev:
            lines += [f"Code agreement with the float model: {ev['code_agreement']:.2f} %", ""]
    lines += ["## Every tensor", "", tensor_table(report["tensors"]), "",
              "Kept in float32 (not Conv/ConvTranspose/Linear weights): " +
              ", ".join(k["tensor"] for k in report["kept_float"]), ""]
    return "\n".join(lines)


def _puzzle_sections(report: dict) -> list[str]:
    """VisionPuzzleVAE: palette baseline note, code usage of every row, per-code pixel statistics, windows."""
    lines = []
    if report.get("palette"):
        p = report["palette"]
        lines += [f"Palette baseline (the same information as the model's code grid): each image area-resized to "
                  f"{p['grid']}x{p['grid']}, each cell replaced by the nearest of {p['n_colors']} colours (k-means "
                  f"on the cells of {p['n_train']} train images), bilinearly upsampled. Model minus palette: "
                  f"{report['reference']['psnr'] - p['psnr']:+.2f} dB PSNR, "
                  f"{report['reference']['ssim'] - p['ssim']:+.4f} SSIM.", ""]
    codes = report.get("codes")
    if codes:
        rows = [["fp32", codes["codes_used"], codes["code_perplexity"]]]
        rows += [[v["name"], v.get("codes_used"), v.get("code_perplexity")] for v in report["variants"]
                 if v.get("codes_used") is not None]
        if report.get("palette"):
            rows.append(["palette", report["palette"]["codes_used"], report["palette"]["code_perplexity"]])
        lines += ["## Code usage", "", "Perplexity = exp(entropy of the code histogram over the split): 10 means "
                  "all 10 codes equally used.", "", _table(["model", "codes used", "perplexity"], rows), "",
                  "Per code (fp32): share of cells, mean +- std of the input colour of its cells (RGB in [0, 1], "
                  "the 224 px input averaged onto the 30 x 30 grid), and the colour the decoder paints for a grid "
                  "of that code alone.", "",
                  _table(["code", "share", "input RGB mean", "input RGB std", "decoded RGB"],
                         [[c["code"], c["share"], " ".join(f"{v:.3f}" for v in c["input_rgb_mean"]),
                           " ".join(f"{v:.3f}" for v in c["input_rgb_std"]),
                           " ".join(f"{v:.3f}" for v in c["decoded_rgb"])] for c in codes["per_code"]]), ""]
    windows = report.get("windows")
    if windows:
        lines += [f"## Windows ({windows['n_images']} {windows['what']}, {windows['split']} split, seed "
                  f"{windows['seed']})", "",
                  _table(["model", "kind", "MSE", "PSNR dB", "SSIM", "code agree %", "codes used", "perplexity"],
                         [[r["name"], r["kind"], r["mse"], r["psnr"], r["ssim"], r.get("code_agreement"),
                           r.get("codes_used"), r.get("code_perplexity")] for r in windows["rows"]]), ""]
    return lines


def evaluate_markdown(report: dict) -> str:
    ref = report["reference"]
    lines = [
        f"# Held-out evaluation: {report['model']['architecture']} L={report['model']['latent_dim']}",
        "", f"Command: `{report['created_by']}`", "",
        f"Data: {report['data']['source']} / {report['data']['split']}, {report['data']['n_images']} images at "
        f"{report['data']['size']} px; float and compressed models are separate copies, deterministic path "
        "(eval mode, z = mu). PSNR is the mean of per-image PSNR on [0, 1]; SSIM uses an 11x11 Gaussian "
        "window, sigma 1.5 (Wang et al. 2004).", "",
    ]
    header = ["model", "kind", "bytes", "ratio vs fp32", "MSE", "PSNR dB", "SSIM", "mu rel L2", "mu cosine"]
    vq = any("code_agreement" in v for v in report["variants"])
    if vq:
        header.append("code agree %")
    rows = [["fp32", "torch", ref["bytes"], 1.0, ref["mse"], ref["psnr"], ref["ssim"], 0.0, 1.0]
            + ([100.0] if vq else [])]
    for v in report["variants"]:
        rows.append([v["name"], v["kind"], v["bytes"], v["ratio_vs_fp32"], v["mse"], v["psnr"], v["ssim"],
                     v["mu_rel_l2"], v["mu_cosine"]] + ([v.get("code_agreement")] if vq else []))
    if report.get("palette"):
        p = report["palette"]
        rows.append([f"palette {p['n_colors']} x {p['grid']}x{p['grid']}", "baseline", len(p["palette"]) * 12, None,
                     p["mse"], p["psnr"], p["ssim"], None, None] + ([None] if vq else []))
    if report.get("pca"):
        p = report["pca"]
        rows.append([f"PCA k={p['n_components']}", "baseline", p["bytes"], None, p["mse"], p["psnr"], p["ssim"],
                     None, None] + ([None] if vq else []))
    lines += [_table(header, rows), ""]
    lines += _puzzle_sections(report)
    lines += ["Ratios divide the real fp32 safetensors file by each file (ONNX bundles: encoder + decoder "
              "bytes; their ratio is against the fp32 ONNX pair where known, see `ratio_note`).", ""]
    gain = report.get("rounding_gain")
    if gain:
        lines += ["## MSE-optimal clipping vs plain min/max (INT4)", "",
                  _table(["rounding", "weight MSE", "recon MSE", "PSNR dB", "mu rel L2"],
                         [["min/max", gain["minmax"]["weight_mse"], gain["minmax"]["mse"], gain["minmax"]["psnr"],
                           gain["minmax"]["mu_rel_l2"]],
                          ["mse search", gain["mse"]["weight_mse"], gain["mse"]["mse"], gain["mse"]["psnr"],
                           gain["mse"]["mu_rel_l2"]]]
                         + ([["gptq (Linear) + mse", gain["gptq"]["weight_mse"], gain["gptq"]["mse"],
                              gain["gptq"]["psnr"], gain["gptq"]["mu_rel_l2"]]] if "gptq" in gain else [])),
                  "", f"Weight MSE reduced {gain['weight_mse_reduction_pct']:.1f} %; "
                      f"PSNR change {gain['psnr_gain_db']:+.3f} dB.", ""]
    if report.get("pca"):
        p = report["pca"]
        lines += [f"PCA baseline: {p['n_components']} components (requested {p['n_components_requested']}, "
                  f"= the model's latent values), fit on {p['n_train']} {report['data']['source']} train images.",
                  ""]
    lines += ["![reconstructions](recon_grid.png)", "", "![rate-distortion](rate_distortion.png)", ""]
    for v in report["variants"]:
        if v.get("tensors") and v["name"] in ("int8", "int4-mse", "int4-gptq"):
            lines += [f"## {v['name']}: every tensor", "", tensor_table(v["tensors"]), ""]
    return "\n".join(lines)


def _savefig(fig, path: Path, bbox: bool = True) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=fig.dpi if not bbox else 110, bbox_inches="tight" if bbox else None, format="png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


GRID_TILE_MAX = 112  # px per tile: 224 px VQ images are shown at half size to keep report PNGs small


def _mosaic(rows: list[tuple[str, np.ndarray]], gap: int = 2) -> np.ndarray:
    """One uint8 image: a row of tiles per (label, images), white gaps between tiles."""
    import cv2

    n_cols = max(len(images) for _, images in rows)
    size = rows[0][1].shape[1]
    tile = min(size, GRID_TILE_MAX)
    out = np.full((len(rows) * (tile + gap) - gap, n_cols * (tile + gap) - gap, 3), 255, np.uint8)
    for r, (_, images) in enumerate(rows):
        for c, image in enumerate(images[:n_cols]):
            if image.shape[0] != tile:
                image = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA)
            out[r * (tile + gap): r * (tile + gap) + tile, c * (tile + gap): c * (tile + gap) + tile] = image
    return out


def plot_recon_grid(path, rows: list[tuple[str, np.ndarray]]) -> Path:
    """One row per (label, uint8 NHWC images): original / float / INT8 / INT4 ... Tiles at native resolution
    (at most GRID_TILE_MAX px), drawn as one image so the PNG stays a few hundred KB."""
    plt = _pyplot()
    mosaic = _mosaic(rows)
    dpi, label_in = 100, 1.9
    fig = plt.figure(figsize=(mosaic.shape[1] / dpi + label_in, mosaic.shape[0] / dpi + 0.1), dpi=dpi)
    ax = fig.add_axes([label_in / (mosaic.shape[1] / dpi + label_in), 0, 1 - label_in /
                       (mosaic.shape[1] / dpi + label_in), 1])
    ax.imshow(mosaic, interpolation="nearest")
    row_h = mosaic.shape[0] / len(rows)
    ax.set_yticks([row_h * (i + 0.5) for i in range(len(rows))], [label for label, _ in rows], fontsize=8)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    _savefig(fig, Path(path), bbox=False)
    plt.close(fig)
    return Path(path)


def plot_rate_distortion(path, points: list[dict], title: str = "") -> Path:
    """PSNR vs model bytes (log x) for each variant; `points` = [{"label", "bytes", "psnr", "kind"}]."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    markers = {"torch": "o", "onnx": "s", "baseline": "x", "reference": "*"}
    for i, p in enumerate(points):
        ax.scatter(p["bytes"], p["psnr"], marker=markers.get(p.get("kind"), "o"), s=60)
        offset = (5, 4 + 9 * (i % 3))  # staggered labels: neighbouring points often share a PSNR
        ax.annotate(p["label"], (p["bytes"], p["psnr"]), textcoords="offset points", xytext=offset, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("model bytes on disk (log)")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.set_title(title or "rate-distortion")
    ax.grid(True, which="both", alpha=0.3)
    _savefig(fig, Path(path))
    plt.close(fig)
    return Path(path)


def plot_training_curve(path, points: list[dict], title: str = "", baselines: dict | None = None) -> Path:
    """Training loss and train/held-out PSNR against images seen (curve.json points of train.fit).

    `baselines` ({label: psnr}) draws horizontal reference lines (e.g. PCA with as many components)."""
    plt = _pyplot()
    seen = [p["images_seen"] for p in points]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(seen, [p["train_loss"] for p in points], marker=".", label="train loss (mean since last point)")
    ax_loss.set_xlabel("images seen")
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend(fontsize=8)
    for key, label in (("val_psnr", "held-out (val) PSNR"), ("val_psnr_raw", "held-out, raw weights (EMA runs)"),
                       ("train_psnr", "training-input PSNR")):
        if all(key in p for p in points):
            ax_psnr.plot(seen, [p[key] for p in points], marker=".", label=label)
    for label, value in (baselines or {}).items():
        ax_psnr.axhline(value, linestyle="--", linewidth=1, color="grey")
        ax_psnr.annotate(label, (seen[0] if seen else 0, value), fontsize=8, xytext=(2, 2), textcoords="offset points")
    ax_psnr.set_xlabel("images seen")
    from matplotlib.ticker import EngFormatter
    for ax in (ax_loss, ax_psnr):  # 80k, not 80000 (long runs' tick labels ran into each other)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax_psnr.set_ylabel("PSNR (dB)")
    ax_psnr.grid(True, alpha=0.3)
    ax_psnr.legend(fontsize=8)
    fig.suptitle(title or "training curve")
    _savefig(fig, Path(path))
    plt.close(fig)
    return Path(path)


def training_data_words(report: dict) -> str:
    """A run report's training data in words, for report.md: 'online:0:64' becomes '1,920,000 fresh random-resized
    64 px crops (seed 0) of 20 photos and 480 video frames'; a fixed set, '50,000 fixed training images'."""
    described = str(report.get("train_images", ""))
    data = report.get("train_data") or {}
    seen = int(report.get("steps", 0)) * int(report.get("batch_size", 0)) * int(report.get("world_size", 1))
    if described.startswith("online:"):
        _, seed, size = described.split(":")
        sources = " and ".join(part for part in (
            f"{data['photos']} photos" if data.get("photos") else "",
            f"{data['video_frames']} video frames" if data.get("video_frames") else "") if part)
        return (f"{seen:,} fresh random-resized {size} px crops (seed {seed})"
                + (f" of {sources}" if sources else ""))
    if data.get("kind") == "fixed images":
        return f"{data['count']:,} fixed training images"
    return f"{described} training images"
