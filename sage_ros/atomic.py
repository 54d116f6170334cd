"""Atomic file writes (temp file in the same directory + fsync + rename), so a crash never leaves half a file.

No torch, no rclpy: every layer may use this module.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path`, on error removed.

    For writers that insist on a file name (torch.save, onnx.save, cv2.imwrite, matplotlib); keep `suffix`
    equal to the real extension where the writer picks a format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600 (and some writers replace the file): give the result the permissions a plain
        # open() would, 0666 minus umask, just before it takes the real name.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def os_error_text(exc: OSError, path: str | os.PathLike | None = None) -> str:
    """One line naming the path and the errno of an OSError: '/mnt/out.mcap: No space left on device (errno 28
    ENOSPC)'. `path` names the file when the error carries none (a failed write() on an open file)."""
    where = exc.filename if exc.filename is not None else path
    if where is not None and exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    code = f"errno {exc.errno} {errno.errorcode.get(exc.errno, '?')}" if exc.errno is not None else type(exc).__name__
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {reason} ({code})" if where is not None else f"{reason} ({code})"


@contextlib.contextmanager
def output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """`path`, created (with parents) if missing; when the block fails (an exception, Ctrl-C, or SIGTERM, which
    `sage-ros` turns into SystemExit) a `path` that did not exist before is removed again, with what the block
    wrote, so a failed run leaves no empty or half-filled directory behind. A directory that existed before (a
    compression_node job's run directory, which it creates first and watches for progress.json) is kept.
    """
    import shutil

    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise
