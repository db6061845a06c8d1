"""Scale-out under torchrun: process group, DDP wrapping, batch shards, gathering probe scores.

One process (no WORLD_SIZE in the environment, or WORLD_SIZE=1) runs everything itself. Under
``torchrun --nproc_per_node N`` each rank trains on its contiguous shard of the global batch (DDP
averages the gradients, so an update equals the one-process update of the whole batch), scores its
share of the probes, and rank 0 gathers the scores and writes the one run log and the checkpoints.
Backend: gloo on the CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from factacq.errors import FactacqError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def init_world(device: str) -> tuple[World, str]:
    """Join the torchrun process group if there is one; returns the world and this rank's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return World(rank, size, local), device


def close_world(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(batch_size: int, world: World) -> slice:
    """This rank's contiguous rows of a global batch (equal shards, so DDP's mean is the batch mean)."""
    if batch_size % world.size:
        raise FactacqError(f"inject.batch_size: {batch_size} rows do not split evenly over "
                           f"{world.size} processes")
    n = batch_size // world.size
    return slice(world.rank * n, (world.rank + 1) * n)


def wrap(model: torch.nn.Module, world: World, device: str) -> torch.nn.Module:
    if not world.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def all_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sum of a list of floats over all ranks (float64)."""
    if not world.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj, world: World) -> list:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not world.active:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()
