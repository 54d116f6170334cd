"""bench/telemetry_cost.py --quick end to end: the pass-through baseline, one encoder node switched off / on through
its parameter service (telemetry arrives only while on, one per latent), and the in-process timings."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_telemetry_cost_quick(tmp_path):
    out = tmp_path / "telemetry_cost.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "telemetry_cost.py"), "--out", str(out), "--quick"],
                          capture_output=True, text=True, timeout=400, env=dict(os.environ))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    phases = {row["setting"]: row for row in result["node_level"]["runs"]["encoder"]["phases"]}
    assert phases["off"]["telemetry_received"] == 0 and phases["off"]["received"] > 0
    assert 0 < phases["on"]["telemetry_received"] <= phases["on"]["sent"]
    assert result["summary"]["encoder"]["on"]["added_vs_off_ms_median_of_rounds"] is not None
    assert result["in_process"]["tinyvae_l64_fp32"]["telemetry"]["median_ms"] > 0
    assert result["summary"]["passthrough_p50_ms"] is not None
