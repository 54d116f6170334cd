"""`make bench` leaves tracked files alone: results and the rendered page go under the untracked bench_out/
unless --update-docs asks for bench/results and BENCHMARKS.md."""
import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import run_all  # noqa: E402


def test_default_outputs_are_untracked_and_update_docs_names_the_tracked_ones():
    results, markdown = run_all.output_paths(update_docs=False)
    assert results == REPO / "bench_out" / "results" and markdown == REPO / "bench_out" / "BENCHMARKS.md"
    assert run_all.output_paths(update_docs=True) == (REPO / "bench" / "results", REPO / "BENCHMARKS.md")
    assert run_all.output_paths(False, Path("/tmp/r"), Path("/tmp/B.md")) == (Path("/tmp/r"), Path("/tmp/B.md"))
    ignored = subprocess.run(["git", "check-ignore", "-q", "bench_out/results/peak.json"], cwd=REPO)
    assert ignored.returncode == 0, "bench_out/ must be git-ignored"


def test_the_bench_verb_passes_update_docs_on():
    from sage_ros import bench_cmd

    parser = argparse.ArgumentParser()
    bench_cmd.add_arguments(parser)
    assert "--update-docs" not in bench_cmd.build_command(parser.parse_args(["--quick"]))
    assert bench_cmd.build_command(parser.parse_args(["--update-docs"]))[-1] == "--update-docs"
