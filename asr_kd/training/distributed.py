"""Where training runs: the device of this process and, under ``torchrun``, its process group.

One process per GPU (or per group of CPU cores), as ``torchrun --nnodes M --nproc-per-node N``
starts them: each reads ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` from the environment, joins the group
(NCCL on GPUs, Gloo on CPUs) and takes its share of the batches; rank 0 alone writes shared files.
Under Hydra's submitit launcher (``hydra/launcher=slurm``, one task per GPU) the same variables are
exported from SLURM's by submitit's ``TorchDistributedEnvironment`` (:func:`export_submitit_env`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from asr_kd.errors import ConfigError

__all__ = ["export_submitit_env", "resolve_device", "init_distributed", "rank_world", "is_main_process",
           "barrier"]


def export_submitit_env() -> None:
    """In a submitit task without torchrun's variables, export them from the job's (SLURM's or the local
    executor's): rank = task, world = tasks of the job (hydra #2231: ``tasks_per_node`` = GPUs per node)."""
    if "SUBMITIT_EXECUTOR" not in os.environ or "WORLD_SIZE" in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # cuda:LOCAL_RANK is ours


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU; or ``cpu``/``cuda``/``cuda:N``."""
    export_submitit_env()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} was asked for, but torch sees no CUDA device")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the ``torchrun`` process group if ``WORLD_SIZE > 1`` (once); return ``(rank, world)``."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank_world()


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the joined group, or of the ``torchrun`` environment before joining."""
    export_submitit_env()
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes checkpoints, stamps and reports."""
    return rank_world()[0] == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
