"""Atomic file writes (temp file in the same directory + fsync + rename), so a crash never leaves half a file;
atomic output directories (a sibling staging directory swapped in whole), so a directory is never half written.

No torch, no rclpy: every layer may use this module.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import signal
import tempfile
import threading
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
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from exc  # a failed write() names none
        rust_io = re.search(r"\(os error (\d+)\)", str(exc)) if isinstance(exc, Exception) else None
        if rust_io and not isinstance(exc, OSError):  # safetensors' SafetensorError "... (os error 28)"
            code = int(rust_io.group(1))
            raise OSError(code, os.strerror(code), str(path)) from exc
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
def atomic_output_dir(path: str | os.PathLike, carry: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty staging directory beside `path`; when the block ends normally it takes `path`'s place in one
    step and the old contents are deleted, so `path` always holds a complete old or a complete new result (a
    model bundle in use by an encoder stays loadable; `sage-ros export --out` deleted the old files first).

    The swap is renameat2(RENAME_EXCHANGE) where the kernel and filesystem offer it; elsewhere two renames (old
    aside, new in), with an instant where `path` is absent but never partial. On an exception, Ctrl-C or SIGTERM
    (a cancelled compression_node job; turned into SystemExit while inside, where it had the default handler)
    the staging directory is removed and `path` is untouched; a `path` that did not exist is not created.
    `carry`: entries of the old directory copied into the new one before the swap (e.g. a device's engine
    cache). Staging directories a killed process left beside `path` are removed on the next use.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "output exists and is not a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent))
    try:
        with _sigterm_as_exit():
            yield staging
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700; a plain mkdir would give this
            for name in carry:
                if (path / name).is_dir() and not (staging / name).exists():
                    shutil.copytree(path / name, staging / name, symlinks=True)
            _swap_in(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """`path`, created (with parents) if missing; when the block fails (an exception, Ctrl-C, SIGTERM) a `path` that
    did not exist before is removed again, so a failed run leaves no empty or half-filled directory behind.

    For run directories whose files are watched while the run goes (progress.json, read by compression_node, which
    creates the directory first: a directory that existed before is left as it is, with the failure recorded).
    """
    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        with _sigterm_as_exit():
            yield path
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise


def _swap_in(staging: Path, path: Path) -> None:
    """Put `staging` at `path`; what `path` held is deleted. `staging` is gone afterwards either way."""
    try:
        os.rename(staging, path)  # path absent, or an empty directory: one atomic rename
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if _rename_exchange(staging, path):
        shutil.rmtree(staging, ignore_errors=True)  # it holds the old contents now
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent))
    os.rename(path, aside / path.name)
    try:
        os.rename(staging, path)
    except BaseException:
        os.rename(aside / path.name, path)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _rename_exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _remove_dead_staging(path: Path) -> None:
    for stale in path.parent.glob(f".{glob.escape(path.name)}.partial-*-*"):
        pid = stale.name[len(f".{path.name}.partial-"):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) inside the block (so cleanup runs), where it would kill the process outright."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
