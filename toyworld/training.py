"""Small pieces shared by the toy world's trainers: seeded batches, schedules, EMA, atomic checkpoints."""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from toyworld.world import render_batch, sample_attributes

T = TypeVar("T")


def world_batch(seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, list]:
    """The batch for (seed, step): images [B, 3, 64, 64] in [-1, 1] and their attributes.

    A pure function of its arguments, so a resumed run sees the same data as an uninterrupted one.
    """
    rng = np.random.default_rng([seed, step])
    attrs = sample_attributes(rng, batch_size)
    return to_tensor(render_batch(attrs)), attrs


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return x.permute(0, 2, 3, 1).cpu().numpy()


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to 5% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a module's parameters (kept in float32)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        """Blend the module's current weights in; early steps use a smaller decay (warm-up)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.float(), 1.0 - decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights."""
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights from a checkpoint, each onto the device its shadow lives on."""
        # Checkpoints load on the CPU; `update` blends module tensors in place, so each shadow must stay
        # on the module's device.
        self.shadow = {
            k: v.clone().float().to(self.shadow[k].device if k in self.shadow else v.device)
            for k, v in state.items()
        }


def optimizer_step(
    loss: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip: Iterable[torch.Tensor] | None = None,
) -> None:
    """One update of the toy-world trainers: backward, optional grad-norm clip to 1 over `clip`, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip, 1.0)
    opt.step()
    if sched is not None:
        sched.step()


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a training checkpoint atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    """Read a checkpoint written by `save_checkpoint`, or None if there is none."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


class StageTimer:
    """Accumulates a stage's wall time across resumed runs (stored in its checkpoint)."""

    def __init__(self, previous_s: float = 0.0) -> None:
        self.previous_s = previous_s
        self.start = time.monotonic()

    @property
    def total_s(self) -> float:
        """Seconds spent in this stage so far, over all runs."""
        return self.previous_s + self.run_s

    @property
    def run_s(self) -> float:
        """Seconds spent in this stage by this run."""
        return time.monotonic() - self.start


def prefetch(make: Callable[[int], T], steps: Iterable[int], enabled: bool, ahead: int = 2) -> Iterator[T]:
    """`make(step)` for each step in order; when enabled, up to `ahead` steps are made early in threads.

    `make` must be a pure function of the step (as `world_batch` is), so prefetching never changes results;
    it only keeps a GPU from waiting on the CPU-bound world renderer.
    """
    if not enabled:
        yield from (make(step) for step in steps)
        return
    queue: deque = deque()
    pending = iter(steps)
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        try:
            for step in pending:
                queue.append(pool.submit(make, step))
                if len(queue) > ahead:
                    yield queue.popleft().result()
            while queue:
                yield queue.popleft().result()
        finally:
            for future in queue:
                future.cancel()


def device_report(device: torch.device) -> dict[str, str | int]:
    """What a *_done.json records about the device a stage trained on, and the CPU threads it used.

    The thread count is part of the recipe: on the CPU, 1 and 2 threads give different bits.
    """
    report: dict[str, str | int] = {"device": str(device), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        report["device_name"] = torch.cuda.get_device_name(device)
    return report
