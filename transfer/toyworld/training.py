"""Small pieces shared by the toy world's trainers: seeded batches, schedules, EMA, atomic checkpoints."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from transfer.toyworld.world import render_batch, sample_attributes


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
        """Restore averaged weights from a checkpoint."""
        self.shadow = {k: v.clone().float() for k, v in state.items()}


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
        return self.previous_s + time.monotonic() - self.start
