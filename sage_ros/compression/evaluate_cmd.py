"""`sage-ros evaluate`: held-out evaluation of a trained float model against its compressed copies.

    sage-ros evaluate --model runs/t16 --out runs/t16-eval [--bundle models/tinyvae16_int8 ...] [--gptq]

Into --out: model.fp32.safetensors (the float reference file every ratio divides by), model.int8.safetensors,
model.int4-minmax.safetensors, model.int4-mse.safetensors, model.int4-mse-conv8.safetensors (INT4 Linear +
INT8 convolutions) [+ model.int4-gptq*.safetensors], each evaluated after being rebuilt from its file alone;
pca.safetensors (the PCA baseline's basis: written so its size is a real file, then removed unless --keep-pca),
report.json (schema in docs/quantization.md), report.md,
recon_grid.png (original / float / INT8 / INT4 / bundles) and rate_distortion.png (PSNR vs bytes).
ONNX bundles given with --bundle are run with onnxruntime, so what is measured is the graph that ships.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

from .quantize_cmd import (add_calibration_arguments, add_data_arguments, add_model_argument, calibration_tensor,
                           created_by, load_float_model)

SCHEMA = "sage_ros.evaluate/1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("--out", "--run-dir", dest="out", type=Path, required=True,
                        help="run directory to write into (--run-dir: the name compression_node jobs pass)")
    parser.add_argument("--group-size", type=int, default=64, help="INT4 group size")
    parser.add_argument("--int8-rounding", choices=("minmax", "mse"), default="minmax")
    parser.add_argument("--bundle", type=Path, action="append", default=[],
                        help="also evaluate this ONNX bundle directory with onnxruntime (repeatable)")
    parser.add_argument("--quantized", type=Path, action="append", default=[],
                        help="also evaluate this existing quantized .safetensors (from sage-ros quantize; repeatable)")
    parser.add_argument("--gptq", action="store_true",
                        help="also int4-gptq and int4-gptq-conv8 (GPTQ on the Linear layers, --calibration images)")
    parser.add_argument("--no-pca", action="store_true", help="skip the PCA baseline")
    parser.add_argument("--keep-pca", action="store_true",
                        help="keep pca.safetensors (by default it is written, measured and removed: at 224 px "
                             "the basis is hundreds of MB)")
    parser.add_argument("--pca-train-limit", type=int, default=4000, help="train images for the PCA fit")
    parser.add_argument("--grid", type=int, default=8, help="images in recon_grid.png")
    g = parser.add_argument_group("VisionPuzzleVAE baselines and diagnostics")
    g.add_argument("--no-palette", action="store_true",
                   help="skip the palette baseline (30 x 30 cells, each the nearest of a 10-colour k-means palette "
                        "fitted on the train split, bilinearly upsampled)")
    g.add_argument("--palette-train-limit", type=int, default=3000, help="train images for the palette fit")
    g.add_argument("--windows", type=int, default=0,
                   help="also measure on this many windows of many sizes and aspects cut from the held-out split's "
                        "source photos/frames and area-resized to the input (as the node sees frames); 0: off")
    g.add_argument("--windows-seed", type=int, default=9, help="seed of the --windows draw")
    add_data_arguments(parser)
    add_calibration_arguments(parser, "calibration (--gptq only)")


def _torch_variants(group_size: int, int8_rounding: str, gptq: bool) -> list[tuple[str, object]]:
    from .quantize import Int4Config, Int8Config

    extra = [("int4-gptq", Int4Config(group_size=group_size, rounding="gptq")),
             ("int4-gptq-conv8", Int4Config(group_size=group_size, rounding="gptq", conv_scheme="int8"))]
    return [("int8", Int8Config(rounding=int8_rounding)),
            ("int4-minmax", Int4Config(group_size=group_size, rounding="minmax")),
            ("int4-mse", Int4Config(group_size=group_size, rounding="mse")),
            ("int4-mse-conv8", Int4Config(group_size=group_size, rounding="mse", conv_scheme="int8"))] + \
        (extra if gptq else [])


def _evaluate_torch_variant(model, name, config, out: Path, images, fp32_bytes, batch_size,
                            calibration=None) -> tuple[dict, object]:
    from .evaluate import evaluate_pair
    from .quantize import config_to_dict, load_quantized, quantize_, save_quantized

    qmodel = quantize_(copy.deepcopy(model), config, calibration=calibration)
    path = save_quantized(qmodel, out / f"model.{name}.safetensors")
    loaded = load_quantized(path)  # evaluate what the file rebuilds, not the in-memory copy
    size = path.stat().st_size
    result = {"name": name, "kind": "torch", "file": path.name, "config": config_to_dict(config), "bytes": size,
              "ratio_vs_fp32": fp32_bytes / size, **evaluate_pair(model, loaded, images, batch_size),
              "weight_mse": loaded.quantization_report["weight_mse"],
              "weight_mse_minmax": loaded.quantization_report["weight_mse_minmax"],
              "tensors": loaded.quantization_report["tensors"]}
    return result, loaded


def _evaluate_file(model, path: Path, images, fp32_bytes, batch_size) -> dict:
    from .evaluate import evaluate_pair
    from .quantize import config_to_dict, load_quantized

    loaded = load_quantized(path)
    size = path.stat().st_size
    return {"name": f"file:{path.name}", "kind": "torch", "file": str(path),
            "config": config_to_dict(loaded.quantization_config), "bytes": size, "ratio_vs_fp32": fp32_bytes / size,
            **evaluate_pair(model, loaded, images, batch_size),
            "weight_mse": loaded.quantization_report["weight_mse"],
            "weight_mse_minmax": loaded.quantization_report["weight_mse_minmax"],
            "tensors": loaded.quantization_report["tensors"]}


def _evaluate_bundle(model, bundle_dir: Path, images, fp32_bytes, batch_size) -> tuple[dict, object]:
    from .evaluate import OnnxCodec, evaluate_pair

    codec = OnnxCodec(bundle_dir)
    meta = codec.meta
    files = [bundle_dir / meta.get(part, {}).get("file", f"{part}.onnx") for part in ("encoder", "decoder")]
    size = sum(f.stat().st_size for f in files)
    quant = meta.get("quantization", {})
    onnx_fp32 = sum(quant.get("onnx_bytes_fp32", {}).values()) or (size if meta["precision"] == "fp32" else None)
    result = {"name": f"onnx-{meta['precision']} ({meta['name']})", "kind": "onnx", "bundle": str(bundle_dir),
              "precision": meta["precision"], "bytes": size, "ratio_vs_fp32": fp32_bytes / size,
              "ratio_vs_fp32_onnx": (onnx_fp32 / size) if onnx_fp32 else None,
              "ratio_note": "bytes = encoder.onnx + decoder.onnx",
              **evaluate_pair(model, codec, images, batch_size)}
    return result, codec


def _rounding_gain(variants: list[dict]) -> dict | None:
    by_name = {v["name"]: v for v in variants}
    if "int4-minmax" not in by_name or "int4-mse" not in by_name:
        return None
    keys = ("weight_mse", "mse", "psnr", "ssim", "mu_rel_l2")
    mm, ms = ({k: by_name[n][k] for k in keys} for n in ("int4-minmax", "int4-mse"))
    gain = {"minmax": mm, "mse": ms, "psnr_gain_db": ms["psnr"] - mm["psnr"],
            "weight_mse_reduction_pct": 100.0 * (1 - ms["weight_mse"] / mm["weight_mse"])}
    if "int4-gptq" in by_name:
        gain["gptq"] = {k: by_name["int4-gptq"][k] for k in keys}
    return gain


def _pca(args, model, images, out: Path) -> dict:
    """PCA with as many components as the model has latent values; its basis is saved so its size is real."""
    from safetensors.torch import save_file

    from sage_ros.atomic import atomic_path

    from .evaluate import pca_baseline
    from .quantize_cmd import load_images_from_args

    k = 900 if hasattr(model, "num_codes") else int(model.latent_dim)  # VQ: 30 x 30 code values
    train = load_images_from_args(args, model.image_size, split="train", limit=args.pca_train_limit)
    result = pca_baseline(train, images, k, return_basis=True)
    basis, mean = result.pop("basis"), result.pop("mean")
    path = out / "pca.safetensors"
    with atomic_path(path) as tmp:
        save_file({"basis": basis.contiguous(), "mean": mean.contiguous()}, str(tmp))
    result.update(file=path.name, bytes=path.stat().st_size, file_kept=bool(args.keep_pca))
    if not args.keep_pca:
        path.unlink()
    return result


def held_out_windows(size: int, count: int, seed: int, split: str = "test", root=None):
    """uint8 windows from `split`'s source images (augment.OnlineCrops without colour jitter): log-uniform
    window areas from 10 % of the short side to all of it, aspect 9:16..16:9, area-resized to size x size."""
    from .augment import TrainSources, held_out_windows as windows_of

    return windows_of(TrainSources.load(root, split=split), size, count, seed, flip=True)


def _puzzle_extras(args, model, images, bundles: list) -> dict:
    """VQ model: palette baseline, code usage + per-code pixel statistics, and (--windows) the same on windows."""
    from .evaluate import evaluate_pair, evaluate_single, palette_baseline
    from .quantize_cmd import load_images_from_args
    from .vq import code_statistics

    extras = {"codes": code_statistics(model, images)}
    train = None
    if not args.no_palette:
        train = load_images_from_args(args, model.image_size, split="train", limit=args.palette_train_limit)
        extras["palette"] = palette_baseline(train, images)
    if args.windows > 0:
        windows = held_out_windows(model.image_size, args.windows, args.windows_seed, args.split, args.data_path)
        rows = [{"name": "fp32", "kind": "torch", **evaluate_single(model, windows, args.batch_size)}]
        for bundle_dir in bundles:
            result = evaluate_pair(model, str(bundle_dir), windows, args.batch_size)
            rows.append({"name": Path(bundle_dir).name, "kind": "onnx", **{k: result.get(k) for k in (
                "mse", "psnr", "ssim", "code_agreement", "codes_used", "code_perplexity")}})
        if train is not None:
            pal = palette_baseline(train, windows)
            rows.append({"name": "palette 10 x 30x30", "kind": "baseline",
                         **{k: pal[k] for k in ("mse", "psnr", "ssim", "codes_used", "code_perplexity")}})
        stats = code_statistics(model, windows)
        rows[0].update(codes_used=stats["codes_used"], code_perplexity=stats["code_perplexity"])
        extras["windows"] = {"n_images": int(len(windows)), "seed": int(args.windows_seed), "split": args.split,
                             "what": "windows of many sizes/aspects from the split's source images, area-resized",
                             "rows": rows}
    return extras


def run(args: argparse.Namespace) -> int:
    from sage_ros.atomic import atomic_write_json, atomic_write_text, output_dir

    from .evaluate import evaluate_single, reconstruct
    from .progress import ProgressWriter
    from .quantize import save_float
    from .quantize_cmd import load_images_from_args
    from .report import evaluate_markdown, plot_rate_distortion, plot_recon_grid

    out = Path(args.out)
    progress = ProgressWriter(out, "evaluate")
    with output_dir(out), progress.fail_on_error():  # a failed run leaves no --out it created
        model = load_float_model(args.model)
        images = load_images_from_args(args, model.image_size)
        variants_cfg = _torch_variants(args.group_size, args.int8_rounding, args.gptq)
        calibration = calibration_tensor(args, model) if args.gptq else None
        steps = len(variants_cfg) + 3 + len(args.bundle) + len(args.quantized)
        progress.update("float reference", 0, steps, force=True)
        fp32_path = save_float(model, out / "model.fp32.safetensors")
        fp32_bytes = fp32_path.stat().st_size
        reference = {"file": fp32_path.name, "bytes": fp32_bytes, **evaluate_single(model, images, args.batch_size)}
        variants, grid_models = [], [("float", model)]
        for i, (name, config) in enumerate(variants_cfg):
            progress.update(f"quantize + evaluate {name}", 1 + i, steps, force=True)
            result, loaded = _evaluate_torch_variant(model, name, config, out, images, fp32_bytes, args.batch_size,
                                                     calibration if config.rounding == "gptq" else None)
            variants.append(result)
            labels = {"int8": "INT8", "int4-mse": "INT4", "int4-mse-conv8": "INT4 lin+INT8 conv",
                      "int4-gptq-conv8": "INT4 GPTQ+INT8 conv"}
            if name in labels:
                grid_models.append((labels[name], loaded))
        for path in args.quantized:
            progress.update(f"file {path}", len(variants), steps, force=True)
            variants.append(_evaluate_file(model, Path(path), images, fp32_bytes, args.batch_size))
        for i, bundle_dir in enumerate(args.bundle):
            progress.update(f"bundle {bundle_dir}", len(variants), steps, force=True)
            result, codec = _evaluate_bundle(model, Path(bundle_dir), images, fp32_bytes, args.batch_size)
            variants.append(result)
            grid_models.append((codec.meta["name"], codec))
        progress.update("PCA baseline", steps - 2, steps, force=True)
        pca = None if args.no_pca else _pca(args, model, images, out)
        puzzle = _puzzle_extras(args, model, images, args.bundle) if hasattr(model, "num_codes") else {}
        progress.update("report", steps - 1, steps, force=True)
        report = {
            "schema": SCHEMA, "created_by": created_by(args, "evaluate"), "source_model": str(args.model),
            "model": {"architecture": type(model).__name__, "latent_dim": int(model.latent_dim),
                      "image_size": int(model.image_size)},
            "data": {"source": args.data, "split": args.split, "n_images": int(len(images)),
                     "size": int(model.image_size)},
            "reference": reference, "variants": variants, "pca": pca, "rounding_gain": _rounding_gain(variants),
            **puzzle,
        }
        if "codes" in puzzle:
            reference.update(codes_used=puzzle["codes"]["codes_used"],
                             code_perplexity=puzzle["codes"]["code_perplexity"])
        atomic_write_json(out / "report.json", report)
        sample = images[: args.grid]
        plot_recon_grid(out / "recon_grid.png",
                        [("original", sample)] + [(label, reconstruct(m, sample)) for label, m in grid_models])
        points = [{"label": "fp32", "bytes": fp32_bytes, "psnr": reference["psnr"], "kind": "reference"}]
        points += [{"label": v["name"] if v["kind"] == "torch" else v["name"].split("(")[-1].rstrip(")"),
                    "bytes": v["bytes"], "psnr": v["psnr"], "kind": v["kind"]} for v in variants]
        if puzzle.get("palette"):
            pal = puzzle["palette"]
            points.append({"label": "palette 10 x 30x30", "bytes": len(pal["palette"]) * 3 * 4, "psnr": pal["psnr"],
                           "kind": "baseline"})
        if pca:
            points.append({"label": f"PCA k={pca['n_components']}", "bytes": pca["bytes"], "psnr": pca["psnr"],
                           "kind": "baseline"})
        plot_rate_distortion(out / "rate_distortion.png", points,
                             f"{type(model).__name__} L={model.latent_dim}, {args.data}/{args.split}")
        atomic_write_text(out / "report.md", evaluate_markdown(report))
        progress.finish()
    print(f"report: {out / 'report.md'}")
    return 0
