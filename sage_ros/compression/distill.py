"""Knowledge distillation: StandardVAE teacher (512-d latent, 8.7 M params) -> TinyVAE32 student (64-d, 294 k).

    from sage_ros.compression.distill import DistillConfig, distill
    report = distill(TrainConfig(steps=2000), DistillConfig(), "runs/distill")

Student loss, each term weighted by DistillConfig (defaults 0.3 / 0.1 / 0.3 / 0.2 / 0.1):
    w_rec  * ||x_s - x||^2                 reconstruction of the image
    w_kl   * KL(q_s(z|x) || N(0, I))        the student stays a VAE
    w_lat  * ||P(mu_t) - mu_s||^2           latent matching through a trained projection P: Linear 512 -> 64
    w_out  * ||x_s - x_t||^2                imitate the teacher's reconstruction
    w_perc * feature loss                   MSE between feature maps of x_s and of x (frozen teacher encoder
                                            maps, StandardVAE.encoder_features; or a local VGG16 weights file)
Scale of the terms: image and latent terms are summed over their elements per image and averaged over the
batch (so with w_kl the KL is on the ELBO's scale); the feature term is the per-element MSE averaged over
the feature maps and multiplied by the image's element count (3 * 32 * 32), so that it weighs like one
image-space term instead of drowning the others in ~30 k feature values.
P is a parameter of the optimised module (it is in the optimizer) and is saved as projection.safetensors.

Temperature: there is none. Softening the teacher's posterior would only matter for a term that matches
distributions (KL between posteriors); every teacher term here uses the teacher's deterministic path
(mu_t and decode(mu_t)), where a temperature would change nothing, so the knob is left out on purpose.

The run directory holds teacher/ (trained first unless it exists or --teacher names one), student/ (the
distilled TinyVAE32 + P) and baseline/ (a TinyVAE32 trained on the same data and budget with the same w_rec
and w_kl but no teacher terms), plus report.json / report.md comparing the three on the held-out test split.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from sage_ros.atomic import atomic_path, atomic_write_json, atomic_write_text
from sage_ros.models import StandardVAE, TinyVAE32
from sage_ros.models.common import kl_divergence

from .batches import curve_images, training_stream
from .checkpoints import MODEL_FILE, CheckpointError, load_model
from .datasets import load_images
from .distributed import distributed_context
from .held_out import evaluate_reconstruction, held_out_curve
from .train import fit, train
from .train_config import TrainConfig
from .train_report import write_run_outputs

IMAGE_SIZE = 32


@dataclasses.dataclass
class DistillConfig:
    w_rec: float = 0.3
    w_kl: float = 0.1
    w_lat: float = 0.3
    w_out: float = 0.2
    w_perc: float = 0.1
    perceptual: str = "teacher"        # "teacher" (frozen teacher encoder maps) | "vgg16" (needs vgg16_weights)
    vgg16_weights: str | None = None   # local torchvision-layout VGG16 state dict (.pth or .safetensors)
    teacher: str | None = None         # trained teacher run dir / file; default <run_dir>/teacher, trained if absent
    teacher_steps: int | None = None   # teacher budget (default: the student's TrainConfig)
    student_latent: int = 64
    baseline: bool = True              # also train the no-distillation student (the honest comparison)

    def __post_init__(self):
        if self.perceptual not in ("teacher", "vgg16"):
            raise ValueError(f"perceptual must be 'teacher' or 'vgg16', got {self.perceptual!r}")
        if self.perceptual == "vgg16" and not self.vgg16_weights:
            raise ValueError("perceptual='vgg16' needs vgg16_weights (a local file; nothing is downloaded)")
        if min(self.w_rec, self.w_kl, self.w_lat, self.w_out, self.w_perc) < 0:
            raise ValueError("loss weights must be >= 0")


class DistillStudent(nn.Module):
    """The optimised module: the student plus the projection P (teacher latent -> student latent)."""

    def __init__(self, student: TinyVAE32, teacher_latent: int):
        super().__init__()
        self.student = student
        self.projection = nn.Linear(teacher_latent, student.latent_dim)

    def forward(self, x: torch.Tensor, mu_teacher: torch.Tensor):
        recon, mu, logvar = self.student(x)
        return recon, mu, logvar, self.projection(mu_teacher)


# VGG16 "features" layout as torchvision names it, so that a local torchvision weights file loads as is.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG16_TAPS = (3, 8, 15)  # relu1_2, relu2_2, relu3_3
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """Frozen VGG16 conv stack up to relu3_3, from a local weights file (no torchvision, no download)."""

    def __init__(self, weights_path: str | Path):
        super().__init__()
        layers, c_in = [], 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = v
        self.features = nn.Sequential(*layers[:VGG16_TAPS[-1] + 1])
        state = _load_state_dict(Path(weights_path))
        wanted = {k: v for k, v in state.items() if k.startswith("features.")
                  and int(k.split(".")[1]) <= VGG16_TAPS[-1]}
        missing, _ = self.load_state_dict(wanted, strict=False)
        if missing:
            raise CheckpointError(f"{weights_path}: not VGG16 feature weights (missing {missing[:3]} ...)")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, taps = (x - self.mean) / self.std, []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in VGG16_TAPS:
                taps.append(h)
        return taps


def _load_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def feature_loss(features, x_student: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over maps of the per-element feature MSE; gradients reach x_student through frozen features."""
    with torch.no_grad():
        target = features(x)
    pred = features(x_student)
    return sum(F.mse_loss(p, t) for p, t in zip(pred, target)) / len(pred)


