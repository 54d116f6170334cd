"""FLOPs and bytes moved per frame for each model, and a roofline projection for Jetson Orin Nano and Nano.

FLOPs: torch.utils.flop_counter.FlopCounterMode over one batch-1 encode (and decode): it counts convolutions,
transposed convolutions and matmuls (2 FLOPs per multiply-add); norms, activations and resizes are left out
(they are < 3 % here and memory-bound anyway, so they are in the byte count instead).
Bytes moved per frame, two bounds:
  - "ideal": weights read once + input read once + output written once (everything else stays in cache);
  - "layerwise": every leaf module reads its input and weights from DRAM and writes its output (no fusion).
Roofline time = max(FLOPs / peak, bytes / bandwidth); real kernels on tiny layers sit above it (launch overhead).

    python bench/flops.py --out bench/results/flops.json [--quick]
"""
from __future__ import annotations

import sys
import time

import harness

# Peak figures and where they come from. FP16/INT8 are GPU tensor-core dense rates (no structured sparsity).
JETSON = {
    "Jetson Orin Nano 8GB (JetPack 6, 15 W)": {
        "fp32_gflops": 1280.0, "fp16_gflops": 10_000.0, "int8_gops": 20_000.0, "dram_gbs": 68.0,
        "source": "NVIDIA Jetson Orin Nano Series module datasheet: 1024 CUDA cores + 32 Tensor Cores at 625 MHz, "
                  "40 INT8 TOPS sparse (= 20 dense), 128-bit LPDDR5 68 GB/s. FP32 = 1024 x 2 x 0.625 GHz; "
                  "FP16 tensor dense = half the dense INT8 rate (Ampere tensor-core ratio).",
    },
    "Jetson Orin Nano 8GB Super (JetPack 6.2, 25 W)": {
        "fp32_gflops": 2089.0, "fp16_gflops": 16_750.0, "int8_gops": 33_500.0, "dram_gbs": 102.0,
        "source": "NVIDIA Jetson Orin Nano Super Developer Kit datasheet (Dec 2024): GPU 1020 MHz, "
                  "67 INT8 TOPS sparse (= 33.5 dense), 102 GB/s.",
    },
    "Jetson Nano (original, 10 W)": {
        "fp32_gflops": 236.0, "fp16_gflops": 472.0, "int8_gops": None, "dram_gbs": 25.6,
        "source": "NVIDIA Jetson Nano module datasheet: 128 Maxwell CUDA cores at 921 MHz, 472 GFLOPS FP16, "
                  "64-bit LPDDR4 25.6 GB/s; no INT8 tensor path (TensorRT 8.2 on JetPack 4.6 runs it FP16).",
    },
}
BYTES_PER_WEIGHT = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
ACTIVATION_BYTES = {"fp32": 4, "fp16": 2, "int8": 1, "int4": 2}  # int4 is weight-only: fp16 activations on GPU
MODELS = (("TinyVAE", 64), ("TinyVAE", 8), ("TinyVAE32", 64), ("VisionPuzzleVAE", 64), ("StandardVAE", 512))


def _leaf_io_bytes(model, fn, example) -> tuple[int, int, int]:
    """(input+output elements over leaf modules, leaf weight elements, launches) during fn(example)."""
    import torch

    totals = {"io": 0, "weights": 0, "launches": 0}

    def hook(module, inputs, output):
        outs = output if isinstance(output, (tuple, list)) else (output,)
        totals["io"] += sum(t.numel() for t in inputs if torch.is_tensor(t))
        totals["io"] += sum(t.numel() for t in outs if torch.is_tensor(t))
        totals["weights"] += sum(p.numel() for p in module.parameters(recurse=False))
        totals["launches"] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            fn(example)
    finally:
        for handle in handles:
            handle.remove()
    return totals["io"], totals["weights"], totals["launches"]


def count_flops(fn, example) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(example)
    return int(counter.get_total_flops())


