"""Process plumbing of a training run: DDP under torchrun (rank, world size, device), and SIGTERM as a clean
cancellation.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Cancelled(Exception):
    """Raised inside the loop when the job is asked to stop (SIGTERM from jobs.Job.cancel / the node)."""


def cancel_on_sigterm() -> None:
    """Turn SIGTERM into Cancelled, so progress.json says "cancelled" instead of freezing at "training".

    The last checkpoint stays; starting the same job again resumes from it.
    """
    import signal

    def handler(signum, frame):
        raise Cancelled("cancelled by SIGTERM; the last checkpoint is kept and a rerun resumes from it")
    signal.signal(signal.SIGTERM, handler)


def distributed_context(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, torch.device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return rank, world, dev


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def eval_device(cfg) -> torch.device:
    rank, world, device = distributed_context(cfg.device)
    return device
