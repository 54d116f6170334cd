"""scripts/ci/shipped_outputs.py (make test-distros): the cross-venv comparison of every shipped bundle's outputs
accepts what its docstring states and nothing more; a row outside fails the lane."""
import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("shipped_outputs", REPO / "scripts" / "ci" / "shipped_outputs.py")
shipped_outputs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shipped_outputs)
check = shipped_outputs.check


def test_preprocessed_inputs_must_be_bit_identical():
    ref = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    assert check("b/input", ref, ref.copy(), "int8")[0]
    assert not check("b/input", ref, np.nextafter(ref, 2, dtype=np.float32), "fp32")[0]


def test_float_bundles_within_1e_5():
    ref = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    assert check("b/mu", ref, ref + 5e-6, "fp32")[0]
    ok, measured = check("b/mu", ref, ref + 5e-5, "fp16")
    assert not ok and "max |diff|" in measured


def test_quantized_bundles_by_relative_l2_per_stage():
    ref = np.random.default_rng(1).normal(size=(4, 64))
    direction = np.random.default_rng(2).normal(size=ref.shape)
    direction *= np.linalg.norm(ref) / np.linalg.norm(direction)

    def off_by(relative_l2):  # ref moved by exactly this relative L2
        return ref + relative_l2 * direction

    assert check("b/mu", ref, off_by(0.005), "int4")[0]
    assert not check("b/logvar", ref, off_by(0.02), "int8")[0]  # encoders: <= 1e-2
    assert check("b/decoded", ref, off_by(0.02), "int8")[0]  # decoders: <= 5e-2
    assert not check("b/decoded", ref, off_by(0.1), "int8")[0]


def test_codes_agreement():
    ref = np.zeros((2, 30, 30), np.uint8)
    out = ref.copy()
    out[0, 0, 0] = 1  # 1 of 1800 differs: agreement 0.99944 >= 0.999
    assert check("b/codes", ref, out, "int8")[0]
    out[0, 0, :3] = 1
    assert not check("b/codes", ref, out, "int8")[0]