def distill_loss_fn(teacher: StandardVAE, features, dcfg: DistillConfig):
    """loss_fn(module, x, step, total) for fit(); teacher terms with weight 0 are not computed at all."""
    use_teacher = dcfg.w_lat > 0 or dcfg.w_out > 0

    def loss_fn(module, x, step, total):
        if use_teacher:
            with torch.no_grad():
                mu_t, _ = teacher.encode(x)
                x_t = teacher.decode(mu_t)  # deterministic teacher path (see "Temperature" above)
            x_s, mu_s, logvar_s, p_mu_t = module(x, mu_t)
        else:
            x_s, mu_s, logvar_s = module(x)
        n, image_elems = x.shape[0], x[0].numel()
        terms = {"rec": F.mse_loss(x_s, x, reduction="sum") / n, "kl": kl_divergence(mu_s, logvar_s)}
        if use_teacher:
            terms["lat"] = F.mse_loss(p_mu_t, mu_s, reduction="sum") / n
            terms["out"] = F.mse_loss(x_s, x_t, reduction="sum") / n
        if dcfg.w_perc > 0:
            terms["perc"] = feature_loss(features, x_s, x) * image_elems
        weights = {"rec": dcfg.w_rec, "kl": dcfg.w_kl, "lat": dcfg.w_lat, "out": dcfg.w_out, "perc": dcfg.w_perc}
        loss = sum(weights[k] * v for k, v in terms.items())
        return loss, {k: v.detach() for k, v in terms.items()}
    return loss_fn


def ensure_teacher(cfg: TrainConfig, dcfg: DistillConfig, run_dir: Path, train_images, test_images) -> StandardVAE:
    """Load the teacher, or train it first (resumably) into <run_dir>/teacher."""
    if dcfg.teacher:
        teacher = load_model(dcfg.teacher)
        if not isinstance(teacher, StandardVAE):
            raise CheckpointError(f"{dcfg.teacher} is a {type(teacher).__name__}, the teacher must be a StandardVAE")
        return teacher
    teacher_dir = run_dir / "teacher"
    if (teacher_dir / MODEL_FILE).exists():
        return load_model(teacher_dir)
    tcfg = dataclasses.replace(cfg, steps=dcfg.teacher_steps) if dcfg.teacher_steps else cfg
    torch.manual_seed(cfg.seed)
    return train(StandardVAE(), tcfg, teacher_dir, train_images=train_images, test_images=test_images,
                 job="distill-teacher")


def _student_run(cfg, dcfg, teacher, features, images, run_dir: Path, job: str, with_teacher: bool):
    torch.manual_seed(cfg.seed)  # student and baseline start from the same initial weights
    student = TinyVAE32(dcfg.student_latent)
    if with_teacher:
        module = DistillStudent(student, teacher.latent_dim)
    else:
        module = _NoTeacher(student)
        dcfg = dataclasses.replace(dcfg, w_lat=0.0, w_out=0.0, w_perc=0.0)
    curve = None
    if cfg.eval_every > 0:  # the held-out curve of the student itself (not of the wrapper with P)
        student_curve = held_out_curve(*curve_images(cfg, IMAGE_SIZE, images))
        curve = lambda m, **kw: student_curve(m.student, **kw)  # noqa: E731
    stats = fit(module, distill_loss_fn(teacher, features, dcfg), images, cfg, run_dir, job=job, curve=curve)
    return student.eval(), module, stats


class _NoTeacher(nn.Module):
    """Baseline wrapper: same student, same loop, no projection (DDP must not see unused parameters)."""

    def __init__(self, student):
        super().__init__()
        self.student = student

    def forward(self, x):
        return self.student(x)


