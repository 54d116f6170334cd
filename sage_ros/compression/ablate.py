"""Latent ablation: TinyVAE really trained at each L (same budget each) x {fp32, int8, int4}, measured on the
held-out test split. The research table this redoes was computed on untrained networks; this one is not.

    from sage_ros.compression.ablate import ablate
    result = ablate(TrainConfig(steps=3000, device="cuda"), "runs/ablate")

Layout: <run_dir>/L{n}/ is an ordinary train run (model.safetensors, report.json, checkpoint.pt) plus
fp32.safetensors / int8.safetensors / int4.safetensors (the files whose bytes the table reports). A latent
whose L{n}/model.safetensors exists is not retrained, so weights trained elsewhere (a GPU box) are
quantized and evaluated here. Outputs: ablation.json, ablation.md, ablation.png (4 panels).

Recommendation rule (stated in the report): among all (L, precision) points whose held-out PSNR is within
`psnr_tolerance_db` (default 1 dB) of the best fp32 PSNR and whose mu cosine to its own fp32 model is at
least `min_mu_cosine` (default 0.99; a downstream consumer of the latent must see nearly the same vector),
ship the one with the fewest file bytes. Ties go to the higher precision (simpler deployment).
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch

from sage_ros.atomic import atomic_path, atomic_write_json, atomic_write_text
from sage_ros.models import TinyVAE, build_model

from .checkpoints import MODEL_FILE, load_model
from .datasets import load_images
from .progress import ProgressWriter
from .train import train
from .train_config import TrainConfig

LATENTS = (4, 8, 16, 32, 64)
PRECISIONS = ("fp32", "int8", "int4")
BITS = {"fp32": 32, "int8": 8, "int4": 4}


@dataclasses.dataclass
class AblationConfig:
    latents: tuple = LATENTS
    int4_group_size: int = 64
    psnr_tolerance_db: float = 1.0
    min_mu_cosine: float = 0.99
    train_only: bool = False       # train the missing L{n} runs and stop (the GPU half of the pipeline)
    architecture: str = "TinyVAE"  # TinyVAE (the seed) or TinyVAELinSkip (the variant)
    pca_margin_db: float = 1.0     # recommendation: fp32 must beat PCA with as many components by this much


def train_latents(cfg: TrainConfig, acfg: AblationConfig, run_dir: Path, train_images, test_images) -> dict:
    """L -> trained TinyVAE; loads L{n}/model.safetensors when present instead of training again."""
    models = {}
    for latent in acfg.latents:
        sub = run_dir / f"L{latent}"
        if (sub / MODEL_FILE).exists():
            models[latent] = load_model(sub)
            continue
        torch.manual_seed(cfg.seed)
        models[latent] = train(build_model(acfg.architecture, latent), cfg, sub, train_images=train_images,
                               test_images=test_images, job=f"ablate-L{latent}")
    return models


def measure(model: TinyVAE, sub: Path, acfg: AblationConfig, test_images, views: dict | None = None,
            pca_train=None) -> list[dict]:
    """Quantize a trained model both ways, save each precision as a file, evaluate against the float copy;
    plus PCA with as many components (fit on `pca_train`) as a baseline row. Every row is measured on the test
    crops; with `views` ({name: images}) also on each held-out view (psnr_<view>)."""
    from .evaluate import evaluate_pair, pca_baseline
    from .quantize import Int4Config, Int8Config, quantize_, save_float, save_quantized

    rows = []
    fp32_bytes = save_float(model, sub / "fp32.safetensors").stat().st_size
    configs = {"fp32": None, "int8": Int8Config(), "int4": Int4Config(group_size=acfg.int4_group_size)}
    for precision, qcfg in configs.items():
        if qcfg is None:
            candidate, size = copy.deepcopy(model), fp32_bytes
        else:
            candidate = quantize_(copy.deepcopy(model), qcfg)
            size = save_quantized(candidate, sub / f"{precision}.safetensors").stat().st_size
        result = evaluate_pair(model, candidate, test_images)
        row = {"latent": model.latent_dim, "precision": precision, "bits": BITS[precision],
               "params": sum(p.numel() for p in model.parameters()), "bytes": int(size),
               "ratio_vs_fp32": fp32_bytes / size, "mse": result["mse"], "psnr": result["psnr"],
               "ssim": result["ssim"], "mu_rel_l2": result["mu_rel_l2"], "mu_cosine": result["mu_cosine"],
               "n_images": result["n_images"]}
        for view, images in (views or {}).items():
            row[f"psnr_{view}"] = evaluate_pair(model, candidate, images)["psnr"]
        rows.append(row)
    if pca_train is not None:
        pca = pca_baseline(pca_train, test_images, model.latent_dim)
        row = {"latent": model.latent_dim, "precision": "pca", "bits": 32, "params": None,
               "bytes": 4 * (pca["n_components"] + 1) * int(np.prod(test_images.shape[1:])),
               "ratio_vs_fp32": None, "mse": pca["mse"], "psnr": pca["psnr"], "ssim": pca["ssim"],
               "mu_rel_l2": None, "mu_cosine": None, "n_images": int(len(test_images)),
               "pca_train_images": pca["n_train"]}
        for view, images in (views or {}).items():
            row[f"psnr_{view}"] = pca_baseline(pca_train, images, model.latent_dim)["psnr"]
        rows.append(row)
    return rows


def pareto_front(rows: list[dict]) -> list[dict]:
    """Points no other point beats on both fewer bytes and higher PSNR."""
    rows = [r for r in rows if r["precision"] in PRECISIONS]  # models only; PCA is the reference, not a choice
    return sorted([r for r in rows if not any(
        o["bytes"] <= r["bytes"] and o["psnr"] >= r["psnr"] and (o["bytes"], o["psnr"]) != (r["bytes"], r["psnr"])
        for o in rows)], key=lambda r: r["bytes"])


def recommend(rows: list[dict], acfg: AblationConfig) -> dict:
    """The stated rule: among the fp32 models that beat PCA-L by at least `pca_margin_db` on the test crops
    (a latent must carry more than a projection of the same size), take those within `psnr_tolerance_db` of
    the best fp32 PSNR, and ship the smallest L; its int8/int4 copies ship beside it when their mu cosine to
    it is >= `min_mu_cosine`. When no L clears the PCA margin, the L within the tolerance of the best with the
    largest margin over its PCA is named and the rule says it failed."""
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    pca = {r["latent"]: r["psnr"] for r in rows if r["precision"] == "pca"}
    best = max(r["psnr"] for r in fp32)
    margin = {r["latent"]: r["psnr"] - pca[r["latent"]] for r in fp32 if r["latent"] in pca}
    ok = [r for r in fp32 if margin.get(r["latent"], float("inf")) >= acfg.pca_margin_db
          and r["psnr"] >= best - acfg.psnr_tolerance_db]
    met = bool(ok)
    near_best = [r for r in fp32 if r["psnr"] >= best - acfg.psnr_tolerance_db]
    pick = (min(ok, key=lambda r: r["latent"]) if ok else
            max(near_best, key=lambda r: margin.get(r["latent"], 0.0)))
    quantized = [r["precision"] for r in rows if r["latent"] == pick["latent"] and r["precision"] in ("int8", "int4")
                 and (r["mu_cosine"] or 0) >= acfg.min_mu_cosine]
    beats = (f"beats PCA-{pick['latent']} by {margin[pick['latent']]:+.2f} dB"
             if pick["latent"] in margin else "no PCA row")
    why = (f"{acfg.architecture} L={pick['latent']}: {pick['psnr']:.2f} dB fp32 ({beats}; best fp32 {best:.2f} dB). "
           + ("The smallest L that beats PCA-L by >= {m} dB and is within {t} dB of the best fp32 model."
              if met else "RULE NOT MET: no L beats PCA-L by {m} dB within {t} dB of the best; named: the largest "
              "margin over PCA among the L within {t} dB of the best.").format(m=acfg.pca_margin_db, t=acfg.psnr_tolerance_db)
           + f" Quantized copies with mu cosine >= {acfg.min_mu_cosine}: {', '.join(quantized) or 'none'}.")
    return {"latent": pick["latent"], "precision": "fp32", "bytes": pick["bytes"], "psnr": pick["psnr"],
            "best_fp32_psnr": best, "rule_met": met, "pca_margin_db": margin.get(pick["latent"]),
            "quantized_ok": quantized,
            "rule": {"psnr_tolerance_db": acfg.psnr_tolerance_db, "min_mu_cosine": acfg.min_mu_cosine,
                     "pca_margin_db": acfg.pca_margin_db}, "why": why}


def ablate(cfg: TrainConfig, run_dir: str | Path, acfg: AblationConfig | None = None, *, train_images=None,
           test_images=None) -> dict:
    acfg = acfg or AblationConfig()
    run_dir = Path(run_dir)
    from .batches import training_stream
    if train_images is None and not all((run_dir / f"L{n}" / MODEL_FILE).exists() for n in acfg.latents):
        train_images = training_stream(cfg, TinyVAE.image_size)
    views = {}
    if test_images is None:  # the split and, for the bundled data, the node-like held-out views
        test_images = load_images(cfg.data, TinyVAE.image_size, "test", path=cfg.data_path, topic=cfg.topic)
        views = _views(cfg)
    models = train_latents(cfg, acfg, run_dir, train_images, test_images)
    if acfg.train_only or int(__import__("os").environ.get("RANK", "0")) != 0:
        return {}
    progress = ProgressWriter(run_dir, "ablate")
    pca_train = (np.asarray(train_images) if isinstance(train_images, np.ndarray) else
                 load_images(cfg.data, TinyVAE.image_size, "train", path=cfg.data_path, topic=cfg.topic))
    rows = []
    for i, (latent, model) in enumerate(models.items()):
        progress.update("quantize+evaluate", i, len(models), force=True)
        rows += measure(model, run_dir / f"L{latent}", acfg, test_images, views, pca_train)
    result = {"job": "ablate", "config": dataclasses.asdict(cfg), "ablation": dataclasses.asdict(acfg),
              "test_split": "test", "n_test_images": int(len(test_images)),
              "views": {k: int(len(v)) for k, v in views.items()}, "rows": rows,
              "pareto": [(r["latent"], r["precision"]) for r in pareto_front(rows)],
              "recommendation": recommend(rows, acfg), "train": _train_summaries(run_dir, acfg.latents)}
    atomic_write_json(run_dir / "ablation.json", result)
    plot_ablation(rows, run_dir / "ablation.png")
    atomic_write_text(run_dir / "ablation.md", ablation_markdown(result))
    progress.finish()
    return result


def _views(cfg: TrainConfig) -> dict:
    """Held-out windows and whole frames (augment.held_out_views) for the bundled data; none for other sources."""
    if cfg.data != "bundled":
        return {}
    from .augment import held_out_views
    views = held_out_views(TinyVAE.image_size, cfg.data_path)
    return {k: v for k, v in views.items() if k != "crops"}


def _train_summaries(run_dir: Path, latents) -> dict:
    import json

    out = {}
    for n in latents:
        path = run_dir / f"L{n}" / "report.json"
        if path.exists():
            r = json.loads(path.read_text())
            out[str(n)] = {k: r.get(k) for k in ("steps", "batch_size", "world_size", "train_time_s", "images_per_s",
                                                 "images_seen", "train_images")}
            out[str(n)]["device"] = r.get("config", {}).get("device")
    return out


def ablation_markdown(result: dict) -> str:
    rec = result["recommendation"]
    pareto = {tuple(p) for p in result["pareto"]}
    views = list(result.get("views", {}))
    arch = result.get("ablation", {}).get("architecture", "TinyVAE")
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    lines = [f"# {arch} latent ablation (trained models, held-out test split)", "",
             f"{result['n_test_images']} test crops, deterministic path, [0, 1] range. Bytes are the real "
             "safetensors files (fp32; int8 per-channel; int4 group-wise packed, fp16 scales, float biases/norms); "
             "for PCA the float32 basis + mean. PCA-L is fit on the fixed training crops of `make data`.",
             *([f"Held-out views beside the crops: " + ", ".join(f"{k} ({v} images)" for k, v in result["views"].items())
                + " — windows of many sizes and aspect ratios and whole frames from the test sources, area-resized "
                "to 64x64 as the node does."] if views else []), "",
             "| L | precision | params | bytes | x vs fp32 | MSE | PSNR (dB) | " + "".join(f"PSNR {v} | " for v in views)
             + "SSIM | mu rel L2 | mu cos | Pareto |",
             "|---|---|---|---|---|---|---|" + "---|" * len(views) + "---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['latent']} | {r['precision']} | {fmt(r['params'], ',')} | {r['bytes']:,} | "
                     f"{fmt(r['ratio_vs_fp32'], '.2f')} | {r['mse']:.5f} | {r['psnr']:.2f} | "
                     + "".join(f"{fmt(r.get('psnr_' + v), '.2f')} | " for v in views)
                     + f"{r['ssim']:.4f} | {fmt(r['mu_rel_l2'], '.4f')} | {fmt(r['mu_cosine'], '.5f')} | "
                     f"{'yes' if (r['latent'], r['precision']) in pareto else ''} |")
    lines += ["", f"**Ship:** {rec['why']}", "", "![ablation](ablation.png)", "",
              "Training budget per L: " + ", ".join(
                  f"L{k}: {v['steps']} steps x {v['batch_size']} ({fmt(v.get('images_seen'), ',')} images seen, "
                  f"{v.get('train_images')}) on {v['device']}" for k, v in result["train"].items())]
    return "\n".join(lines) + "\n"


def plot_ablation(rows: list[dict], path: Path) -> None:
    """MSE vs L, bytes vs L, PSNR vs bytes (with the Pareto front), latent drift vs bits."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    by_prec = {p: sorted([r for r in rows if r["precision"] == p], key=lambda r: r["latent"])
               for p in (*PRECISIONS, "pca")}
    for prec, rs in by_prec.items():
        if not rs:
            continue
        ls = [r["latent"] for r in rs]
        axes[0, 0].plot(ls, [r["mse"] for r in rs], "o-", label=prec)
        axes[0, 1].plot(ls, [r["bytes"] / 1024 for r in rs], "o-", label=prec)
        axes[1, 0].scatter([r["bytes"] / 1024 for r in rs], [r["psnr"] for r in rs], label=prec, zorder=3)
        for r in rs:
            axes[1, 0].annotate(f"L{r['latent']}", (r["bytes"] / 1024, r["psnr"]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
    front = pareto_front(rows)
    axes[1, 0].plot([r["bytes"] / 1024 for r in front], [r["psnr"] for r in front], "k--", label="Pareto front")
    latents = sorted({r["latent"] for r in rows})
    for latent in latents:
        rs = sorted([r for r in rows if r["latent"] == latent and r["precision"] in ("int8", "int4")],
                    key=lambda r: r["bits"])
        axes[1, 1].plot([r["bits"] for r in rs], [r["mu_rel_l2"] for r in rs], "o-", label=f"L={latent}")
    for ax, title, xl, yl in [(axes[0, 0], "Reconstruction MSE vs latent size", "L", "test MSE"),
                              (axes[0, 1], "File size vs latent size", "L", "KiB"),
                              (axes[1, 0], "PSNR vs file size", "KiB", "test PSNR (dB)"),
                              (axes[1, 1], "Latent drift vs weight bits", "bits", "mu relative L2 vs fp32")]:
        ax.set_title(title), ax.set_xlabel(xl), ax.set_ylabel(yl), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    for ax in (axes[0, 0], axes[0, 1]):
        ax.set_xscale("log", base=2), ax.set_xticks(latents, [str(v) for v in latents])
    axes[1, 0].set_xscale("log")
    axes[1, 1].set_xticks([4, 8], ["int4", "int8"])
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
