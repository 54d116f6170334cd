"""`make bench`: run every benchmark (each in its own process), then render the generated section of BENCHMARKS.md.

    python bench/run_all.py                      # everything, ~15 min on 2 cores; results under bench_out/
    python bench/run_all.py --update-docs        # the same, rewriting the tracked bench/results + BENCHMARKS.md
    python bench/run_all.py --only peak model_level
    python bench/run_all.py --quick --results /tmp/r --markdown /tmp/B.md   # smoke run (tests)

By default nothing tracked changes: results go to bench_out/results and the rendered page to
bench_out/BENCHMARKS.md (a copy of the tracked page with its generated section replaced, to diff against it).
Only --update-docs writes bench/results/*.json and BENCHMARKS.md, the files the docs quote.

Order matters: peak first (model_level's share-of-peak column reads it), report last.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import harness

UNTRACKED = harness.REPO / "bench_out"  # default output (.gitignore): a plain `make bench` changes no tracked file
TRACKED_MARKDOWN = harness.REPO / "BENCHMARKS.md"
STEPS = ("peak", "flops", "model_level", "node_level", "offline", "profile_node", "int8_trained")


def step_command(step: str, results: Path, quick: bool) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).with_name(f"{step}.py")), "--out", str(results / f"{step}.json")]
    if step == "model_level":
        cmd += ["--peak", str(results / "peak.json")]
    return cmd + (["--quick"] if quick else [])


def output_paths(update_docs: bool, results: Path | None = None, markdown: Path | None = None) -> tuple[Path, Path]:
    """(results dir, markdown file): explicit ones as given, else the tracked ones only with update_docs."""
    if results is None:
        results = harness.RESULTS if update_docs else UNTRACKED / "results"
    if markdown is None:
        markdown = TRACKED_MARKDOWN if update_docs else UNTRACKED / "BENCHMARKS.md"
    return results, markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    parser.add_argument("--only", nargs="+", choices=STEPS, help="run only these benchmarks")
    parser.add_argument("--update-docs", action="store_true",
                        help=f"write into the tracked {harness.RESULTS.relative_to(harness.REPO)}/ and BENCHMARKS.md "
                             f"(default: {UNTRACKED.relative_to(harness.REPO)}/, untracked)")
    parser.add_argument("--results", type=Path, default=None,
                        help="where result JSON files go (default: bench_out/results, or bench/results with "
                             "--update-docs)")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="markdown file whose generated section is rewritten (default: bench_out/BENCHMARKS.md, "
                             "or BENCHMARKS.md with --update-docs)")
    parser.add_argument("--no-markdown", action="store_true", help="leave the markdown file alone")
    args = parser.parse_args(argv)
    args.results, args.markdown = output_paths(args.update_docs, args.results, args.markdown)
    if args.markdown == UNTRACKED / "BENCHMARKS.md" and not args.no_markdown and not args.markdown.exists():
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TRACKED_MARKDOWN, args.markdown)  # the tracked page; its generated section is replaced below
    args.results.mkdir(parents=True, exist_ok=True)
    failures, timings = [], {}
    for step in args.only or STEPS:
        cmd = step_command(step, args.results, args.quick)
        print(f"== {step}: {shlex.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd).returncode
        timings[step] = round(time.perf_counter() - t0, 1)
        print(f"== {step}: exit {code} in {timings[step]} s", flush=True)
        if code != 0:
            failures.append(step)
    if not args.no_markdown:
        import report

        report.write_markdown(args.results, args.markdown, command=harness.command_line(), timings=timings)
        print(f"== wrote {args.markdown}", flush=True)
    if args.results != harness.RESULTS and (args.no_markdown or args.markdown != TRACKED_MARKDOWN):
        print(f"== results in {args.results}; nothing tracked changed (--update-docs rewrites "
              f"{harness.RESULTS.relative_to(harness.REPO)}/ and BENCHMARKS.md)", flush=True)
    if failures:
        print(f"FAILED: {failures}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
