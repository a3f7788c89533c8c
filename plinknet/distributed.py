"""The few collectives plinknet needs under ``torchrun``, right for NCCL and gloo alike.

``torchrun --nproc_per_node=N -m plinknet train|evaluate|predict ...`` starts N processes and
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init` joins them into a process group
(NCCL on CUDA, gloo on CPU). Without torchrun every function here is a no-op, so the same
code runs in one process.

NCCL only reduces CUDA tensors and gloo is happiest with CPU ones: :func:`all_reduce` moves a
tensor to the device the backend wants and back, so callers never think about it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
import torch.distributed as dist

from plinknet import device as devices


def init(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns ``(rank, world_size)``.

    The backend follows the device: NCCL for CUDA (each rank on ``cuda:LOCAL_RANK``), gloo
    for CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            devices.join_nccl(device)
        else:
            dist.init_process_group("gloo")
    return rank_and_size()


def rank_and_size() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def local_rank_and_size() -> tuple[int, int]:
    """``(LOCAL_RANK, LOCAL_WORLD_SIZE)``: this process among those of its machine."""
    return int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))


def _backend_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return devices.current_gpu()
    return torch.device("cpu")


def all_reduce(tensor: torch.Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
    """Reduce ``tensor`` over all processes (sum by default); a new tensor on ``tensor``'s device.

    Without a process group the tensor is returned unchanged.
    """
    if not dist.is_initialized():
        return tensor
    moved = tensor.detach().to(_backend_device(), copy=True)
    dist.all_reduce(moved, op=op)
    return moved.to(tensor.device)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every process rank ``src``'s buffers of ``module`` (BatchNorm statistics); call it on every rank."""
    if not dist.is_initialized():
        return
    for buffer in module.buffers():
        moved = buffer.detach().to(_backend_device(), copy=True)
        dist.broadcast(moved, src=src)
        buffer.copy_(moved.to(buffer.device))


def any_rank(flag: bool | torch.Tensor) -> bool:
    """True when ``flag`` is true on at least one process: all ranks then act together.

    ``flag`` may be a tensor on any device (0-dim bool or number), so a check can stay on the
    GPU until this one synchronisation.
    """
    value = torch.as_tensor(flag).to(torch.int32).reshape(())
    return bool(all_reduce(value, dist.ReduceOp.MAX).item())


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` without a process group."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if dist.is_initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[devices.current_gpu().index])
        else:
            dist.barrier()


@contextlib.contextmanager
def rank_zero_first():
    """Rank 0 runs the block first (a download into a shared cache, say), then the other ranks, reading what it left.

    A no-op without a process group. Every rank must enter it.
    """
    rank, _ = rank_and_size()
    if rank != 0:
        barrier()
    yield
    if rank == 0:
        barrier()


def shutdown() -> None:
    """Leave the process group, if any (lets torchrun's processes exit cleanly)."""
    if dist.is_initialized():
        dist.destroy_process_group()
