"""The demo's numbers from a recording: frames in/out, rates, latency percentiles, drops, bytes on disk."""
from __future__ import annotations

import os

import numpy as np

from .models import EncoderRun, bundle_bytes, is_untrained
from .recording import Recording
from .replay import ReplayOptions, ReplayResult


# --- summary ---------------------------------------------------------------------------------------------------

def _percentiles(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values_ms, [50, 90, 99])
    return {"p50": round(float(p50), 2), "p90": round(float(p90), 2), "p99": round(float(p99), 2)}


def _rate_hz(log_times_ns: list[int]) -> float | None:
    if len(log_times_ns) < 2:
        return None
    span = (max(log_times_ns) - min(log_times_ns)) / 1e9
    return round((len(log_times_ns) - 1) / span, 2) if span > 0 else None


def _diagnostics_of(recording: Recording, node_name: str) -> dict:
    for name, values in recording.diagnostics.items():
        if name.split(":")[0].rsplit("/", 1)[-1] == node_name:
            return values
    return {}


def summarize(recording: Recording, encoders: list[EncoderRun], result: ReplayResult, options: ReplayOptions) -> dict:
    fp32_onnx = next((bundle_bytes(e.bundle)["onnx_total"] for e in encoders
                      if e.preset == "tinyvae" and e.bundle.precision == "fp32"), None)
    rows = []
    for enc in encoders:
        outputs = recording.outputs[enc.output_topic]
        latency = [(log - recording.input_log_ns[stamp]) / 1e6 for stamp, _, log, _ in outputs
                   if stamp in recording.input_log_ns]
        diag = _diagnostics_of(recording, enc.node_name)
        sizes = bundle_bytes(enc.bundle)
        rows.append({
            "node": enc.node_name, "topic": enc.output_topic, "model": enc.bundle.name,
            "architecture": enc.bundle.architecture, "precision": enc.bundle.precision,
            "latent_shape": list(enc.bundle.latent_shape), "untrained": is_untrained(enc.bundle),
            "frames_in": int(diag.get("frames_received", -1)), "frames_out": len(outputs),
            "dropped": int(diag.get("dropped_frames", -1)), "errors": int(diag.get("errors", -1)),
            "output_rate_hz": _rate_hz([log for _, _, log, _ in outputs]),
            "latency_ms": _percentiles(latency),
            "node_latency_p50_ms": _float(diag.get("latency_p50_ms")),
            "inference_p50_ms": _float(diag.get("inference_p50_ms")), "backend": diag.get("backend", "?"),
            "bytes": sizes,
            "onnx_ratio_vs_fp32": round(fp32_onnx / sizes["onnx_total"], 2)
            if fp32_onnx and enc.preset == "tinyvae" else None,
            "telemetry": _telemetry(recording.telemetry.get(enc.output_topic, {})),
        })
    return {"frames_played": result.frames_played, "frames_recorded_input": len(recording.input_log_ns),
            "input_rate_hz": _rate_hz(list(recording.input_log_ns.values())), "rate": options.rate,
            "start_offset_s": options.start_offset, "input_topic": options.input_topic, "qos": options.qos,
            "bag": str(result.bag),
            "dds_transports": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "default"),
            "wall_s": {k: round(v, 2) for k, v in result.wall_s.items()}, "encoders": rows}


def _telemetry(by_stamp: dict) -> dict:
    """Recorded <output>/telemetry: how many messages, and the medians of the fields a glance needs."""
    out = {"messages": len(by_stamp)}
    for name in ("trust", "recon_mse", "code_entropy_bits", "total_ms"):
        values = [v[name] for v in by_stamp.values() if name in v and v[name] == v[name]]
        if values:
            out[f"{name}_p50"] = round(float(np.median(values)), 4)
    return out


def _float(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN (no samples) -> None


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def summary_text(summary: dict) -> str:
    lines = [f"input {summary['input_topic']}: {summary['frames_played']} frames played ({summary['frames_recorded_input']} recorded) at "
             f"{_fmt(summary['input_rate_hz'])} Hz (rate {summary['rate']}, {summary['qos']} QoS, "
             f"{summary['dds_transports']} DDS transports)",
             f"{'node':<15} {'precision':<9} {'in':>4} {'out':>4} {'drop':>4} {'out Hz':>6} "
             f"{'lat p50':>7} {'p90':>6} {'p99':>6} {'infer':>6}  {'onnx bytes':>10} {'x fp32':>6}  model"]
    for row in summary["encoders"]:
        lat = row["latency_ms"]
        lines.append(f"{row['node']:<15} {row['precision']:<9} {row['frames_in']:>4} {row['frames_out']:>4} "
                     f"{row['dropped']:>4} {_fmt(row['output_rate_hz']):>6} {_fmt(lat['p50']):>7} "
                     f"{_fmt(lat['p90']):>6} {_fmt(lat['p99']):>6} {_fmt(row['inference_p50_ms'], '.2f'):>6}  "
                     f"{row['bytes']['onnx_total']:>10,} {_fmt(row['onnx_ratio_vs_fp32'], '.2f'):>6}  {row['model']}"
                     + ("  [UNTRAINED]" if row["untrained"] else ""))
    for row in summary["encoders"]:
        tel = row.get("telemetry") or {}
        if tel.get("messages"):
            lines.append(f"{row['node']:<15} telemetry: {tel['messages']} messages; median "
                         + ", ".join(f"{k[:-4]} {v}" for k, v in tel.items() if k.endswith("_p50")))
    lines.append("latency = recorder receive time of the latent - recorder receive time of its source frame "
                 "(matched by header stamp), ms; infer = node's backend call p50, ms; "
                 "onnx bytes = encoder.onnx + decoder.onnx on disk")
    if summary.get("bundles"):
        lines.append("model files, bytes on disk (x fp32 = fp32 ONNX bytes / these; all files = the whole bundle):")
        lines.append(f"  {'model':<28} {'arch':<15} {'prec':<5} {'encoder.onnx':>12} {'decoder.onnx':>12} "
                     f"{'x fp32':>6} {'all files':>10}")
        for row in summary["bundles"]:
            lines.append(f"  {row['model']:<28} {row['architecture']:<15} {row['precision']:<5} "
                         f"{row['encoder_onnx']:>12,} {row['decoder_onnx']:>12,} {_fmt(row['onnx_ratio_vs_fp32'], '.2f'):>6} "
                         f"{row['all_files']:>10,}")
    if any(row["untrained"] for row in summary["encoders"]):
        lines.append("WARNING: untrained (seeded) bundles: the reconstructions show plumbing, not model quality")
    return "\n".join(lines)
