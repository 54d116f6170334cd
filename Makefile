# The two-command contract: `make demo` and `make test` on a fresh machine create everything they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DATA_STAMP := data_cache/.complete

.PHONY: venv data test test-fast demo bench clean

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt setup.py
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11: the ROS 2 Kilted wheels are cp311)"; exit 1; }
	@set -eo pipefail; t0=$$(date +%s); phase() { echo "== venv [$$(( $$(date +%s) - t0 )) s] $$*"; }; \
	phase "creating $(VENV) with $(PYTHON)"; test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	phase "upgrading pip"; $(PY) -m pip install --quiet --upgrade pip; \
	phase "installing requirements.txt (the long step, minutes: torch CPU, onnxruntime, ROS 2 wheels)"; \
	$(PY) -m pip install --progress-bar off -r requirements.txt -c constraints.txt \
	  | { grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed)' || true; }; \
	phase "installing sage_ros (editable)"; $(PY) -m pip install --quiet --no-deps -e .; \
	phase "done"; touch $(STAMP)

# Bundled real data: photographs and clips shipped in Debian/PyPI packages + a real-camera rosbag (cached; 1-2 min fresh).
data: $(DATA_STAMP)

$(DATA_STAMP): $(STAMP) sage_ros/data/sources.py  # a new source list re-runs the (stage-cached) fetch
	@t0=$$(date +%s); echo "== data: building data_cache/ (the first time only; cached after)"; \
	$(PY) -m sage_ros.data.fetch --out data_cache && echo "== data [$$(( $$(date +%s) - t0 )) s] done"

test: venv data
	$(PY) -m pytest -q test

# Other ROS 2 distros (README "ROS 2 distributions in CI"): a real Jazzy lane (.venv-jazzy), Humble's robot pins
# (.venv-humble), Jazzy <-> Kilted DDS. Lane venvs are cached like .venv; a missing interpreter skips its lane.
.PHONY: test-distros
test-distros: venv data
	bash scripts/ci/test_distros.sh

demo: venv data
	$(VENV)/bin/sage-ros demo --out demo_out

bench: venv data
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) data_cache demo_out runs .venv-jazzy .venv-humble .distros
