"""`sage-ros quantize`: INT8 / packed INT4 weight quantization of a trained model into a run directory.

    sage-ros quantize --run runs/t16 --scheme int4 --group-size 64 --rounding mse --out runs/t16-int4

Writes <out>/model.<scheme>.safetensors (loadable alone with quantize.load_quantized), <out>/model.fp32.safetensors
(the float reference the size ratio divides by), report.json (per-tensor list: shape, scheme, bytes, weight error
with min/max and with the chosen rounding), report.md and progress.json. Unless --no-eval, the float model and the
model rebuilt from the quantized file are evaluated on the held-out split (evaluate_pair).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from sage_ros.usage import model_source, new_output, non_negative_int, positive_int, renamed

from .datasets import SOURCES

# Held-out images a float model is checked on when no --limit is given: all of the split, as `train` measures
# (one default, so the float PSNR that quantize/evaluate/export print equals the one train printed).
HELD_OUT_LIMIT = 0


class ModelSourceError(ValueError):
    """--run names nothing loadable as a float sage_ros model."""


def add_model_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--run", "--model", dest="run", required=required, type=model_source,
                        action=renamed("--model"),
                        help="the float model: a trained run directory (--run-dir of `sage-ros train`), its "
                             "model.safetensors, or a bundle directory with float weights (model.safetensors + "
                             "bundle.json); --model: deprecated spelling")


def add_out_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--out", "--run-dir", dest="out", type=new_output, required=True, help=help_text)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (progress.json is still written)")


def add_data_arguments(parser: argparse.ArgumentParser, split: str = "test", limit: int = 0) -> None:
    g = parser.add_argument_group("evaluation data")
    g.add_argument("--data", choices=SOURCES, default="bundled", help="image source (default: %(default)s)")
    g.add_argument("--data-path", default=None, help="data root / folder / bag for the chosen source")
    g.add_argument("--topic", default=None, help="image topic for --data rosbag")
    g.add_argument("--split", default=split, choices=("train", "val", "test"),
                   help="held-out split to measure on (default: %(default)s)")
    g.add_argument("--limit", type=non_negative_int, default=limit, help="at most this many images (0: all)")
    g.add_argument("--batch-size", type=positive_int, default=256)


def add_calibration_arguments(parser: argparse.ArgumentParser, title: str) -> None:
    g = parser.add_argument_group(title)
    g.add_argument("--calibration", choices=SOURCES, default="bundled", help="calibration image source")
    g.add_argument("--calibration-path", default=None)
    g.add_argument("--calibration-topic", default=None)
    g.add_argument("--calibration-split", choices=("train", "val"), default="val",
                   help="never the test split the numbers are reported on (default: %(default)s)")
    g.add_argument("--calibration-count", type=positive_int, default=256, help="calibration images")


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
    """A trained float model from a run dir / model.safetensors (checkpoints.load_model) or a bundle directory
    with float torch weights; ModelSourceError (one line, naming the path) for anything else."""
    from .checkpoints import CheckpointError, load_model
    from .quantize import FORMAT, QuantizationError, read_metadata

    path = Path(path)
    if path.is_file() and (path.parent / "bundle.json").is_file():
        path = path.parent  # a file inside a bundle: the bundle
    if path.is_dir() and (path / "bundle.json").is_file():
        return _bundle_float_model(path)
    try:
        return load_model(path)
    except (OSError, RuntimeError) as exc:  # unreadable, or not safetensors (SafetensorError is an Exception)
        raise ModelSourceError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    except Exception as exc:
        if type(exc).__name__ == "SafetensorError":
            raise ModelSourceError(f"cannot read {path}: not a safetensors file ({exc})") from None
        if not isinstance(exc, CheckpointError):
            raise
        try:
            if Path(path).is_file() and read_metadata(path).get("format") == FORMAT:
                raise ModelSourceError(f"{path} is already quantized; give the float model it came from") from None
        except QuantizationError:
            pass
        raise ModelSourceError(str(exc)) from None


def _bundle_float_model(path: Path):
    """The float torch model a bundle carries (its model.safetensors, architecture from bundle.json)."""
    from sage_ros.runtime.backends.base import BackendError
    from sage_ros.runtime.backends.torch_backend import TorchBackend
    from sage_ros.runtime.bundle import load_bundle

    bundle = load_bundle(path)  # BundleError (checksums, graphs) is a one-line user error too
    weights = bundle.meta.get("torch_weights")
    if weights is None or bundle.meta.get("torch_weights_format") == "sage_ros.quantized":
        held = f"holds quantized weights ({weights})" if weights else "holds no torch weights"
        source = exported_from(bundle.meta)
        raise ModelSourceError(f"bundle {path} {held}, not a float model: give an fp32 bundle or the run it was "
                               f"exported from ({source or 'see created_by in its bundle.json'})")
    try:
        return TorchBackend(bundle, "cpu").model.eval()
    except BackendError as exc:
        raise ModelSourceError(str(exc)) from None


def exported_from(meta: dict) -> str | None:
    """The --run (or old --model) of a bundle's created_by: the float model it was exported from."""
    import shlex

    try:
        words = shlex.split(str(meta.get("created_by", "")))
    except ValueError:
        return None
    given = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--run", "--model")]
    return given[0] if given else None


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
    add_out_argument(parser, "run directory to write into (--run-dir: the name compression_node jobs pass)")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    add_progress_argument(parser)
    add_data_arguments(parser, limit=HELD_OUT_LIMIT)
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
    from .phases import PhaseBar
    from .progress import ProgressWriter
    from .quantize import load_quantized, quantize_, save_float, save_quantized
    from .report import quantize_markdown

    model = load_float_model(args.run)  # before --out exists: a wrong --run leaves nothing behind
    config = make_config(args.scheme, args.rounding, args.group_size, args.conv_scheme)
    with output_dir(args.out) as out:
        progress = ProgressWriter(out, "quantize")
        with progress.fail_on_error(), PhaseBar(progress, 2 if args.no_eval else 3, "quantize",
                                                enabled=not args.no_progress) as bar:
            bar.phase(f"quantizing ({args.scheme})")
            t0 = time.perf_counter()
            calibration = calibration_tensor(args, model) if config.rounding == "gptq" else None
            qmodel = quantize_(copy.deepcopy(model), config, calibration=calibration)
            seconds = time.perf_counter() - t0
            qfile = save_quantized(qmodel, out / f"model.{args.scheme}.safetensors")
            ffile = save_float(model, out / "model.fp32.safetensors")
            report = {
                "schema": "sage_ros.quantize/1", "created_by": created_by(args, "quantize"),
                "source_model": str(args.run),
                "architecture": type(model).__name__, "latent_dim": int(model.latent_dim),
                "files": {"quantized": qfile.name, "fp32": ffile.name},
                "bytes": {"quantized": qfile.stat().st_size, "fp32": ffile.stat().st_size},
                "quantize_seconds": seconds, **qmodel.quantization_report,
            }
            report["ratio_vs_fp32"] = report["bytes"]["fp32"] / report["bytes"]["quantized"]
            if not args.no_eval:
                bar.phase(f"evaluating on {args.data}/{args.split}")
                images = load_images_from_args(args, model.image_size)
                report["evaluation"] = {"data": args.data, "split": args.split,
                                        **evaluate_pair(model, load_quantized(qfile), images, args.batch_size)}
            bar.phase("report")
            atomic_write_json(out / "report.json", report)
            atomic_write_text(out / "report.md", quantize_markdown(report))
            progress.finish()
    print(f"{qfile} ({report['bytes']['quantized']} B, {report['ratio_vs_fp32']:.2f}x smaller than fp32); "
          f"report: {out / 'report.md'}")
    return 0
