"""Weight quantization (sage_ros.compression.quantize): schemes, layouts, packing, storage, reports."""
import copy
import math

import pytest
import torch
from torch import nn

from quant_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from quant_helpers import smooth_images, trained_model
from sage_ros.compression.quantize import (Int4Config, Int8Config, QuantizationError, load_quantized,
                                           pack_int4, quantize_, rows_to_weight, save_float, save_quantized,
                                           unpack_int4, weight_to_rows)


def test_pack_unpack_int4_roundtrip_and_two_per_byte():
    q = torch.randint(-8, 8, (5, 64), dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 32)
    assert torch.equal(unpack_int4(packed), q)
    assert pack_int4(torch.tensor([[-8, 7]]))[0, 0].item() == 0x78  # low nibble first


@pytest.mark.parametrize("module", [nn.Linear(7, 5), nn.Conv2d(4, 6, 3), nn.Conv2d(4, 4, 3, groups=4),
                                    nn.ConvTranspose2d(4, 6, 3), nn.ConvTranspose2d(4, 6, 3, groups=2)])
def test_rows_layout_roundtrip_and_output_channels(module):
    w = module.weight.detach()
    rows = weight_to_rows(module, w)
    assert torch.equal(rows_to_weight(module, rows, w.shape), w)
    # row i must hold exactly the weights that produce output channel i: zero the row, and only
    # channel i of the output changes (ConvTranspose2d keeps out channels in dim 1, per group)
    x = torch.randn(2, *((7,) if isinstance(module, nn.Linear) else (4, 8, 8)))
    base = module(x)
    probe = copy.deepcopy(module)
    rows2 = rows.clone()
    rows2[3] = 0
    with torch.no_grad():
        probe.weight.copy_(rows_to_weight(probe, rows2, w.shape))
    diff = (probe(x) - base).abs()
    changed = diff.amax(dim=[d for d in range(diff.dim()) if d != 1])  # per output channel
    assert changed[3] > 0 and torch.all(changed[torch.arange(len(changed)) != 3] == 0)


def test_int8_is_per_output_channel_symmetric_for_conv_transpose():
    torch.manual_seed(0)
    module = nn.ConvTranspose2d(8, 4, 3)
    with torch.no_grad():
        module.weight[:, 2] *= 1000.0  # one huge output channel must not wreck the others' resolution
    model = nn.Sequential(module)
    model.latent_dim = 0
    ref = module.weight.detach().clone()
    quantize_(model, Int8Config())
    q = module._sage_quant["q"]
    assert q.dtype == torch.int8 and q.shape == (4, 8 * 9)
    assert torch.all(q.abs().amax(dim=1) == 127)  # minmax: each channel uses the full range
    err = (module.weight.detach() - ref).abs()
    for c in (0, 1, 3):
        assert err[:, c].max() <= ref[:, c].abs().max() / 127 / 2 * 1.01


def test_int4_groups_with_ragged_fan_in_and_mse_beats_minmax():
    torch.manual_seed(0)
    lin = nn.Linear(100, 8)  # 100 = 3 groups of 32 + a group of 4
    with torch.no_grad():
        lin.weight[:, 5] *= 20  # an outlier per row: where clipping search pays off
    model = nn.Sequential(lin)
    model.latent_dim = 0
    quantize_(model, Int4Config(group_size=32, rounding="mse"))
    stored = lin._sage_quant
    assert stored["q"].shape == (8, 50)  # 100 weights per row, two per byte (the ragged group is not padded)
    assert stored["scale"].dtype == torch.float16 and stored["scale"].shape == (8, 4)
    (t,) = model.quantization_report["tensors"]
    assert t["weight_mse"] < t["weight_mse_minmax"]
    assert t["quantized_bytes"] == 8 * 50 + 8 * 4 * 2


def test_trained_tinyvae_every_layer_reported_and_mse_gain():
    model = trained_model("TinyVAE", 16)
    n_layers = sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) for m in model.modules())
    minmax = quantize_(trained_model("TinyVAE", 16), Int4Config(rounding="minmax")).quantization_report
    mse = quantize_(model, Int4Config(rounding="mse")).quantization_report
    assert len(mse["tensors"]) == n_layers == 12
    names = {t["tensor"] for t in mse["tensors"]} | {k["tensor"] for k in mse["kept_float"]}
    assert names == set(model.state_dict())  # nothing silently skipped
    assert all(t["weight_mse"] <= t["weight_mse_minmax"] * (1 + 1e-9) for t in mse["tensors"])
    assert mse["weight_mse"] < 0.9 * minmax["weight_mse"]
    assert minmax["weight_mse"] == pytest.approx(mse["weight_mse_minmax"], rel=1e-9)


@pytest.mark.parametrize("config", [Int8Config(), Int4Config(), Int4Config(group_size=32, rounding="minmax")])
@pytest.mark.parametrize("arch", ["TinyVAE", "TinyVAE32", "VisionPuzzleVAE"])
def test_save_load_rebuilds_identical_model(tmp_path, arch, config):
    model = trained_model(arch, 8, steps=5)
    quantize_(model, config)
    path = save_quantized(model, tmp_path / "m.safetensors")
    loaded = load_quantized(path)
    assert type(loaded) is type(model) and not loaded.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.rand(2, 3, model.image_size, model.image_size)
    out_a, out_b = model.eval()(x), loaded(x)
    assert torch.equal(out_a[0], out_b[0])
    assert loaded.quantization_report == model.quantization_report
    assert not list(tmp_path.glob(".*"))  # atomic write left no temp file


