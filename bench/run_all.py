"""`make bench`: run every benchmark (each in its own process), then regenerate BENCHMARKS.md's generated section.

    python bench/run_all.py                      # everything, ~15 min on 2 cores
    python bench/run_all.py --only peak model_level
    python bench/run_all.py --quick --results /tmp/r --markdown /tmp/B.md   # smoke run (tests)

Order matters: peak first (model_level's share-of-peak column reads it), report last.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import harness

STEPS = ("peak", "flops", "model_level", "node_level", "offline", "profile_node", "int8_trained")


def step_command(step: str, results: Path, quick: bool) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).with_name(f"{step}.py")), "--out", str(results / f"{step}.json")]
    if step == "model_level":
        cmd += ["--peak", str(results / "peak.json")]
    return cmd + (["--quick"] if quick else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    parser.add_argument("--only", nargs="+", choices=STEPS, help="run only these benchmarks")
    parser.add_argument("--results", type=Path, default=harness.RESULTS, help="where result JSON files go")
    parser.add_argument("--markdown", type=Path, default=harness.REPO / "BENCHMARKS.md",
                        help="markdown file whose generated section is rewritten")
    parser.add_argument("--no-markdown", action="store_true", help="leave the markdown file alone")
    args = parser.parse_args(argv)
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
    if failures:
        print(f"FAILED: {failures}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
