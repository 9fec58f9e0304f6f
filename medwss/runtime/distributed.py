"""torch.distributed for torchrun: process group set-up, rank facts, and the few collectives training needs.

``torchrun --nproc_per_node N -m medwss train BUNDLE`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and a rendezvous in their environment; `distributed_run` joins them into one process group (gloo on
the CPU, nccl on GPUs) and leaves it at the end. Outside torchrun every helper here is a no-op on one process, so
the training code reads the same either way. Rank 0 is the only writer of checkpoints, metrics and progress.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

T = TypeVar("T")
RANK_SEED_STRIDE = 1_000_003
"""Per-rank seeds are ``seed + rank * RANK_SEED_STRIDE``: far apart, and rank 0 keeps the run's own seed."""


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``size`` processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, metrics, exports and progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's ``World``: the process group's when one is set up, else one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def env_world() -> World:
    """Rank and world size as torchrun (or a cluster launcher) put them in the environment, without a group."""
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def backend_for(device: torch.device) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def distributed_run(device: torch.device, timeout_s: float = 1800.0) -> Iterator[World]:
    """Join torchrun's process group for the ``with`` block when ``WORLD_SIZE`` > 1 (else run alone).

    The group is left at the end even when the block raises, so a failing rank does not leave the others hanging
    in a collective longer than ``timeout_s``.
    """
    if env_world().size <= 1 or dist.is_initialized():
        yield world()
        return
    dist.init_process_group(backend_for(device), timeout=datetime.timedelta(seconds=timeout_s))
    try:
        here = world()
        logger.info("rank %d of %d joined the %s process group", here.rank, here.size, backend_for(device))
        yield here
        # Leave together: a rank tearing gloo down while another is still in its last collective hangs that one
        # (seen: rank 1 stuck at exit after rank 0 had saved and left).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int | None = None) -> int:
    """The seed of this rank's own randomness (its games, its action samples); rank 0 keeps ``seed``."""
    return int(seed) + (world().rank if rank is None else rank) * RANK_SEED_STRIDE


def barrier() -> None:
    """Wait for every rank (no-op alone)."""
    if world().distributed:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fills a cache or writes an export), then the others do."""
    here = world()
    if not here.is_main:
        barrier()
    yield
    if here.is_main:
        barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``sum``, ``mean`` or ``max`` of ``tensor`` over ranks (a new tensor; the input alone on one process)."""
    out = tensor.detach().clone()
    here = world()
    if not here.distributed:
        return out
    dist.all_reduce(out, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return out / here.size if op == "mean" else out


def average_gradients(module: torch.nn.Module) -> None:
    """Replace each parameter's gradient by its mean over ranks (what DDP does in its backward hooks).

    Used where DDP's one-forward-one-backward pattern does not fit (PPO minibatches built outside ``forward``).
    Every rank must call it the same number of times; a parameter without a gradient counts as zero.
    """
    here = world()
    if not here.distributed:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= here.size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank, so all ranks hold the same model."""
    if world().distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` alone)."""
    here = world()
    if not here.distributed:
        return [obj]
    out: list[Any] = [None] * here.size
    dist.all_gather_object(out, obj)
    return out


def split_for_rank(items: Sequence[T] | torch.Tensor, rank: int, size: int):
    """Rank ``rank``'s contiguous part of ``items`` (sizes differ by at most one; parts cover each item once)."""
    n = len(items)
    start = rank * n // size
    stop = (rank + 1) * n // size
    return items[start:stop]
