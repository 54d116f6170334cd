#!/usr/bin/env bash
# `make test-distros` (after `make venv data`): the ROS 2 distributions other than the main venv's Kilted.
#   jazzy   .venv-jazzy, Python 3.12 + ROS 2 Jazzy's own rclpy / messages / Fast DDS from PyPI + constraints-jazzy.txt:
#           the package's ROS-level tests (JAZZY_TESTS) under real Jazzy rclpy.
#   humble  .venv-humble, Python 3.10 + constraints-humble.txt (numpy 1.26.4, onnxruntime 1.23.2): the runtime tests
#           (HUMBLE_TESTS) and every shipped bundle against the main venv's outputs (scripts/ci/shipped_outputs.py).
#           No rclpy there: no Humble wheels exist; the main lane's test/test_ros_humble.py simulates its API.
#   cross   Jazzy <-> Kilted (the main venv) node processes on one domain (test/test_cross_distro_dds.py).
# A lane whose interpreter is missing is skipped with the reason; a lane venv is rebuilt only when its inputs change
# (stamp: sha256 of the requirements, lock and constraints files without comments, the interpreter and this
# checkout's path).
# Tests that need torch skip themselves (pytest.importorskip); the seeded test bundles they would export come
# prebuilt from the main venv (SAGE_ROS_TEST_BUNDLES, scripts/ci/prebuilt_bundles.py).
set -uo pipefail
cd "$(dirname "$0")/../.."
# Started from a process of a venv with ROS wheels, these would make another venv's rclpy skip its own set-up
# (ros_wheels_bootstrapper) and load the wrong libraries: each lane's interpreter sets them up itself.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
REPO=$PWD
CI=scripts/ci
MAIN_PY=${MAIN_PY:-.venv/bin/python}
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
WORK=.distros
JAZZY_TESTS="test_ros_node.py test_ros_units.py test_latent_decoder_dds.py test_compression_node_dds.py
  test_encoder_fuzz_dds.py test_bag_play.py test_bag_record.py test_bag_crash.py test_replay_dds.py test_param_files.py
  test_subscriber_example.py test_bag_common.py"
HUMBLE_TESTS="test_runtime_bundle.py test_runtime_preprocess.py test_runtime_backends.py test_consumer.py
  test_runtime_image_codec.py test_image_codec_robustness.py"
declare -A RESULT
FAILED=0
T0=$SECONDS

say() { echo "[$1] ${*:2}"; }