def distill(cfg: TrainConfig, dcfg: DistillConfig, run_dir: str | Path, *, train_images=None,
            test_images=None) -> dict:
    """Teacher (trained if absent) -> distilled student (+ baseline); returns the comparison report."""
    run_dir = Path(run_dir)
    if train_images is None:  # fresh crops per batch for the bundled data (train.training_stream)
        train_images = training_stream(cfg, IMAGE_SIZE)
    if test_images is None:
        test_images = load_images(cfg.data, IMAGE_SIZE, "test", path=cfg.data_path, topic=cfg.topic)
    rank, _world, device = distributed_context(cfg.device)
    teacher = ensure_teacher(cfg, dcfg, run_dir, train_images, test_images).to(device).eval().requires_grad_(False)
    features = teacher.encoder_features
    if dcfg.perceptual == "vgg16":
        features = VGG16Features(dcfg.vgg16_weights).to(device)

    runs = [("student", True)] + ([("baseline", False)] if dcfg.baseline else [])
    results = {}
    for name, with_teacher in runs:
        sub = run_dir / name
        student, module, stats = _student_run(cfg, dcfg, teacher, features, train_images, sub,
                                              f"distill-{name}", with_teacher)
        progress, metrics = stats.pop("progress"), None
        if stats.pop("is_main"):
            progress.update("evaluating", stats["steps"], stats["steps"], stats["final_loss"], force=True)
            metrics = evaluate_reconstruction(student, test_images, cfg.eval_batch_size, device)
            extra = {"distill": dataclasses.asdict(dcfg) if with_teacher else None}
            write_run_outputs(student, sub, cfg, stats, metrics, f"distill-{name}", extra)
            if with_teacher:
                _save_projection(module.projection, sub / "projection.safetensors")
            progress.finish()
        results[name] = {"metrics": metrics,
                         "params": sum(p.numel() for p in student.parameters()), **stats}
    if rank != 0:
        return {}
    teacher_metrics = evaluate_reconstruction(teacher, test_images, cfg.eval_batch_size, device)
    from .augment import OnlineCrops
    n_train = (f"online crops of {len(train_images.sources.photos)} photos + {len(train_images.sources.frames)} "
               "video frames" if isinstance(train_images, OnlineCrops) else f"{len(train_images)} training images")
    report = _comparison(cfg, dcfg, teacher, teacher_metrics, results, n_train)
    atomic_write_json(run_dir / "report.json", report)
    atomic_write_text(run_dir / "report.md", _comparison_markdown(report))
    return report


def _save_projection(projection: nn.Linear, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in projection.state_dict().items()}, str(tmp))


def load_projection(path: str | Path) -> nn.Linear:
    state = load_file(str(path))
    out_dim, in_dim = state["weight"].shape
    proj = nn.Linear(in_dim, out_dim)
    proj.load_state_dict(state)
    return proj.eval()


def _comparison(cfg, dcfg, teacher, teacher_metrics, results, n_train) -> dict:
    rows = {"teacher": {"architecture": "StandardVAE", "latent_dim": teacher.latent_dim,
                        "params": sum(p.numel() for p in teacher.parameters()), "metrics": teacher_metrics}}
    for name, r in results.items():
        rows[name] = {"architecture": "TinyVAE32", "latent_dim": dcfg.student_latent,
                      "params": r["params"], "metrics": r["metrics"],
                      "steps": r["steps"], "batch_size": r["batch_size"], "train_time_s": r["train_time_s"]}
    verdict = None
    if "baseline" in rows:
        gain = rows["student"]["metrics"]["psnr"] - rows["baseline"]["metrics"]["psnr"]
        # +-0.1 dB: below that, seeds and BatchNorm statistics move PSNR as much as the method does
        verdict = {"psnr_gain_db_vs_baseline": gain, "distillation_helped": gain > 0.1,
                   "distillation_hurt": gain < -0.1}
    return {"job": "distill", "config": dataclasses.asdict(cfg), "distill": dataclasses.asdict(dcfg),
            "train_images": n_train, "test_split": "test", "models": rows, "verdict": verdict,
            "temperature": "none: every teacher term uses the deterministic teacher path (mu_t)"}


def _comparison_markdown(report: dict) -> str:
    lines = ["# Distillation: StandardVAE teacher -> TinyVAE32 student", "",
             f"Held-out `test` split, deterministic path, [0, 1] range. Student and baseline: same data "
             f"({report['train_images']}), same budget, same initial weights.", "",
             "| model | latent | params | MSE | PSNR (dB) | SSIM |", "|---|---|---|---|---|---|"]
    for name, row in report["models"].items():
        m = row["metrics"]
        lines.append(f"| {name} | {row['latent_dim']} | {row['params']:,} | {m['mse']:.5f} | {m['psnr']:.2f} | "
                     f"{m['ssim']:.4f} |")
    if report["verdict"]:
        v = report["verdict"]
        word = ("helped" if v["distillation_helped"] else "hurt" if v["distillation_hurt"]
                else "made no clear difference (within 0.1 dB)")
        lines += ["", f"Distillation {word}: {v['psnr_gain_db_vs_baseline']:+.2f} dB PSNR versus the student "
                      "trained without the teacher."]
    d = report["distill"]
    lines += ["", f"Weights: rec {d['w_rec']}, kl {d['w_kl']}, lat {d['w_lat']}, out {d['w_out']}, "
                  f"perc {d['w_perc']} ({d['perceptual']} features). Temperature: {report['temperature']}."]
    return "\n".join(lines) + "\n"
