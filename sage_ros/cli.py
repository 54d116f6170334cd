"""The `sage-ros` command: a thin dispatcher over the parts of the package.

Each verb lives in its own module, which exposes `add_arguments(parser)` and `run(args) -> int`. Modules are
imported only when their verb runs, so `sage-ros bag play` never pays for (or needs) torch.

A user's mistake ends in one line on stderr (sage_ros/usage.py): exit 2 for a bad command line, 1 for a failure
while working (the exceptions in USER_ERRORS); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys
import threading

# verb -> (module, one-line help). `bag` has sub-verbs of its own.
VERBS = {
    "train": ("sage_ros.compression.train_cmd", "train a model (--arch picks which; resumes if interrupted)"),
    "distill": ("sage_ros.compression.distill_cmd", "distil the StandardVAE teacher into TinyVAE32"),
    "quantize": ("sage_ros.compression.quantize_cmd", "INT8 / packed INT4 weight quantization"),
    "ablate": ("sage_ros.compression.ablate_cmd", "TinyVAE latent-size x precision sweep"),
    "evaluate": ("sage_ros.compression.evaluate_cmd",
                 "held-out evaluation: a float model vs its compressed copies, or bundles on their own"),
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


# Exceptions that mean "the input was wrong", not "the code is wrong": one line, exit 1. Matched by class name
# (a sage_ros class, or a subclass of one), so nothing is imported to check them and a class that moves to
# another module still matches; test/test_cli_errors.py checks that every entry still exists where listed.
USER_ERRORS = {
    "sage_ros.runtime.bundle": ("BundleError",),
    "sage_ros.runtime.backends.base": ("BackendError",),
    "sage_ros.runtime.image_codec": ("ImageConversionError",),
    "sage_ros.data.errors": ("DataError", "DataNotFoundError"),
    "sage_ros.bag.common": ("BagError",),
    "sage_ros.compression.checkpoints": ("CheckpointError",),
    "sage_ros.compression.datasets": ("DatasetError",),
    "sage_ros.compression.evaluate": ("EvaluationError",),
    "sage_ros.compression.quantize": ("QuantizationError",),
    "sage_ros.compression.quantize_cmd": ("ModelSourceError",),
    "sage_ros.compression.onnx_quant": ("OnnxQuantError",),
    "sage_ros.compression.jobs": ("JobSpecError",),
    "sage_ros.demo.common": ("DemoError",),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse with its error as one line (the usage block is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _is_user_error(exc: BaseException) -> bool:
    names = {name for listed in USER_ERRORS.values() for name in listed}
    return any(cls.__name__ in names and cls.__module__.startswith("sage_ros.") for cls in type(exc).__mro__)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _add_lazy(subparsers, table: dict, argv_verb: str | None) -> None:
    for verb, (module, help_text) in table.items():
        parser = subparsers.add_parser(verb, help=help_text, description=help_text)
        if verb == argv_verb:  # import only the module that will run
            mod = importlib.import_module(module)
            mod.add_arguments(parser)
            parser.set_defaults(func=mod.run)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="sage-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    verb = argv[0] if argv else None
    _add_lazy(sub, VERBS, verb)
    bag = sub.add_parser("bag", help="rosbag2 play / record / encode")
    bag_sub = bag.add_subparsers(dest="bag_verb", required=True)
    _add_lazy(bag_sub, BAG_VERBS, argv[1] if verb == "bag" and len(argv) > 1 else None)
    return parser


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: context managers remove what a failed run created


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # verbs with their own handling install theirs
        signal.signal(signal.SIGTERM, _terminate)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    prog = " ".join(["sage-ros", args.verb] + ([args.bag_verb] if args.verb == "bag" else []))
    from sage_ros.usage import UsageError

    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"{prog}: error: {_one_line(exc)} (see: {prog} --help)", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only or missing path: one line naming it (and the errno)
        known = isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError))
        if exc.errno not in DISK_ERRNOS and not known and not _is_user_error(exc):
            raise
        from sage_ros.atomic import os_error_text

        text = os_error_text(exc) if exc.errno is not None else _one_line(exc)
        print(f"{prog}: error: {text}", file=sys.stderr)
        return 1
    except ImportError as exc:  # SIGTERM / Ctrl-C inside a lazy import of a C extension surfaces as ImportError
        interrupt = exc.__cause__ or exc.__context__
        if isinstance(interrupt, (SystemExit, KeyboardInterrupt)):
            raise interrupt from None
        raise
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR,
               errno.EISDIR, errno.EIO}


if __name__ == "__main__":
    sys.exit(main())