# find_python LANE VERSION: $<LANE>_PYTHON, else pyenv's VERSION, else any pyenv X.Y.*, else pythonX.Y on PATH
find_python() {
  local lane=$1 version=$2 short=${2%.*} override candidate
  override=$(eval echo "\${${lane^^}_PYTHON:-}")
  for candidate in $override "$PYENV_ROOT/versions/$version/bin/python$short" \
      "$PYENV_ROOT"/versions/"$short".*/bin/python"$short" "$(command -v "python$short" || true)"; do
    if [[ -x $candidate ]] && "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$short'.split('.'))))" 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

# lane_venv LANE PYTHON: .venv-LANE from scripts/ci/requirements-LANE.txt under constraints-LANE.txt + lock-LANE.txt
lane_venv() {
  local lane=$1 python=$2 venv=.venv-$1 started=$SECONDS want
  local inputs=("$CI/requirements-$lane.txt" "$CI/lock-$lane.txt" "constraints-$lane.txt" setup.py)
  want=$({ sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "${inputs[@]}"; "$python" -VV; echo "$REPO"; } | sha256sum | cut -d' ' -f1)
  if [[ -f $venv/.installed-stamp && $(cat "$venv/.installed-stamp") == "$want" ]]; then
    say "$lane" "venv $venv: cached (stamp matches ${inputs[*]})"; return 0
  fi
  say "$lane" "venv $venv: creating with $python (inputs changed or first run; ~1-2 min, pip lists each package)"
  rm -rf "$venv" && "$python" -m venv "$venv" || return 1
  say "$lane" "phase 1/2: pip install -r $CI/requirements-$lane.txt -c constraints-$lane.txt -c $CI/lock-$lane.txt"
  "$venv/bin/python" -m pip install --progress-bar off --disable-pip-version-check -r "$CI/requirements-$lane.txt" \
      -c "constraints-$lane.txt" -c "$CI/lock-$lane.txt" || return 1
  say "$lane" "phase 2/2: pip install --no-deps -e . (console scripts: tinyvae_encoder, latent_decoder, ...)"
  "$venv/bin/python" -m pip install --progress-bar off --disable-pip-version-check --no-deps -e . >/dev/null || return 1
  echo "$want" > "$venv/.installed-stamp"
  say "$lane" "venv $venv ready in $((SECONDS - started)) s"
}

# run_pytest LANE PYTHON FILES...: pytest over test/FILES (-rfEs: failures, errors and skips named); RESULT[LANE] = its closing line
run_pytest() {
  local lane=$1 python=$2; shift 2
  local files=() f log=$WORK/$lane.pytest.log
  for f in "$@"; do files+=("test/$f"); done
  say "$lane" "pytest ${files[*]}"
  SAGE_ROS_TEST_BUNDLES=$REPO/$WORK/bundles PYTHONPATH=$REPO "$python" -m pytest -q -rfEs -p no:cacheprovider \
      "${files[@]}" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]} failed
  RESULT[$lane]=$(closing_line "$log")
  [[ $rc == 0 ]] && return 0
  # The DDS tests measure timing; on a loaded machine one can miss (the main lane has the same tests). Failures are
  # re-run once, loudly: the summary names them, and only a failure that repeats fails the lane.
  mapfile -t failed < <(grep -E '^(FAILED|ERROR) ' "$log" | cut -d' ' -f2 | sort -u)
  if (( ${#failed[@]} == 0 || ${#failed[@]} > 3 )); then
    FAILED=1; RESULT[$lane]="FAILED (pytest exit $rc): ${RESULT[$lane]}"; return 1
  fi
  say "$lane" "RERUN once of ${#failed[@]} failed: ${failed[*]}"
  SAGE_ROS_TEST_BUNDLES=$REPO/$WORK/bundles PYTHONPATH=$REPO "$python" -m pytest -q -rfEs -p no:cacheprovider \
      "${failed[@]}" 2>&1 | tee "$log.rerun"
  if [[ ${PIPESTATUS[0]} == 0 ]]; then
    RESULT[$lane]="${RESULT[$lane]}; FLAKY, passed on rerun: ${failed[*]}"
  else
    FAILED=1; RESULT[$lane]="FAILED (pytest exit $rc, again on rerun): ${RESULT[$lane]}; rerun: $(closing_line "$log.rerun")"
  fi
}

closing_line() { grep -E '^=* ?[0-9]+ (passed|failed|error|skipped)' "$1" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//'; }

# compare_shipped LANE PYTHON: every shipped bundle on real frames against the main venv's outputs
compare_shipped() {
  local lane=$1 python=$2 log=$WORK/$1.shipped.log
  say "$lane" "every shipped bundle on real frames vs the main venv (scripts/ci/shipped_outputs.py compare):"
  if PYTHONPATH=$REPO "$python" $CI/shipped_outputs.py compare "$WORK/shipped.npz" > "$log" 2>&1; then
    grep -v " bit-identical$" "$log"; RESULT[$lane-bundles]=$(grep "^shipped bundles" "$log")
  else
    cat "$log"; FAILED=1; RESULT[$lane-bundles]="FAILED: $(grep -A3 OUTSIDE "$log" | tr '\n' ' ')"
  fi
}

left_to_main() {  # the test files of test/ that a lane did not run
  local here=" $* " f out=()
  for f in test/test_*.py; do
    f=${f#test/}; [[ $here == *" $f "* || $f == test_cross_distro_dds.py ]] || out+=("${f%.py}")
  done
  echo "${#out[@]} files: ${out[*]}"
}

# prepare_lane LANE VERSION: LANE_PY = the lane venv's python; a missing interpreter skips the lane (with the reason),
# a venv that cannot be built fails it
prepare_lane() {
  local lane=$1 version=$2 python minor=${2%.*}
  LANE_PY=""
  if ! python=$(find_python "$lane" "$version"); then
    RESULT[$lane]="SKIPPED: no Python $minor interpreter (looked at \$${lane^^}_PYTHON, $PYENV_ROOT/versions/$minor.*, python$minor on PATH)"
    say "$lane" "${RESULT[$lane]}"
    return 1
  fi
  if ! lane_venv "$lane" "$python"; then
    RESULT[$lane]="FAILED: could not build .venv-$lane"; FAILED=1
    return 1
  fi
  LANE_PY=.venv-$lane/bin/python
}

run_lane() {  # lane, its python, a note on the main lane, test files: the tests (timed), the shipped-bundle check
  local lane=$1 py=$2 note=$3 started=$SECONDS
  run_pytest "$lane" "$py" "${@:4}"
  RESULT[$lane]="${RESULT[$lane]} ($((SECONDS - started)) s)"
  compare_shipped "$lane" "$py"
  say "$lane" "left to the main lane${note:+ $note}: $(left_to_main "${@:4}")"
}

mkdir -p "$WORK"
echo "== make test-distros: ROS 2 Jazzy (real), Humble robot pins, Jazzy <-> Kilted DDS =="
say prep "seeded test bundles and the shipped bundles' reference outputs, from the main venv ($MAIN_PY)"
PYTHONPATH=$REPO "$MAIN_PY" $CI/prebuilt_bundles.py "$WORK/bundles" || exit 1
PYTHONPATH=$REPO "$MAIN_PY" $CI/shipped_outputs.py write "$WORK/shipped.npz" || exit 1

# ---- Jazzy lane --------------------------------------------------------------------------------------------------
echo; echo "== Jazzy lane: ROS 2 Jazzy rclpy + Fast DDS from PyPI, Python 3.12, constraints-jazzy.txt, no torch =="
JAZZY_PY=""
if prepare_lane jazzy 3.12.1; then
  JAZZY_PY=$LANE_PY
  say jazzy "real here: $($JAZZY_PY -c "import importlib.metadata as m, platform, numpy, onnxruntime, cv2
print(f'rclpy {m.version(\"ros-jazzy-rclpy\")} (ros-jazzy-rclpy), Fast DDS {m.version(\"ros-fastrtps\")}, Python {platform.python_version()}, numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}')")"
  # shellcheck disable=SC2086
  run_lane jazzy "$JAZZY_PY" "(Kilted, with torch)" $JAZZY_TESTS
fi

# ---- Humble robot-pins lane --------------------------------------------------------------------------------------
echo; echo "== Humble robot-pins lane: Python 3.10, constraints-humble.txt (numpy 1.26.4, onnxruntime 1.23.2), no torch =="
say humble "rclpy: SIMULATED, not run here (no Humble rclpy wheels exist): Humble's rclpy API is simulated over Kilted by test/test_ros_humble.py in the main lane"
if prepare_lane humble 3.10.13; then
  HUMBLE_PY=$LANE_PY
  # shellcheck disable=SC2086
  run_lane humble "$HUMBLE_PY" "" $HUMBLE_TESTS
fi

# ---- Cross-distro DDS --------------------------------------------------------------------------------------------
echo; echo "== Cross-distro DDS: Jazzy encoder -> Kilted consumer, Kilted encoder -> Jazzy decoder, one ROS domain =="
if [[ -z $JAZZY_PY ]]; then
  RESULT[cross]="SKIPPED: needs the Jazzy lane's venv (${RESULT[jazzy]})"
  say cross "${RESULT[cross]}"
else
  SAGE_ROS_JAZZY_PYTHON=$REPO/$JAZZY_PY run_pytest cross "$MAIN_PY" test_cross_distro_dds.py
fi

echo; echo "== make test-distros summary ($((SECONDS - T0)) s) =="
for lane in jazzy jazzy-bundles humble humble-bundles cross; do
  [[ -n ${RESULT[$lane]:-} ]] && printf '%-15s %s\n' "$lane" "${RESULT[$lane]}"
done
exit $FAILED
