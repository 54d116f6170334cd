"""Render bench/results/*.json as the generated section of BENCHMARKS.md (tables + targets met/missed).

    python bench/report.py [--results bench/results] [--markdown BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import harness
from bundles import find_metric

TARGETS = {"tinyvae_ms": 0.3, "puzzle_int8_speedup": 1.8, "code_agreement": 0.98, "added_ms": 2.0,
           "rss_mb": 200.0}


def _load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def machine_section(docs: dict, command: str | None, timings: dict | None) -> list[str]:
    any_doc = next(iter(docs.values()))
    m = any_doc["machine"]
    lines = ["### Machine and command", "",
             f"- CPU: {m['cpu_model']}, {m['logical_cores']} logical / {m['physical_cores']} physical cores "
             f"({m['affinity_cores']} usable), {m['memory_gib']} GiB; {m['os']}",
             f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
             f"- RMW: {m['rmw']}; git {m['git_commit']}",
             f"- 1-min load average when each benchmark started (the machine is shared): "
             + ", ".join(f"{name} {d['machine']['load_avg_1m']}" for name, d in docs.items())]
    if command:
        lines.append(f"- command: `{command}`")
    for name, doc in docs.items():
        lines.append(f"  - {name} ({doc['created_at']}, {doc.get('wall_s')} s): `{doc['command']}`")
    if timings:
        lines.append(f"- wall time per step (s): {timings}")
    return lines + [""]


def peak_section(doc: dict) -> list[str]:
    rows = [[r["library"], r["threads"], r["n"], _f(r["median_ms"]), _f(r["p99_ms"]), _f(r["gflops_median"], 1),
             _f(r["gflops_best"], 1)] for r in doc["rows"]]
    return ["### CPU attainable peak (fp32 matmul)", "",
            *_table(["library", "threads", "n", "median ms", "p99 ms", "GFLOP/s (median)", "GFLOP/s (best)"], rows),
            f"Peak used for shares: 1 thread {doc['peak_gflops']['1']:.1f} GFLOP/s, all "
            f"{doc['peak_gflops']['all_threads']} threads {doc['peak_gflops']['all']:.1f} GFLOP/s "
            "(best library's median).", ""]


def _rows_by(rows, threads, batch):
    return next((r for r in rows if r.get("threads") == threads and r.get("batch") == batch and "error" not in r), {})


def model_section(doc: dict) -> list[str]:
    header = ["bundle", "prec", "backend", "thr", "b1 median ms", "b1 p99 ms", "b1 x torch", "b1 x torch (best)",
              "b8 frames/s",
              "b32 frames/s", "b32 x torch", "b1 % peak", "b32 % peak", "encoder.onnx KB", "bundle KB",
              "peak RSS MB"]
    rows = []
    for b in doc["bundles"]:
        ort = b["onnxruntime"]
        plain = [r for r in ort["rows"] if r.get("backend") == "onnxruntime"]
        threads = sorted({r["threads"] for r in plain if "error" not in r})
        for t in threads:
            b1, b8, b32 = (_rows_by(plain, t, n) for n in (1, 8, 32))
            share = lambda r: _f(100 * r["share_of_peak"], 1) if r.get("share_of_peak") else "n/a"  # noqa: E731
            rows.append([b["name"], b["precision"], "onnxruntime", t, _f(b1.get("median_ms"), 3),
                         _f(b1.get("p99_ms"), 3), _f(b1.get("speedup_vs_torch_eager"), 1),
                         _f(b1.get("speedup_vs_torch_eager_min"), 1), _f(b8.get("frames_per_s"), 0), _f(b32.get("frames_per_s"), 0),
                         _f(b32.get("speedup_vs_torch_eager"), 1), share(b1), share(b32),
                         _f(b["encoder_bytes"] / 1024, 0), _f(b["bundle_bytes"] / 1024, 0),
                         _f(ort.get("peak_rss_mb"), 0)])
        for r in ort["rows"]:
            if "error" in r:
                rows.append([b["name"], b["precision"], r["backend"], r.get("threads", ""), "error: " + r["error"][:80],
                             *[""] * 11])
            elif r["backend"].startswith("sage_ros.runtime"):
                rows.append([b["name"], b["precision"], "sage_ros.runtime backend", "default",
                             _f(r["median_ms"], 3), _f(r["p99_ms"], 3), *[""] * 10])
    for base in doc["torch_baselines"]:
        for t in sorted({r["threads"] for r in base["rows"]}):
            b1, b8, b32 = (_rows_by(base["rows"], t, n) for n in (1, 8, 32))
            share = lambda r: _f(100 * r["share_of_peak"], 1) if r.get("share_of_peak") else "n/a"  # noqa: E731
            rows.append([f"{base['architecture']}-{base['latent_dim']} (seeded)", "fp32", "torch eager (baseline)", t,
                         _f(b1.get("median_ms"), 3), _f(b1.get("p99_ms"), 3), "1.0", "1.0", _f(b8.get("frames_per_s"), 0),
                         _f(b32.get("frames_per_s"), 0), "1.0", share(b1), share(b32), "", "",
                         _f(base.get("peak_rss_mb"), 0)])
    return ["### Model level: encoder latency and throughput (item 1)", "",
            "Encoder only, float32 NCHW input already in range. `x torch` = torch eager fp32 time / this time, same "
            "threads and batch, same run; `(best)` compares the fastest calls (least disturbed by other jobs). "
            "`% peak` = model FLOPs / time as a share of the fp32 matmul peak above (int8/int4 kernels are not fp32 "
            "FLOPs, so they can exceed 100 %). Peak RSS is the VmHWM of a process that ran only that bundle on that "
            "backend. The `sage_ros.runtime backend` row is the product's wrapper (make_backend) at batch 1.", "",
            *_table(header, rows)]


def node_section(doc: dict) -> list[str]:
    lines = ["### Node level over DDS (item 2)", "",
             f"Frames: {doc['frames']}. Bundles: {doc['bundles']}. CPU % is of one core. `added` = encoder p50 - "
             "pass-through p50 of the same scenario in the same run.", ""]
    rows = []
    for g in doc["groups"]:
        if g.get("error"):
            rows.append([g["dds"], g["qos"], g["kind"], g["transport"], g["cameras"], "", "",
                         "error: " + g["error"], *[""] * 6])
            continue
        for p in g["phases"]:
            n = p["node"]
            rows.append([g["dds"], g["qos"], g["kind"], g["transport"], g["cameras"], p["resolution"], p["rate_hz"],
                         _f(p["achieved_rate_hz"], 1), _f(p["latency_ms"]["p50"]), _f(p["latency_ms"]["p99"]),
                         f"{p['dropped']}/{p['sent']}", _f(n["cpu_percent"], 0), _f(n["rss_mb"], 0),
                         "yes" if n["torch_loaded"] else "no"])
    lines += _table(["DDS", "QoS", "node", "input", "cams", "res", "Hz", "sent Hz/cam", "p50 ms", "p99 ms",
                     "dropped/sent", "CPU %", "RSS MB", "torch"], rows)
    added = doc["summary"]["added_latency"]
    if added:
        lines += ["Encoder added latency over the pass-through:", ""]
        lines += _table(["DDS", "QoS", "input", "cams", "res", "Hz", "pass-through p50", "encoder p50", "added p50",
                         "added p99", "drops enc/pt"],
                        [[a["dds"], a["qos"], a["transport"], a["cameras"], a["resolution"], a["rate_hz"],
                          _f(a["passthrough_p50_ms"]), _f(a["encoder_p50_ms"]), _f(a["added_p50_ms"]),
                          _f(a["added_p99_ms"]), f"{a['encoder_drops']}/{a['passthrough_drops']}"] for a in added])
    for kind, m in doc["summary"]["max_rate"].items():
        steps = ", ".join(f"{s['rate_hz']} Hz -> sent {s['achieved_rate_hz']:.0f}/s, dropped "
                          + (f"{s['dropped']}/{s['sent']}" if "dropped" in s else
                             f"{100 * (s['drop_fraction'] or 0):.1f} %")
                          + f", p50 {s['p50_ms']:.1f} ms" for s in m["steps"])
        lines.append(f"- max input rate with zero drops, {kind} (1 camera, 640x480 rgb8): "
                     f"{m['max_zero_drop_rate_hz']} Hz; steps: {steps}")
    return lines + [""]


def offline_section(doc: dict) -> list[str]:
    def fit(f):
        return (f"{'linear' if f['linear'] else 'NOT linear'} (R² {f['r2']:.3f}; {f['x_ratio']:.0f}x input -> "
                f"{f['y_ratio']:.2f}x time; fixed {f['intercept_s']:.2f} s + {f['slope_s_per_unit'] * 1e3:.3f} ms/unit)")

    t, d, q = doc["train"], doc["distill"], doc["quantize_export"]
    lines = ["### Offline (item 3)", "", f"torch threads: {doc['torch_threads']}; each point is the fastest of "
             f"{doc.get('repeats', 1)} run(s) (the least disturbed by the machine's other jobs).", ""]
    lines += _table(["job", "size", "time s", "images/s"],
                    [["train TinyVAE-64, 1 epoch", r["images"], _f(r["train_time_s"]), _f(r["images_per_s"], 0)]
                     for r in t["by_dataset_size"]]
                    + [[f"train TinyVAE-{r['latent_dim']}, {r['steps']} steps", f"L={r['latent_dim']}",
                        _f(r["train_time_s"]), _f(r["images_per_s"], 0)] for r in t["by_latent_dim"]]
                    + [["distill StandardVAE -> TinyVAE32, 1 epoch", r["images"], _f(r["student_time_s"]),
                        _f(r["student_images_per_s"], 0)] for r in d["by_dataset_size"]])
    lines += _table(["latent dim", "params", "quantize INT8 s", "quantize INT4 s", "export fp32 bundle s"],
                    [[r["latent_dim"], r["params"], _f(r["quantize_int8_s"], 3), _f(r["quantize_int4_s"], 3),
                      _f(r["export_fp32_s"], 3)] for r in q["by_latent_dim"]])
    lines += _table(["held-out images", "evaluate_pair s"],
                    [[r["images"], _f(r["evaluate_s"], 3)] for r in q["evaluate_by_dataset_size"]])
    lines += [f"- training time vs dataset size: {fit(t['fit_dataset_size'])}",
              f"- training time vs latent dim (fixed steps): {fit(t['fit_latent_dim'])}",
              f"- distillation time vs dataset size: {fit(d['fit_dataset_size'])}",
              f"- INT8 quantization vs latent dim: {fit(q['fit_quantize_int8_latent'])}",
              f"- INT4 quantization vs latent dim: {fit(q['fit_quantize_int4_latent'])}",
              f"- export vs latent dim: {fit(q['fit_export_latent'])}",
              f"- evaluation vs dataset size: {fit(q['fit_evaluate_dataset_size'])}",
              f"- {q['note']}", ""]
    return lines


def flops_section(doc: dict, model_doc: dict | None) -> list[str]:
    measured = {}
    if model_doc:
        for base in model_doc["torch_baselines"]:
            measured[base["architecture"]] = {"torch": _rows_by(base["rows"], 1, 1).get("median_ms")}
        for b in model_doc["bundles"]:
            if b["precision"] == "fp32":
                measured.setdefault(b["architecture"], {})["ort"] = _rows_by(b["onnxruntime"]["rows"], 1, 1).get(
                    "median_ms")
    rows = []
    for m in doc["models"]:
        e = m["encode"]
        rows.append([f"{m['architecture']}-{m['latent_dim']}", m["params"], _f(e["flops"] / 1e6, 2),
                     _f(m["decode"]["flops"] / 1e6, 2), _f(e["bytes"]["fp32"]["ideal"] / 1e6, 2),
                     _f(e["bytes"]["fp32"]["layerwise"] / 1e6, 2), _f(e["bytes"]["fp16"]["layerwise"] / 1e6, 2),
                     e["leaf_modules"], _f(measured.get(m["architecture"], {}).get("ort"), 3),
                     _f(measured.get(m["architecture"], {}).get("torch"), 3)])
    lines = ["### FLOPs, bytes per frame and Jetson roofline (item 4, on paper)", "",
             *_table(["model", "params", "encode MFLOP", "decode MFLOP", "encode MB ideal fp32",
                      "encode MB layerwise fp32", "encode MB layerwise fp16", "layers", "measured ORT 1 thr ms",
                      "measured torch 1 thr ms"], rows),
             "Roofline lower bound of one batch-1 encode, µs (max of FLOPs/peak and layerwise bytes/bandwidth):", ""]
    boards = list(doc["boards"])
    rows = []
    for m in doc["models"]:
        for precision in ("fp32", "fp16", "int8"):
            cells = []
            for board in boards:
                r = m["roofline"][board].get(precision)
                cells.append(f"{r['roofline_us']:.1f} ({r['bound']})" if r else "n/a")
            rows.append([f"{m['architecture']}-{m['latent_dim']}", precision, *cells])
    lines += _table(["model", "precision", *boards], rows)
    lines += [f"- {board}: FP32 {spec['fp32_gflops']} GFLOP/s, FP16 {spec['fp16_gflops']} GFLOP/s, INT8 "
              f"{spec['int8_gops']} GOP/s dense, DRAM {spec['dram_gbs']} GB/s. Source: {spec['source']}"
              for board, spec in doc["boards"].items()]
    lines += [f"- one DDS hop copies the frame at least once: {board}: "
              + ", ".join(f"{frame} {us:.0f} µs" for frame, us in frames.items())
              for board, frames in doc["frame_copy_us"].items()]
    return lines + [""]


def profile_section(doc: dict) -> list[str]:
    lines = ["### Encoder node hot path profile (item 5)", "", f"Tool: {doc['tool']}. Scenario: {doc['scenario']}.", ""]
    if doc.get("error"):
        return lines + [f"error: {doc['error']}", ""]
    for name, scenario in doc.get("scenarios", {}).items():
        if scenario.get("error"):
            lines += [f"{name}: error: {scenario['error']}", ""]
            continue
        lines += [f"**{name} input** ({scenario['busy_samples']} busy samples, {scenario['waiting_samples']} waiting; "
                  f"node CPU {scenario['cpu_percent']:.0f} %, p50 {scenario['latency_ms']['p50']:.1f} ms, "
                  f"dropped {scenario['dropped']}/{scenario['sent']}):", ""]
        lines += _table(["function (file:line)", "own %", "total %"],
                        [[f"`{r['function']}` ({r['location']})", _f(r["own_pct"], 1), _f(r["total_pct"], 1)]
                         for r in scenario["top"][:10]])
    for entry in doc.get("onnx", []):
        lines.append(f"- onnxruntime profiler, {entry['bundle']} ({entry['precision']}, 1 thread, batch 1): "
                     f"{entry['kernel_ms_per_run']:.2f} ms of kernels per run; " + ", ".join(
                         f"{o['op']} {o['share_pct']:.0f} %" for o in entry["by_op"][:6]))
    for variants in (doc.get("int8_variants"), doc.get("int8_variants_tinyvae")):
        if not variants:
            continue
        lines += ["", f"INT8 activation scheme of {variants['bundle']} (interleaved, {variants['rounds']} rounds, "
                  "1 thread, batch 1):", ""]
        lines += _table(["graph", "median ms", "min ms", "p99 ms", "x fp32 (medians)", "x fp32 (best of)",
                         "code agreement vs fp32 (on the calibration images)"],
                        [[r["variant"], _f(r["median_ms"], 3), _f(r["min_ms"], 3), _f(r["p99_ms"], 3), _f(r["speedup_vs_fp32"]),
                          _f(r.get("speedup_vs_fp32_min")), _f(r["agreement_vs_fp32_seeded"], 4)]
                         for r in variants["rows"]])
    return lines + [""]


def int8_trained_section(doc: dict) -> list[str]:
    if doc.get("error"):
        return [f"### INT8 activation scheme on the trained model: {doc['error']}", ""]
    lines = [f"### INT8 bundles per target on the trained model ({doc['fp32_bundle']}, {doc['test_images']} held-out "
             "images; encoder speed onnxruntime CPU, 1 thread, batch 1, interleaved)", ""]
    rows = []
    for label, speed in doc["speed"].items():
        q = doc["quality"].get(label, {})
        t = doc.get("targets", {}).get(label, {})
        trt = t.get("tensorrt_valid")
        rows.append([label, t.get("target") or "–", _f(speed["median_ms"]), _f(speed["min_ms"]),
                     _f(speed["speedup_vs_fp32"]), _f(speed["speedup_vs_fp32_min"]), _f(q.get("code_agreement"), 2),
                     _f(q.get("psnr"), 2), "–" if trt is None else ("yes" if trt else "no")])
    return lines + _table(["encoder", "target", "median ms", "min ms", "x fp32", "x fp32 (best of)",
                           "code agreement %", "PSNR dB", "TensorRT-valid Q/DQ"], rows)


def _int8_target(bundle: dict) -> str | None:
    """bundle.json quantization.target ("cpu" | "tensorrt") of a model_level bundle entry, if it says."""
    path = Path(bundle.get("path", "")) / "bundle.json"
    try:
        return json.loads(path.read_text()).get("quantization", {}).get("target")
    except (OSError, ValueError):
        return None


def targets_section(docs: dict) -> list[str]:
    """Each target of issue 6: met / missed, by how much."""
    lines = ["### Targets", ""]
    model = docs.get("model_level")
    if model:
        tiny = [b for b in model["bundles"] if b["architecture"] == "TinyVAE"]
        for b in tiny:
            r = _rows_by(b["onnxruntime"]["rows"], 1, 1)
            if r:
                ms = r["median_ms"]
                lines.append(f"- TinyVAE encode ≤ {TARGETS['tinyvae_ms']} ms/frame, 1 core, onnxruntime — {b['name']}: "
                             f"{ms:.3f} ms median (p99 {r['p99_ms']:.3f}) -> "
                             f"{'MET' if ms <= TARGETS['tinyvae_ms'] else 'MISSED'} "
                             f"({(ms / TARGETS['tinyvae_ms'] - 1) * 100:+.0f} % vs target)")
        puzzles = [b for b in model["bundles"] if b["architecture"] == "VisionPuzzleVAE"]
        fp32 = next((b for b in puzzles if b["precision"] == "fp32"), None)
        int8s = [b for b in puzzles if b["precision"] == "int8"]
        for int8 in int8s if fp32 else []:
            r32, r8 = (_rows_by([r for r in b["onnxruntime"]["rows"] if r.get("backend") == "onnxruntime"], 1, 1)
                       for b in (fp32, int8))
            if r32 and r8:
                speedup, best = r32["median_ms"] / r8["median_ms"], r32["min_ms"] / r8["min_ms"]
                agreement = find_metric(int8.get("metrics", {}), "code_agreement")
                if isinstance(agreement, (int, float)) and agreement > 1.0:
                    agreement = agreement / 100.0  # evaluate.py reports percent, export's verify a fraction
                verdict = "MET" if speedup >= TARGETS["puzzle_int8_speedup"] else "MISSED"
                if _int8_target(int8) == "tensorrt":  # a TensorRT graph: onnxruntime CPU speed is not its target
                    verdict = "not its target (TensorRT Q/DQ placement; built into an engine on the Jetson)"
                lines.append(f"- VisionPuzzleVAE INT8 ≥ {TARGETS['puzzle_int8_speedup']}x faster than FP32 (ORT, 1 "
                             f"thread, batch 1) — {int8['name']} vs {fp32['name']}: medians {r32['median_ms']:.2f} / "
                             f"{r8['median_ms']:.2f} ms = {speedup:.2f}x, best-of {best:.2f}x -> "
                             f"{verdict}; code agreement "
                             + (f"{agreement:.4f} (bundle.json metrics) -> "
                                f"{'MET' if agreement >= TARGETS['code_agreement'] else 'MISSED'}"
                                if isinstance(agreement, (int, float)) else
                                "not in bundle.json (seeded stand-in or metrics missing)"))
        if not (fp32 and int8s):
            lines.append("- VisionPuzzleVAE INT8 vs FP32: no INT8 puzzle bundle was present in this run -> NOT MEASURED")
    trained = docs.get("int8_trained")
    if trained and not trained.get("error"):
        for label, speed in trained["speed"].items():
            if label == "fp32":
                continue
            agreement = trained["quality"].get(label, {}).get("code_agreement")
            ok_speed = speed["speedup_vs_fp32"] >= TARGETS["puzzle_int8_speedup"]
            ok_codes = agreement is not None and agreement >= 100 * TARGETS["code_agreement"]
            target = trained.get("targets", {}).get(label, {})
            verdict = (f"speed {'MET' if ok_speed else 'MISSED'}, " if target.get("target") != "tensorrt" else
                       f"TensorRT-valid Q/DQ {'yes' if target.get('tensorrt_valid') else 'NO'} (CPU speed not its "
                       "target), ")
            lines.append(f"- trained {trained['fp32_bundle']}, {label} (interleaved, ORT 1 thread): "
                         f"{speed['speedup_vs_fp32']:.2f}x (best-of {speed['speedup_vs_fp32_min']:.2f}x) vs fp32, "
                         f"code agreement {_f(agreement, 2)} % -> {verdict}"
                         f"agreement {'MET' if ok_codes else 'MISSED'}")
    node = docs.get("node_level")
    if node:
        for a in node["summary"]["added_latency"]:
            if (a["transport"], a["cameras"], a["resolution"], a["rate_hz"]) == ("raw", 1, "640x480", 30):
                lines.append(f"- encoder adds ≤ {TARGETS['added_ms']} ms p50 over pass-through (30 Hz 640x480, "
                             f"{a['dds']} DDS, {a['qos']}): {a['added_p50_ms']:.2f} ms -> "
                             f"{'MET' if a['added_p50_ms'] <= TARGETS['added_ms'] else 'MISSED'}")
        for g in node["groups"]:
            if g["kind"] == "encoder" and g["cameras"] == 2 and g["transport"] == "raw" and g.get("phases"):
                for p in g["phases"]:
                    if p["resolution"] == "640x480" and p["rate_hz"] == 30:
                        lines.append(f"- 2 cameras x 30 Hz 640x480 with zero drops ({g['dds']} DDS, {g['qos']}): "
                                     f"{p['dropped']}/{p['sent']} dropped -> {'MET' if p['dropped'] == 0 else 'MISSED'}")
        rss = [(g["dds"], g["cameras"], g["transport"], p["node"]) for g in node["groups"]
               if g["kind"] == "encoder" for p in g.get("phases", [])]
        if rss:
            worst = max(rss, key=lambda x: x[3]["rss_mb"])
            lines.append(f"- encoder RSS ≤ {TARGETS['rss_mb']:.0f} MB with onnxruntime: max {worst[3]['rss_mb']:.0f} MB "
                         f"({worst[1]} cams, {worst[2]}), torch loaded: "
                         f"{'yes' if any(x[3]['torch_loaded'] for x in rss) else 'no'} -> "
                         f"{'MET' if worst[3]['rss_mb'] <= TARGETS['rss_mb'] else 'MISSED'}")
    return lines + [""]


def render(results: Path, command: str | None = None, timings: dict | None = None) -> str:
    names = ("peak", "flops", "model_level", "node_level", "offline", "profile_node", "int8_trained")
    docs = {name: doc for name in names if (doc := _load(results, name))}
    if not docs:
        return "_no results yet: run `make bench`_\n"
    lines = ["_Generated by `bench/report.py` from `bench/results/*.json`; do not edit by hand._", ""]
    lines += machine_section(docs, command, timings)
    lines += targets_section(docs)
    for name, section in (("peak", peak_section), ("model_level", model_section), ("node_level", node_section),
                          ("offline", offline_section), ("profile_node", profile_section)):
        if name in docs:
            lines += section(docs[name])
    if "int8_trained" in docs:
        lines += int8_trained_section(docs["int8_trained"])
    if "flops" in docs:
        lines += flops_section(docs["flops"], docs.get("model_level"))
    return "\n".join(lines)


def write_markdown(results: Path, markdown: Path, command: str | None = None, timings: dict | None = None) -> None:
    harness.replace_section(markdown, render(results, command, timings))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=harness.RESULTS)
    parser.add_argument("--markdown", type=Path, default=harness.REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    write_markdown(args.results, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
