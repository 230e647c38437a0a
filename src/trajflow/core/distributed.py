"""Data-parallel training across processes with PyTorch's own engine (torch.distributed + DDP).

Launch any trajflow fit under ``torchrun`` and it trains data-parallel: every process draws its
own share of each step's batch, gradients are averaged by DistributedDataParallel, and all
processes end with the same weights::

    torchrun --nproc_per_node=2 -m trajflow.cli fit data.h5ad --out model_dir

CPU processes use the ``gloo`` backend, GPU processes ``nccl`` with one GPU per process
(``LOCAL_RANK``). Multi-node works the same way with torchrun's ``--nnodes``/``--rdzv-endpoint``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_distributed() -> bool:
    """True when started by torchrun (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> DistributedContext | None:
    """Join the process group when launched with several processes; ``None`` otherwise.

    Initialises the default group from the launcher's environment (``MASTER_ADDR``, ``RANK``...)
    if nobody has yet: ``nccl`` for CUDA devices, ``gloo`` for the CPU.
    """
    if not dist.is_available() or not (dist.is_initialized() or launched_distributed()):
        return None
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def process_device(device: torch.device, context: DistributedContext | None) -> torch.device:
    """One GPU per process: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
    if context is not None and device.type == "cuda" and device.index is None:
        n_gpus = torch.cuda.device_count()
        if context.local_rank >= n_gpus:
            # NCCL cannot put two ranks on one GPU; say so before CUDA's "invalid device ordinal".
            raise ValueError(
                f"Process with LOCAL_RANK={context.local_rank} has no GPU of its own: this node "
                f"has {n_gpus} visible GPU(s). Start at most {n_gpus} process(es) per node "
                "(torchrun --nproc_per_node), or train on the CPU with device='cpu' (gloo)."
            )
        return torch.device("cuda", context.local_rank)
    return device


def data_parallel(net: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``net`` for gradient averaging across processes (parameters are broadcast from
    rank 0 on construction, so every process starts from the same weights)."""
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
