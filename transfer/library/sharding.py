"""Sharding a library build over processes (`accelerate launch` or `torchrun`): whole sliders per process.

The launchers set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Work unit i (a slider, or
a group trained together) goes to process i mod WORLD_SIZE, so which process trains it never changes
what is trained. The processes meet in a gloo process group (it runs on any device, and only
synchronises: nothing but barriers crosses it): after setting up, and after all their sliders, when
process 0 alone writes the index. Without a launcher there is one process and no group.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

# A barrier waits while the other processes train their sliders: hours, not gloo's default 30 minutes.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Shard:
    """This process's place in the build: `rank` of `world` processes (`local_rank` on its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes the shared files (build.json, the index)."""
        return self.rank == 0

    def owns(self, unit: int) -> bool:
        """Whether work unit `unit` (0, 1, ... in rank order) is this process's."""
        return unit % self.world == self.rank

    def barrier(self) -> None:
        """Wait until every process got here (nothing to wait for alone)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def device(self, device: str | None) -> str | None:
        """The device of this process: a bare `cuda` becomes `cuda:<local rank>` when sharded."""
        if self.world > 1 and device in (None, "cuda"):
            import torch

            return f"cuda:{self.local_rank}" if torch.cuda.is_available() else device
        return device


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r}: expected an integer") from None


@contextmanager
def sharded() -> Iterator[Shard]:
    """This process's `Shard` from the launcher's environment; a gloo group while it is open (if > 1)."""
    world = _env_int("WORLD_SIZE", 1)
    shard = Shard(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0))
    if world == 1:
        yield shard
        return
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("gloo", rank=shard.rank, world_size=world, timeout=BARRIER_TIMEOUT)
    try:
        yield shard
    finally:
        if owned:
            dist.destroy_process_group()
