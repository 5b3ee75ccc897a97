"""One request from the page: generate an image, compare one slider's scales, or edit an uploaded picture.

A `Job` holds exactly what `concept-transfer apply` needs to render the same result: the sliders that
are switched on, in order, with their scales (for a comparison the swept slider comes first, as
`apply --scales` sweeps the first slider), the prompt and sampling settings, the gate and the picture.
Values from the page are checked here, so a bad value is a message, never a crash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from transfer.edit import METHODS as INVERT_METHODS
from transfer.gate import GateSpec

KINDS = ("generate", "compare", "edit")
MAX_STEPS = 500
MAX_SIDE = 4096
MAX_SWEEP = 16


@dataclass(frozen=True)
class SliderSetting:
    """One slider file at one scale."""

    path: Path
    name: str
    scale: float


@dataclass(frozen=True)
class Job:
    """What to render (see the module docstring)."""

    kind: str
    prompt: str
    seed: int
    sliders: tuple[SliderSetting, ...] = ()
    negative_prompt: str | None = None
    steps: int = 20
    guidance: float = 5.0
    width: int = 1024
    height: int = 1024
    gate: GateSpec = GateSpec()
    sweep_scales: tuple[float, ...] | None = None  # compare: scales of sliders[0]
    image: Path | None = None  # edit: the picture
    strength: float | None = None  # edit by img2img: how much is re-noised
    invert: str | None = None  # edit by inversion (`apply --invert`): edit-friendly or ddim

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"job: unknown kind {self.kind!r}")
        if not self.prompt.strip():
            raise ValueError("prompt: type a prompt")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps: must be 1..{MAX_STEPS}, got {self.steps}")
        if not (math.isfinite(self.guidance) and 0 <= self.guidance <= 100):
            raise ValueError(f"guidance: must be a number in 0..100, got {self.guidance}")
        for name, side in (("width", self.width), ("height", self.height)):
            if not 8 <= side <= MAX_SIDE or side % 8:
                raise ValueError(f"size: {name} must be a multiple of 8 in 8..{MAX_SIDE}, got {side}")
        if any(not math.isfinite(s.scale) for s in self.sliders):
            raise ValueError("scales: every slider scale must be a finite number")
        self._check_kind()

    def _check_kind(self) -> None:
        if self.kind == "compare":
            if not self.sliders:
                raise ValueError("compare: switch on the slider to compare")
            scales = self.sweep_scales or ()
            if not 1 <= len(scales) <= MAX_SWEEP or not all(math.isfinite(s) for s in scales):
                raise ValueError(f"compare: give 1..{MAX_SWEEP} finite scales, e.g. -2,-1,0,1,2")
        elif self.sweep_scales is not None:
            raise ValueError(f"{self.kind}: scales to sweep belong to compare")
        if (self.kind == "edit") != (self.image is not None):
            raise ValueError(
                "edit: upload a picture to edit" if self.kind == "edit" else "only edit takes a picture"
            )
        if self.invert is not None:
            self._check_invert()
        elif self.kind == "edit" and not (self.strength is not None and 0 < self.strength <= 1):
            raise ValueError(f"strength: must be in (0, 1], got {self.strength}")

    def _check_invert(self) -> None:
        if self.kind != "edit" or self.invert not in INVERT_METHODS:
            raise ValueError(f"method {self.invert!r}: an edit inverts by {' or '.join(INVERT_METHODS)}")
        if self.strength is not None:
            raise ValueError("strength: img2img only; an inverted edit changes what the gate lets change")
        if self.width != self.height:
            raise ValueError(
                f"size: an inverted edit is square (the picture's centre), got {self.width}x{self.height}"
            )

    @property
    def columns(self) -> list[tuple[float, ...]]:
        """The scales of every image: one set, or one per swept scale with the other sliders held."""
        held = tuple(s.scale for s in self.sliders)
        if self.sweep_scales is None:
            return [held]
        return [(scale, *held[1:]) for scale in self.sweep_scales]


def parse_seed(value: object) -> int:
    """A seed from the page: a whole number in 0..2**63-1."""
    try:
        number = float(value)  # the page's number fields send floats
    except (TypeError, ValueError):
        raise ValueError(f"seed: expected a whole number, got {value!r}") from None
    if not (math.isfinite(number) and number == int(number) and 0 <= number < 2**63):
        raise ValueError(f"seed: expected a whole number in 0..2**63-1, got {value!r}")
    return int(number)


def parse_scales(text: str) -> tuple[float, ...]:
    """Comma-separated scales to sweep, e.g. `-2,-1,0,1,2`."""
    try:
        values = tuple(float(part) for part in (text or "").split(",") if part.strip())
    except ValueError:
        raise ValueError(f"scales {text!r}: expected comma-separated numbers, e.g. -2,-1,0,1,2") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"scales {text!r}: expected comma-separated finite numbers")
    return values