def model_cost(architecture: str, latent_dim: int) -> dict:
    """FLOPs and bytes of one frame through the encoder (and the decoder) of `architecture`."""
    import torch

    from sage_ros.models import build_model

    torch.manual_seed(0)
    model = build_model(architecture, latent_dim).eval()
    size = model.image_size
    image = torch.rand(1, 3, size, size)
    with torch.no_grad():
        encoded = model.encode(image)
    latent = encoded if architecture == "VisionPuzzleVAE" else encoded[0]
    out = {"architecture": architecture, "latent_dim": latent_dim, "input_hw": size,
           "params": sum(p.numel() for p in model.parameters())}
    for part, fn, example in (("encode", model.encode, image), ("decode", model.decode, latent)):
        flops = count_flops(fn, example)
        io_elems, weight_elems, launches = _leaf_io_bytes(model, fn, example)
        first = example.numel()
        result = fn(example) if part == "decode" else encoded
        last = sum(t.numel() for t in (result if isinstance(result, tuple) else (result,)))
        out[part] = {"flops": flops, "weight_elements": weight_elems, "leaf_modules": launches,
                     "bytes": {p: {"ideal": weight_elems * BYTES_PER_WEIGHT[p] + (first + last) * 4,
                                   "layerwise": weight_elems * BYTES_PER_WEIGHT[p] + io_elems * ACTIVATION_BYTES[p]}
                               for p in BYTES_PER_WEIGHT}}
        out[part]["intensity_flop_per_byte_fp16_layerwise"] = flops / out[part]["bytes"]["fp16"]["layerwise"]
    return out


def roofline(cost: dict, board: dict) -> dict:
    """Lower-bound encode time per frame on `board` for each precision it has, and what bounds it."""
    rows = {}
    encode = cost["encode"]
    for precision, peak_key in (("fp32", "fp32_gflops"), ("fp16", "fp16_gflops"), ("int8", "int8_gops")):
        peak = board[peak_key]
        if peak is None:
            continue
        compute_us = encode["flops"] / (peak * 1e9) * 1e6
        memory_us = encode["bytes"][precision]["layerwise"] / (board["dram_gbs"] * 1e9) * 1e6
        rows[precision] = {"compute_us": compute_us, "memory_us": memory_us,
                           "roofline_us": max(compute_us, memory_us),
                           "bound": "compute" if compute_us >= memory_us else "memory"}
    return rows


def main() -> int:
    args = harness.base_parser(__doc__.splitlines()[0]).parse_args()
    started = time.perf_counter()
    models = MODELS[:1] if args.quick else MODELS
    costs = []
    for architecture, latent_dim in models:
        cost = model_cost(architecture, latent_dim)
        cost["roofline"] = {name: roofline(cost, board) for name, board in JETSON.items()}
        costs.append(cost)
        print(f"{architecture}-{latent_dim}: encode {cost['encode']['flops'] / 1e6:.2f} MFLOP, "
              f"{cost['encode']['bytes']['fp32']['layerwise'] / 1e6:.2f} MB layerwise fp32; "
              f"decode {cost['decode']['flops'] / 1e6:.2f} MFLOP", flush=True)
    # A 640x480 rgb8 frame crossing DDS is one more copy of these bytes per hop (publisher -> subscriber).
    frame_bytes = {"640x480 rgb8": 640 * 480 * 3, "1280x720 rgb8": 1280 * 720 * 3}
    harness.write_result(args.out, "flops", {
        "what": "per-frame FLOPs (FlopCounterMode: conv/matmul, 2 per MAC) and bytes moved, batch 1; "
                "Jetson roofline = max(FLOPs/peak, layerwise bytes/DRAM bandwidth)",
        "boards": JETSON,
        "models": costs,
        "frame_bytes": frame_bytes,
        "frame_copy_us": {board: {frame: 2 * n / (spec["dram_gbs"] * 1e9) * 1e6 for frame, n in frame_bytes.items()}
                          for board, spec in JETSON.items()},
    }, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
