"""Export the seeded test bundles (test/runtime_helpers.export_seeded, test/demo_helpers.export_untrained_tinyvae)
with the main venv's torch into OUT, so that the lanes of `make test-distros`, which have no torch (as the robot
has none), run the same tests on the same bundles: they point SAGE_ROS_TEST_BUNDLES at OUT and the helpers copy
from there (runtime_helpers.prebuilt).

    .venv/bin/python scripts/ci/prebuilt_bundles.py .distros/bundles
"""
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "test"))

ARCHITECTURES = ("TinyVAE", "TinyVAE32", "VisionPuzzleVAE")
PRECISIONS = ("fp32", "fp16")  # every (architecture, precision) the tests ask export_seeded for


def main(out: Path) -> None:
    import os

    os.environ.pop("SAGE_ROS_TEST_BUNDLES", None)  # export for real, never copy from an older OUT
    from demo_helpers import export_untrained_tinyvae
    from runtime_helpers import export_seeded

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundles-", dir=out.parent))
    for architecture in ARCHITECTURES:
        for precision in PRECISIONS:
            export_seeded(architecture, precision, tmp / f"{architecture}-{precision}")
    export_untrained_tinyvae(tmp / "untrained-tinyvae-fp32", "fp32")  # test_replay_dds (bag play -> encoder)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # whole or not at all
    print(f"seeded test bundles: {len(ARCHITECTURES) * len(PRECISIONS) + 1} in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
