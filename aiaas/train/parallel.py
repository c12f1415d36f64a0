"""The process grid and one `apply_*` function per data-parallel strategy.

Both strategies average gradients over workers; with each worker's loss already a
mean over its equal share of the global batch, that average *is* the gradient of
the mean loss over the global batch, whatever the number of workers.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True, kw_only=True)
class ProcessGrid:
    """Where this worker sits: the ranks torchrun assigned and the device it drives."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    restart_count: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(timeout_s: float = 300.0) -> ProcessGrid:
    """Join the group torchrun formed: NCCL on GPUs, gloo on CPUs."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return ProcessGrid(
        rank=dist.get_rank(),
        local_rank=local_rank,
        world_size=dist.get_world_size(),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        restart_count=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
        device=device,
    )


def apply_ddp(model: nn.Module, grid: ProcessGrid) -> nn.Module:
    """Replicate parameters; all-reduce (average) gradients in buckets during backward."""
    device_ids = [grid.device.index] if grid.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def apply_fsdp(model: nn.Module, grid: ProcessGrid, param_dtype: torch.dtype | None) -> nn.Module:
    """Shard parameters, gradients and optimizer state (FSDP2 / ZeRO-3 style).

    Models may name their own sharding units with `fsdp_units()` (transformer
    blocks, as torchtitan does); otherwise each direct child that owns parameters
    is one unit, so only one unit's full parameters exist at a time.
    """
    mesh: DeviceMesh = init_device_mesh(grid.device.type, (grid.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    named_units = getattr(model, "fsdp_units", None)
    units = named_units() if callable(named_units) else _children_with_parameters(model)
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def _children_with_parameters(model: nn.Module) -> list[nn.Module]:
    return [child for child in model.children() if any(True for _ in child.parameters())]


def gradient_sync(model: nn.Module, enabled: bool) -> AbstractContextManager[None]:
    """Skip DDP's all-reduce on all but the last accumulation round (it is linear anyway).

    FSDP keeps reducing every round: its sharded gradients accumulate at 1/world the
    memory, which is why one shards in the first place.
    """
    if isinstance(model, DistributedDataParallel) and not enabled:
        return model.no_sync()
    return nullcontext()


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def all_reduce_sum(values: list[float], grid: ProcessGrid) -> list[float]:
    """Sum a few scalars over all workers in one collective (gloo has no AVG)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=grid.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()
