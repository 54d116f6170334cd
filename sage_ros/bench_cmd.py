"""`sage-ros bench`: run the benchmarks of a source checkout (bench/run_all.py), all or some of them.

    sage-ros bench                       # everything (= make bench), results under bench_out/ (untracked)
    sage-ros bench --update-docs         # the same, rewriting bench/results and BENCHMARKS.md's generated section
    sage-ros bench --only model_level    # one part
    sage-ros bench --quick --results /tmp/r --no-markdown

The benchmark scripts live in the repository's bench/ folder, not in the installed package (they drive DDS
graphs, profilers and training runs that a robot never needs), so this verb needs a checkout: it looks beside
the package, then in --repo.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STEPS = ("peak", "flops", "model_level", "node_level", "offline", "profile_node", "int8_trained")


def find_run_all(repo: str | None) -> Path:
    # an explicit --repo is the only place looked at; otherwise the checkout this package runs from
    candidates = [Path(repo)] if repo else [Path(__file__).resolve().parents[1]]
    for root in candidates:
        script = root / "bench" / "run_all.py"
        if script.is_file():
            return script
    raise FileNotFoundError(
        "bench/run_all.py not found: `sage-ros bench` runs from a source checkout of sage_ros "
        f"(looked in {', '.join(str(c) for c in candidates)}); pass --repo PATH")


def add_arguments(parser) -> None:
    parser.add_argument("--only", nargs="+", choices=STEPS, help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (a smoke run)")
    parser.add_argument("--update-docs", action="store_true",
                        help="write the tracked bench/results and BENCHMARKS.md (default: bench_out/, untracked)")
    parser.add_argument("--results", help="directory for the result JSON files (default bench_out/results)")
    parser.add_argument("--markdown", help="markdown file whose generated section is rewritten "
                                           "(default bench_out/BENCHMARKS.md)")
    parser.add_argument("--no-markdown", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--repo", help="source checkout holding bench/ (default: the one this package is in)")


def build_command(args) -> list[str]:
    cmd = [sys.executable, str(find_run_all(args.repo))]
    if args.only:
        cmd += ["--only", *args.only]
    if args.quick:
        cmd.append("--quick")
    if args.update_docs:
        cmd.append("--update-docs")
    if args.results:
        cmd += ["--results", args.results]
    if args.markdown:
        cmd += ["--markdown", args.markdown]
    if args.no_markdown:
        cmd.append("--no-markdown")
    return cmd


def run(args) -> int:
    from sage_ros.usage import UsageError

    try:
        cmd = build_command(args)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    return subprocess.run(cmd).returncode
