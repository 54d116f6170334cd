"""`python -m sage_ros.data.fetch --out data_cache`: build the bundled real-image dataset (run by `make data`).

Three cached stages, each skipped when its output is already whole:
  A sources  photos + clips from Debian and PyPI packages (sources.py) -> data_cache/sources/ (needs apt + pip)
  B crops    deterministic train/val/test crops at 32, 64, 224 px  -> data_cache/crops/   (numpy + cv2 only)
  C bag      real-camera rosbag2 from vtest.avi                    -> data_cache/bags/    (needs rosbags)
`--from-sources` runs stage B alone from an existing sources/ folder (e.g. on a machine without network).
data_cache/.complete is written last, so its presence means every stage finished.
"""
from __future__ import annotations

import argparse
import fcntl
import sys
import time
from pathlib import Path

from sage_ros.atomic import atomic_write_json


def _stage(title: str, done: bool, force: bool, action, log) -> None:
    if done and not force:
        log(f"{title}: cached")
        return
    start = time.perf_counter()
    log(f"{title}: building")
    action()
    log(f"{title}: done in {time.perf_counter() - start:.1f} s")


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sage_ros.data.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data_cache"), help="data directory (default data_cache)")
    parser.add_argument("--from-sources", action="store_true",
                        help="only stage B: build crops from an existing <out>/sources (no network, no rosbags)")
    parser.add_argument("--force", action="store_true", help="rebuild every stage even if cached")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the small sqlite3 variant of the bag")
    args = parser.parse_args(argv)
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    from sage_ros.data import crops, sources  # numpy + cv2 only

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Several `make test` runs may start at once on one checkout: the second waits here, then finds the
    # stages cached instead of rebuilding the same files underneath the first.
    lock = open(out / ".fetch.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    src, crop_dir, bag_dir = out / "sources", out / "crops", out / "bags"
    start = time.perf_counter()
    (out / ".complete").unlink(missing_ok=True)
    if not args.from_sources:
        _stage("A sources", sources.sources_complete(src), args.force,
               lambda: sources.fetch_sources(src, log), log)
    _stage("B crops", crops.crops_complete(src, crop_dir), args.force,
           lambda: crops.build_crops(src, crop_dir, log), log)
    if not args.from_sources:
        from sage_ros.data import vtest_bag  # imports rosbags lazily inside
        video = next(f for f in sources.read_manifest(src, verify=False) if f.file == crops.PRIMARY_VIDEO)
        _stage("C bag", vtest_bag.bags_complete(bag_dir, video.sha256), args.force,
               lambda: vtest_bag.write_vtest_bags(src / video.file, bag_dir, video.sha256,
                                                  sqlite=not args.no_sqlite, log=log), log)
    seconds = time.perf_counter() - start
    sizes = {name: _du(out / name) for name in ("sources", "crops", "bags")}
    log("sizes: " + ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in sizes.items()))
    log(f"data ready in {out} ({seconds:.1f} s)")
    atomic_write_json(out / ".complete", {"seconds": round(seconds, 2), "bytes": sizes,
                                          "from_sources": args.from_sources})
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
