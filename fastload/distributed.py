"""Process-group helpers: who am I, how many are we, and one environment-based start-up.

`init_distributed()` reads torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK) or, under `srun`, Slurm's
(SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR/MASTER_PORT must be exported by the batch script).
Without either it is a single process and no process group is created. Backend: nccl on CUDA, gloo on CPU.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import FastloadError, UsageError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def is_dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def read_launch_env(env=None) -> tuple:
    """(rank, world_size, local_rank) from torchrun's or Slurm's variables; (0, 1, 0) when neither is set."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def pick_device(local_rank: int = 0, device: str = "auto") -> torch.device:
    """'auto': this process's CUDA device when there is one, else the CPU; 'cpu', 'cuda' or 'cuda:N' force it."""
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    index = local_rank
    if device not in ("auto", "cuda"):
        kind, _, number = device.partition(":")
        if kind != "cuda" or not number.isdigit():
            raise UsageError(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")
        index = int(number)
    if not torch.cuda.is_available():
        raise FastloadError(f"device {device!r} was asked for but torch sees no CUDA device")
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {device!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by the environment (if any) and return this process's DistInfo."""
    rank, world_size, local_rank = read_launch_env()
    dev = pick_device(local_rank, device)
    if world_size > 1 and not is_dist_ready():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise FastloadError(f"{var} is not set: launch with torchrun, or export it in the Slurm script")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                device_id=dev if dev.type == "cuda" else None)
    return DistInfo(rank, world_size, local_rank, dev)


def barrier() -> None:
    if is_dist_ready():
        dist.barrier()


def cleanup_distributed() -> None:
    if is_dist_ready():
        dist.destroy_process_group()


def all_reduce_sum(values, device) -> list:
    """Element-wise sum of a list of numbers over all processes (a float64 tensor all-reduce)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if is_dist_ready():
        dist.all_reduce(t)
    return t.tolist()
