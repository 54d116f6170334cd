"""The `sage-ros` command: a thin dispatcher over the parts of the package.

Each verb lives in its own module, which exposes `add_arguments(parser)` and `run(args) -> int`. Modules are
imported only when their verb runs, so `sage-ros bag play` never pays for (or needs) torch.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

# verb -> (module, one-line help). `bag` has sub-verbs of its own.
VERBS = {
    "train": ("sage_ros.compression.train_cmd", "train any of the four models"),
    "distill": ("sage_ros.compression.distill_cmd", "distil the StandardVAE teacher into TinyVAE32"),
    "quantize": ("sage_ros.compression.quantize_cmd", "INT8 / packed INT4 weight quantization"),
    "ablate": ("sage_ros.compression.ablate_cmd", "TinyVAE latent-size x precision sweep"),
    "evaluate": ("sage_ros.compression.evaluate_cmd", "held-out evaluation of float vs compressed models"),
    "export": ("sage_ros.compression.export_cmd", "write a model bundle (ONNX + bundle.json)"),
    "bench": ("sage_ros.bench_cmd", "run the benchmarks"),
    "demo": ("sage_ros.demo", "bag play -> encoders -> bag record, with a summary and a contact sheet"),
}
BAG_VERBS = {
    "play": ("sage_ros.bag.play", "publish a rosbag2 bag on live topics"),
    "record": ("sage_ros.bag.record", "record live topics to an mcap bag"),
    "encode": ("sage_ros.bag.encode", "encode a bag's image topic into latents offline"),
    "recover": ("sage_ros.bag.recover", "turn a partial or truncated bag into a complete one (its intact prefix)"),
}


def _add_lazy(subparsers, table: dict, argv_verb: str | None) -> None:
    for verb, (module, help_text) in table.items():
        parser = subparsers.add_parser(verb, help=help_text, description=help_text)
        if verb == argv_verb:  # import only the module that will run
            mod = importlib.import_module(module)
            mod.add_arguments(parser)
            parser.set_defaults(func=mod.run)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sage-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    verb = argv[0] if argv else None
    _add_lazy(sub, VERBS, verb)
    bag = sub.add_parser("bag", help="rosbag2 play / record / encode")
    bag_sub = bag.add_subparsers(dest="bag_verb", required=True)
    _add_lazy(bag_sub, BAG_VERBS, argv[1] if verb == "bag" and len(argv) > 1 else None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OSError as exc:  # a full disk, a read-only or missing path: one line naming it and the errno
        if exc.errno not in DISK_ERRNOS:
            raise
        from sage_ros.atomic import os_error_text

        verb = " ".join(v for v in (args.verb, getattr(args, "bag_verb", None)) if v)
        print(f"sage-ros {verb}: error: {os_error_text(exc)}", file=sys.stderr)
        return 1


DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR,
               errno.EISDIR, errno.EIO}


if __name__ == "__main__":
    sys.exit(main())
