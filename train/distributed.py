"""Which process this is: one process on the CPU or one GPU, or one of several that `torchrun` started
(DistributedDataParallel). Only the main process writes files and prints.

    job = init_distributed()      # Dist(rank=0, world=1) without torchrun
    say(job, "printed once, by the main process")
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is the process that writes the run directory."""
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group when launched by torchrun; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(rank, world, local)


def close_distributed(job: Dist) -> None:
    """Leave the process group (at the end of a run, whatever its outcome)."""
    if job.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(job: Dist) -> None:
    """Wait for every process (a no-op for one)."""
    if job.world > 1:
        dist.barrier()


def say(job: Dist, message: str) -> None:
    """Print one progress line on stderr, from the main process only."""
    if job.main:
        print(message, file=sys.stderr, flush=True)


def device(job: Dist) -> torch.device:
    """This process's GPU, else the CPU."""
    return torch.device("cuda", job.local_rank) if torch.cuda.is_available() else torch.device("cpu")
