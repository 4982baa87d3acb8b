"""Single-process or multi-process (``torchrun``) training, detected from the environment.

``torchrun --nproc_per_node N -m mtcnn_train pnet ...`` (or ``--nnodes`` for several machines)
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the same command without ``torchrun`` trains in
one process.  The process group uses NCCL when training on CUDA and Gloo on the CPU.  Each rank
trains on a disjoint slice of every global batch; DistributedDataParallel averages the gradients,
and only rank 0 writes checkpoints, metrics and TensorBoard events.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from mtcnn_train.devices import resolve_device
from mtcnn_train.errors import UserError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env() -> DistContext:
    """Rank, world size and local rank from torchrun's environment variables (1 process if unset)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (as torchrun sets them)") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"inconsistent distributed environment: RANK={rank}, WORLD_SIZE={world_size}")
    return DistContext(rank, world_size, local_rank)


def rank_device(requested: str, ctx: DistContext) -> torch.device:
    """The device this rank trains on: ``requested`` resolved (:func:`mtcnn_train.devices.resolve_device`),
    and on CUDA the rank's own GPU: ``cuda`` is the rank's local GPU, ``cuda:N`` counts from GPU N."""
    device = resolve_device(requested)
    if device.type != "cuda":
        return torch.device("cpu")
    if device.index is None:
        index = ctx.local_rank % torch.cuda.device_count()
    else:
        index = device.index + (ctx.local_rank if ctx.enabled else 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"device cuda:{index} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)
    return device


def init_process_group(ctx: DistContext, device: torch.device) -> None:
    """Join the process group (no-op for a single process)."""
    if not ctx.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size,
                            timeout=timedelta(minutes=30), **kwargs)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (no-op for a single process)."""
    if ctx.enabled and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_flag(value: bool, ctx: DistContext, device: torch.device) -> bool:
    """Rank 0's ``value`` on every rank (e.g. a decision only rank 0 can make)."""
    if not (ctx.enabled and dist.is_initialized()):
        return value
    flag = torch.tensor([1 if value else 0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def rank_slice(batch_size: int, ctx: DistContext) -> slice:
    """This rank's part of a global batch of ``batch_size`` positions (equal parts, disjoint)."""
    per_rank = batch_size // ctx.world_size
    if per_rank < 1:
        raise UserError(f"batch of {batch_size} samples cannot be split over {ctx.world_size} processes")
    return slice(ctx.rank * per_rank, (ctx.rank + 1) * per_rank)
