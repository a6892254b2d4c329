"""torchrun / torch.distributed plumbing shared by every long run: process group, device, rank-0
checks, reductions, gradient averaging."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class Runtime:
    """A process's place in the job and its device: what a loop needs to shard, reduce and log once."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def info(self) -> DistInfo:
        return DistInfo(self.rank, self.local_rank, self.world_size)


def world_size_from_env() -> int:
    """The processes of this job, as torchrun sets them in the environment (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str | None = None) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    world = world_size_from_env()
    info = DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return info, dev


def init_runtime(device: str | None = None) -> Runtime:
    """One process, or one of ``torchrun``'s (WORLD_SIZE > 1): NCCL on CUDA, Gloo on CPU."""
    info, dev = init_distributed(device)
    return Runtime(dev, info.rank, info.world_size, info.local_rank)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (e.g. until rank 0 has generated data the others read); no-op in one process."""
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks stop at the same step)."""
    return all_reduce_sum([float(flag)], info, device)[0] > 0 if info.enabled else flag


def gather_lists(items: list, info: DistInfo) -> list:
    if not info.enabled:
        return list(items)
    out = [None] * info.world_size
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Average the gradients over the ranks in one flat all-reduce. Every rank must hold gradients for
    the same parameters (e.g. all ranks ran the same path of a super-network)."""
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
