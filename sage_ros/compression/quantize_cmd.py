"""`sage-ros quantize`: INT8 / packed INT4 weight quantization of a trained model into a run directory.

    sage-ros quantize --model runs/t16 --scheme int4 --group-size 64 --rounding mse --out runs/t16-int4

Writes <out>/model.<scheme>.safetensors (loadable alone with quantize.load_quantized), <out>/model.fp32.safetensors
(the float reference the size ratio divides by), report.json (per-tensor list: shape, scheme, bytes, weight error
with min/max and with the chosen rounding), report.md and progress.json. Unless --no-eval, the float model and the
model rebuilt from the quantized file are evaluated on the held-out split (evaluate_pair).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .datasets import SOURCES


class ModelSourceError(ValueError):
    """--model names nothing loadable as a float sage_ros model."""


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path,
                        help="trained run directory or its model.safetensors (float weights + model.json)")


def add_data_arguments(parser: argparse.ArgumentParser, split: str = "test", limit: int = 0) -> None:
    g = parser.add_argument_group("evaluation data")
    g.add_argument("--data", choices=SOURCES, default="bundled", help="image source (default: %(default)s)")
    g.add_argument("--data-path", default=None, help="data root / folder / bag for the chosen source")
    g.add_argument("--topic", default=None, help="image topic for --data rosbag")
    g.add_argument("--split", default=split, choices=("train", "val", "test"),
                   help="held-out split to measure on (default: %(default)s)")
    g.add_argument("--limit", type=int, default=limit, help="at most this many images (0: all)")
    g.add_argument("--batch-size", type=int, default=256)


def add_calibration_arguments(parser: argparse.ArgumentParser, title: str) -> None:
    g = parser.add_argument_group(title)
    g.add_argument("--calibration", choices=SOURCES, default="bundled", help="calibration image source")
    g.add_argument("--calibration-path", default=None)
    g.add_argument("--calibration-topic", default=None)
    g.add_argument("--calibration-split", choices=("train", "val"), default="val",
                   help="never the test split the numbers are reported on (default: %(default)s)")
    g.add_argument("--calibration-count", type=int, default=256, help="calibration images")


def calibration_images(args, size: int):
    """uint8 NHWC calibration images from the --calibration* options."""
    from .datasets import load_images

    return load_images(args.calibration, size, args.calibration_split, path=args.calibration_path,
                       topic=args.calibration_topic, limit=args.calibration_count or None)


def calibration_tensor(args, model):
    """Calibration images as a float NCHW tensor in the model's input range (for rounding="gptq")."""
    import torch

    from .datasets import to_model_input

    return to_model_input(torch.from_numpy(calibration_images(args, model.image_size)), model.input_range)


def load_float_model(path: Path):
    """A trained float model from a run dir / model.safetensors (checkpoints.load_model)."""
    from .checkpoints import CheckpointError, load_model
    from .quantize import FORMAT, QuantizationError, read_metadata

    try:
        return load_model(path)
    except CheckpointError as exc:
        try:
            if Path(path).is_file() and read_metadata(path).get("format") == FORMAT:
                raise ModelSourceError(f"{path} is already quantized; give the float model it came from") from None
        except QuantizationError:
            pass
        raise ModelSourceError(str(exc)) from None


def load_images_from_args(args, size: int, split: str | None = None, limit: int | None = None):
    from .datasets import load_images

    limit = args.limit if limit is None else limit
    return load_images(args.data, size, split or args.split, path=args.data_path, topic=args.topic,
                       limit=limit or None)


def created_by(args: argparse.Namespace, verb: str) -> str:
    """The command line that reproduces this run, rebuilt from the parsed options."""
    parts = ["sage-ros", verb]
    for key, value in vars(args).items():
        if key in ("func", "verb") or value is None or value is False or value == []:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):  # action="append" options: one flag per value
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return " ".join(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("--scheme", choices=("int8", "int4"), required=True)
    parser.add_argument("--group-size", type=int, default=64, help="INT4 group size along the input dim")
    parser.add_argument("--rounding", choices=("minmax", "mse", "gptq"), default=None,
                        help="scale choice (default: minmax for int8, mse for int4); gptq: Linear layers with "
                             "GPTQ error compensation on the --calibration images")
    parser.add_argument("--conv-scheme", choices=("int4", "int8"), default="int4",
                        help="int4 only: give convolutions INT8 instead (Linear layers stay INT4)")
    parser.add_argument("--out", "--run-dir", dest="out", type=Path, required=True,
                        help="run directory to write into (--run-dir: the name compression_node jobs pass)")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    add_data_arguments(parser, limit=1024)
    add_calibration_arguments(parser, "calibration (--rounding gptq only)")


def make_config(scheme: str, rounding: str | None, group_size: int, conv_scheme: str = "int4"):
    from .quantize import Int4Config, Int8Config

    if scheme == "int8":
        return Int8Config(rounding=rounding or "minmax")
    return Int4Config(group_size=group_size, rounding=rounding or "mse", conv_scheme=conv_scheme)


def run(args: argparse.Namespace) -> int:
    import copy

    from sage_ros.atomic import atomic_write_json, atomic_write_text, output_dir

    from .evaluate import evaluate_pair
    from .progress import ProgressWriter
    from .quantize import load_quantized, quantize_, save_float, save_quantized
    from .report import quantize_markdown

    out = Path(args.out)
    progress = ProgressWriter(out, "quantize")
    with output_dir(out), progress.fail_on_error():  # a failed run leaves no --out it created
        progress.update("loading", 0, 3, force=True)
        model = load_float_model(args.model)
        config = make_config(args.scheme, args.rounding, args.group_size, args.conv_scheme)
        progress.update("quantizing", 1, 3, force=True)
        t0 = time.perf_counter()
        calibration = calibration_tensor(args, model) if config.rounding == "gptq" else None
        qmodel = quantize_(copy.deepcopy(model), config, calibration=calibration)
        seconds = time.perf_counter() - t0
        qfile = save_quantized(qmodel, out / f"model.{args.scheme}.safetensors")
        ffile = save_float(model, out / "model.fp32.safetensors")
        report = {
            "schema": "sage_ros.quantize/1", "created_by": created_by(args, "quantize"),
            "source_model": str(args.model),
            "architecture": type(model).__name__, "latent_dim": int(model.latent_dim),
            "files": {"quantized": qfile.name, "fp32": ffile.name},
            "bytes": {"quantized": qfile.stat().st_size, "fp32": ffile.stat().st_size},
            "quantize_seconds": seconds, **qmodel.quantization_report,
        }
        report["ratio_vs_fp32"] = report["bytes"]["fp32"] / report["bytes"]["quantized"]
        if not args.no_eval:
            progress.update("evaluating", 2, 3, force=True)
            images = load_images_from_args(args, model.image_size)
            report["evaluation"] = {"data": args.data, "split": args.split,
                                    **evaluate_pair(model, load_quantized(qfile), images, args.batch_size)}
        atomic_write_json(out / "report.json", report)
        atomic_write_text(out / "report.md", quantize_markdown(report))
        progress.finish()
    print(f"{qfile} ({report['bytes']['quantized']} B, {report['ratio_vs_fp32']:.2f}x smaller than fp32); "
          f"report: {out / 'report.md'}")
    return 0
