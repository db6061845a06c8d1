"""Scale-out under torchrun: process group, DDP wrapping, batch shards, gathering probe scores.

One process (no WORLD_SIZE in the environment, or WORLD_SIZE=1) runs everything itself. Under
``torchrun --nproc_per_node N`` each rank trains on its contiguous shard of the global batch (DDP
averages the gradients, so an update equals the one-process update of the whole batch), scores its
share of the probes, and rank 0 gathers the scores and writes the one run log and the checkpoints.
Backend: gloo on the CPU, nccl on CUDA.

With ``inject.parallel: fsdp`` the model is sharded with FSDP2 (``fully_shard`` per decoder layer,
then the root): parameters, gradients and optimizer state are split over the ranks. Every rank then
scores every probe (each forward pass needs all ranks), and a checkpoint gathers the full model and
optimizer state onto rank 0's CPU, so it is the same folder a 1-process run writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from factacq.errors import FactacqError
from factacq.train import make_optimizer

# The FSDP2 modules (torch.distributed.fsdp, .checkpoint.state_dict, .device_mesh) are imported in
# the functions that need them: ~0.7 s, paid only by an FSDP run.


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


# --------------------------------------------------------------------------- FSDP


def shard_state(state, world: World, device: str, parallel: str = "ddp") -> None:
    """Wrap ``state.model`` for the world, in place: DDP, or FSDP2 with the optimizer rebuilt over
    the sharded parameters and its (full) moments and step counts scattered onto the shards."""
    if not world.active:
        return
    if parallel == "ddp":
        state.model = wrap(state.model, world, device)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = state.model
    full = _named_optimizer_state(model, state.optimizer)
    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (world.size,))
    layer_classes = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules()
              if type(m).__name__ in layer_classes or type(m).__name__.endswith("DecoderLayer")]
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if world.main:
        print(f"fsdp: {len(layers)} decoder layers + the root sharded over {world.size} ranks", flush=True)
    optimizer = make_optimizer(model, state.optim)
    # a scheduler marks its optimizer's step() at construction; this one only does that, the
    # run's scheduler (and its step count) carries on with the new optimizer
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    for group, old in zip(optimizer.param_groups, state.optimizer.param_groups):
        group.update({k: v for k, v in old.items() if k != "params"})  # lr, initial_lr
    set_optimizer_state_dict(model, optimizer, full, options=StateDictOptions(full_state_dict=True))
    state.scheduler.optimizer = optimizer
    state.optimizer = optimizer


def _named_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """A plain optimizer state dict with parameter names (FQNs) instead of integer ids."""
    names = {id(p): n for n, p in model.named_parameters()}
    plain = optimizer.state_dict()
    ids = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    return {"state": {ids[i]: v for i, v in plain["state"].items()},
            "param_groups": [{**g, "params": [ids[i] for i in g["params"]]} for g in plain["param_groups"]]}


def full_state_dicts(state, world: World) -> tuple[dict | None, dict | None]:
    """Under FSDP, the full model and optimizer state dicts on rank 0's CPU, in the 1-process
    formats (``model.state_dict()``, ``optimizer.state_dict()`` with integer ids); (None, None)
    on other ranks and without FSDP. Collective: every rank must call it."""
    if not world.active or not is_fsdp(state.model):
        return None, None
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(state.model, options=options)
    named = get_optimizer_state_dict(state.model, state.optimizer, options=options)
    if not world.main:
        return None, None
    # a tied weight (lm_head = embeddings) is gathered twice, as copies; save it once, as HF does
    unique = {n for n, _ in state.model.named_parameters()}
    for name, _ in state.model.named_parameters(remove_duplicate=False):
        if name not in unique:
            model_sd.pop(name, None)
    order = [n for g in named["param_groups"] for n in g["params"]]
    index = {n: i for i, n in enumerate(order)}
    optim_sd = {"state": {index[n]: v for n, v in named["state"].items()},
                "param_groups": [{**g, "params": [index[n] for n in g["params"]]}
                                 for g in named["param_groups"]]}
    return model_sd, optim_sd


def is_fsdp(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
