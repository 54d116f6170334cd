"""CUDA where present: encode latency of each architecture with torch on a GPU, eager fp32 (baseline), eager fp16,
and a CUDA-graph replay of batch 1 (what launch overhead costs these tiny models), plus onnxruntime's CUDA
provider when the installed onnxruntime has it. Not part of `make bench` (CI and this project's machines have
no GPU); run it on a GPU host and keep the JSON beside the others:

    python bench/gpu_torch.py --out bench/results/gpu_torch.json
"""
from __future__ import annotations

import sys
import time

import harness

MODELS = (("TinyVAE", 64), ("TinyVAE32", 64), ("VisionPuzzleVAE", 64))
BATCHES = (1, 8, 32)


def cuda_timer(fn, repeats: int, warmup: int = 10) -> dict:
    """Per-call wall time with a device synchronize after each call (what a node waiting for its result sees)."""
    import torch

    def call():
        fn()
        torch.cuda.synchronize()

    return harness.time_calls(call, repeats=repeats, warmup=warmup, max_time_s=5.0)


def graph_replay(model, x):
    """Capture model.encode(x) once in a CUDA graph; returns a function that replays it."""
    import torch

    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            model.encode(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        model.encode(static_x)
    return graph.replay


def main() -> int:
    args = harness.base_parser(__doc__.splitlines()[0]).parse_args()
    started = time.perf_counter()
    import torch

    from sage_ros.models import build_model

    if not torch.cuda.is_available():
        harness.write_result(args.out, "gpu_torch", {"error": "no CUDA device"}, started=started)
        return 0
    repeats = 20 if args.quick else 200
    rows = []
    for architecture, latent in MODELS:
        torch.manual_seed(0)
        for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            model = build_model(architecture, latent).eval().to("cuda", dtype)
            size = model.image_size
            for batch in BATCHES:
                x = torch.rand(batch, 3, size, size, device="cuda", dtype=dtype)

                def encode():
                    with torch.inference_mode():
                        return model.encode(x)

                stats = cuda_timer(encode, repeats)
                rows.append({"architecture": architecture, "precision": precision, "mode": "eager", "batch": batch,
                             **stats, "frames_per_s": batch / (stats["median_ms"] * 1e-3)})
                if batch == 1:
                    replay = graph_replay(model, x)
                    stats = cuda_timer(replay, repeats)
                    rows.append({"architecture": architecture, "precision": precision, "mode": "cuda graph",
                                 "batch": 1, **stats, "frames_per_s": 1 / (stats["median_ms"] * 1e-3)})
            print(f"{architecture} {precision}: " + ", ".join(
                f"{r['mode']} b{r['batch']} {r['median_ms']:.3f} ms" for r in rows[-4:]), flush=True)
    base = {(r["architecture"], r["batch"]): r["median_ms"] for r in rows
            if r["precision"] == "fp32" and r["mode"] == "eager"}
    for r in rows:
        r["speedup_vs_eager_fp32"] = harness.ratio(base[(r["architecture"], r["batch"])], r["median_ms"])
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        providers = None
    harness.write_result(args.out, "gpu_torch", {
        "what": "torch encode on CUDA, synchronize after each call; speedup vs eager fp32 same batch, same run",
        "device": torch.cuda.get_device_name(0), "torch_cuda": torch.version.cuda,
        "onnxruntime_providers": providers, "rows": rows}, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
