"""What a sweep renders: prompts x seeds x scales of the first slider, and the sampling settings.

Plain data without torch, so the command line builds, checks and shows its defaults without loading
any model library (`--help` stays fast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from transfer.gate import GateSpec


@dataclass(frozen=True)
class SweepSettings:
    """What to render: prompts × seeds × scales of the first slider, plus the sampling settings."""

    prompts: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    sweep_scales: tuple[float, ...] | None = None  # scales of slider 0; None: every slider at its own scale
    negative_prompt: str | None = None
    steps: int = 30
    guidance: float = 5.0
    width: int | None = None
    height: int | None = None
    gate: GateSpec = field(default_factory=GateSpec)
    image: Path | None = None
    strength: float = 0.6
    method: str = "fused"
    model: str = ""
    invert: str | None = None  # edit `image` by inversion (`transfer.edit`) instead of img2img
    inversion_cache: Path | None = None  # default: <out>/inversion-cache

    def __post_init__(self) -> None:
        # An inverted photo needs no description: the empty prompt is the unconditional edit.
        if not self.prompts or (self.invert is None and any(not p.strip() for p in self.prompts)):
            raise ValueError("--prompt: give at least one non-empty prompt")
        if self.invert is not None and self.image is None:
            raise ValueError("--invert: needs the photo to edit (--image)")
        if self.invert is not None and self.width != self.height:
            raise ValueError(
                f"--size {self.width}x{self.height}: --invert edits a square (the photo's centre square, "
                "as `pairs ingest` crops)"
            )
        if not self.seeds:
            raise ValueError("--seeds: give at least one seed")
        if self.sweep_scales is not None and not self.sweep_scales:
            raise ValueError("--scales: give at least one scale")
        if self.steps < 1:
            raise ValueError(f"--steps: must be a positive integer, got {self.steps}")
        if not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise ValueError(f"--guidance: must be a finite number, 0 or more, got {self.guidance}")
        if min(self.seeds) < 0:
            raise ValueError(f"--seeds: must be 0 or more, got {min(self.seeds)}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"--strength: must be in (0, 1], got {self.strength}")
        for name, value in (("width", self.width), ("height", self.height)):
            if value is not None and (value < 8 or value % 8):
                raise ValueError(f"--size: {name} must be a multiple of 8 (at least 8), got {value}")