def test_file_bytes_ratios_on_tinyvae64(tmp_path):
    model = trained_model("TinyVAE", 64, steps=5)
    fp32 = save_float(model, tmp_path / "fp32.safetensors").stat().st_size
    int8 = save_quantized(quantize_(copy.deepcopy(model), Int8Config()), tmp_path / "i8.safetensors").stat().st_size
    m4 = quantize_(copy.deepcopy(model), Int4Config(group_size=64))
    int4 = save_quantized(m4, tmp_path / "i4.safetensors").stat().st_size
    assert 3.5 < fp32 / int8 < 4.0
    assert 6.5 < fp32 / int4 < 8.0
    # the Linear layers alone (97 % of the weights): int4 + fp16 scales / fp32 = 32 / 4.25
    lin = [t for t in m4.quantization_report["tensors"] if t["module"] == "Linear"]
    ratio = sum(t["float32_bytes"] for t in lin) / sum(t["quantized_bytes"] for t in lin)
    assert ratio == pytest.approx(32 / 4.25, rel=1e-3)


def test_quantized_model_still_reconstructs():
    images = torch.from_numpy(smooth_images(32, 64, seed=9)).permute(0, 3, 1, 2).float() / 255
    ref = trained_model("TinyVAE", 16)
    base = torch.nn.functional.mse_loss(ref(images)[0], images).item()
    for config in (Int8Config(), Int4Config()):
        q = quantize_(trained_model("TinyVAE", 16), config)
        assert torch.nn.functional.mse_loss(q(images)[0], images).item() < base * 1.5 + 1e-3


def test_bad_inputs_raise_one_error_type(tmp_path):
    with pytest.raises(QuantizationError):
        Int4Config(group_size=7)
    with pytest.raises(QuantizationError):
        Int8Config(rounding="awq")
    model = trained_model("TinyVAE", 4, steps=1)
    with pytest.raises(QuantizationError):
        save_quantized(model, tmp_path / "x.safetensors")
    plain = save_float(model, tmp_path / "plain.safetensors")
    with pytest.raises(QuantizationError):
        load_quantized(plain)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(QuantizationError):
        load_quantized(tmp_path / "junk.safetensors")
    quantize_(model, Int8Config())
    with pytest.raises(QuantizationError):
        quantize_(model, Int8Config())
    assert math.isfinite(model.quantization_report["weight_mse"])


def test_int4_with_int8_convolutions(tmp_path):
    ref = trained_model("TinyVAE", 16)
    model = quantize_(trained_model("TinyVAE", 16), Int4Config(conv_scheme="int8"))
    schemes = {t["module"]: t["scheme"] for t in model.quantization_report["tensors"]}
    assert schemes == {"Conv2d": "int8", "ConvTranspose2d": "int8", "Linear": "int4"}
    loaded = load_quantized(save_quantized(model, tmp_path / "m.safetensors"))
    assert loaded.quantization_config == Int4Config(conv_scheme="int8")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    pure = quantize_(trained_model("TinyVAE", 16), Int4Config())
    conv_err = lambda m: sum(t["weight_mse"] for t in m.quantization_report["tensors"]  # noqa: E731
                             if t["module"] != "Linear")
    assert conv_err(model) < conv_err(pure) / 10
    x = torch.from_numpy(smooth_images(16, 64, seed=4)).permute(0, 3, 1, 2).float() / 255
    drift = lambda m: (m.encode(x)[0] - ref.encode(x)[0]).norm().item()  # noqa: E731
    assert drift(model) < drift(pure)
    with pytest.raises(QuantizationError):
        Int4Config(conv_scheme="int2")


def test_gptq_lowers_linear_output_error_and_round_trips(tmp_path):
    from sage_ros.compression.gptq import linear_hessians, output_error

    calib = torch.from_numpy(smooth_images(48, 32, seed=21)).permute(0, 3, 1, 2).float() / 255
    ref = trained_model("TinyVAE32", 16)  # 512-input Linear layers: GPTQ's O(in^3) stays small
    hessians = linear_hessians(ref, calib)
    assert set(hessians) == {"fc_mu", "fc_logvar", "fc_decode"}
    with pytest.raises(QuantizationError, match="calibration"):
        quantize_(trained_model("TinyVAE32", 16), Int4Config(rounding="gptq"))
    for config in (Int4Config(rounding="gptq", group_size=32), Int8Config(rounding="gptq")):
        model = quantize_(trained_model("TinyVAE32", 16), config, calibration=calib)
        report = {t["tensor"]: t for t in model.quantization_report["tensors"]}
        for name in hessians:  # GPTQ's objective, on its calibration data: below plain (mse) rounding
            t = report[f"{name}.weight"]
            assert t["rounding"] == "gptq" and t["output_mse"] < t["output_mse_rounding_mse"]
            assert t["output_mse"] == pytest.approx(output_error(
                ref.state_dict()[f"{name}.weight"], model.state_dict()[f"{name}.weight"], hessians[name]))
        assert report["encoder.0.weight"]["rounding"] == "mse"  # convolutions: no GPTQ
        loaded = load_quantized(save_quantized(model, tmp_path / f"{config.scheme}.safetensors"))
        for k, v in loaded.state_dict().items():
            assert torch.equal(v, model.state_dict()[k]), k
        q = model.fc_mu._sage_quant
        assert q["q"].dtype == (torch.uint8 if config.scheme == "int4" else torch.int8)
