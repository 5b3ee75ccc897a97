"""The delayed start of a slider: off while the sampler's timestep is above `start_noise`, then on.

Concept Sliders keep the slider out of the first, structure-forming steps (an SDEdit-like start, paper
§3 / DESIGN.md §3 "Applying"): the weight is 0 while `t > start_noise` (default 750 on the 1000-step
scale) and 1 afterwards. The gate is a pure schedule (`gate_weight`); `SliderGate` applies it during
sampling as a diffusers `callback_on_step_end`, switching the composition's weight (adapter scales,
never `cross_attention_kwargs={"scale": 0}`, which resets signed peft weights to +1).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sliders.defaults import START_NOISE as DEFAULT_START_NOISE

START_NOISE_KEY = "concept_transfer.start_noise"
NEVER = -1.0  # a start_noise below every timestep: the slider never switches on


def gate_weight(timestep: float, start_noise: float) -> float:
    """The slider's weight at `timestep`: 0 while t > start_noise, else 1."""
    return 0.0 if float(timestep) > start_noise else 1.0


def planned_timesteps(scheduler: Any, steps: int, strength: float | None = None) -> list[float]:
    """The timesteps an SDXL pipeline will run for `steps` (img2img: only the last `strength` part).

    Mirrors `StableDiffusionXLImg2ImgPipeline.get_timesteps` (without `denoising_start`) on a copy of
    the scheduler, so the weight of step 0 can be set before the pipeline is called.
    """
    if steps < 1:
        raise ValueError(f"steps: must be a positive integer, got {steps}")
    planner = copy.deepcopy(scheduler)
    planner.set_timesteps(steps, device="cpu")
    timesteps = [float(t) for t in planner.timesteps]
    if strength is not None:
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"--strength: must be in (0, 1], got {strength}")
        first = max(steps - min(int(steps * strength), steps), 0) * planner.order
        timesteps = timesteps[first:]
        if not timesteps:
            raise ValueError(
                f"--strength {strength} with --steps {steps}: int(steps * strength) = 0 leaves no "
                "denoising step; raise --strength or --steps"
            )
    return timesteps


def start_noise_from_fraction(timesteps: Sequence[float], fraction: float) -> float:
    """The gate that leaves the first round(fraction * n) of the n `timesteps` without the slider."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"--start-fraction: must be in [0, 1], got {fraction}")
    off_steps = math.floor(fraction * len(timesteps) + 0.5)
    return NEVER if off_steps >= len(timesteps) else float(timesteps[off_steps])


@dataclass(frozen=True)
class GateSpec:
    """The user's gate: a timestep on the 1000-step scale, a fraction of the steps, or neither (default)."""

    start_noise: float | None = None
    start_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.start_noise is not None and self.start_fraction is not None:
            raise ValueError("--start-noise and --start-fraction: give one, not both")
        if self.start_noise is not None and not 0.0 <= self.start_noise <= 1000.0:  # also refuses NaN
            raise ValueError(f"--start-noise: must be a timestep from 0 to 1000, got {self.start_noise}")
        if self.start_fraction is not None and not 0.0 <= self.start_fraction <= 1.0:
            raise ValueError(f"--start-fraction: must be in [0, 1], got {self.start_fraction}")

    @property
    def is_set(self) -> bool:
        """Whether the user chose a gate (else the sliders' recommendation or 750 applies)."""
        return self.start_noise is not None or self.start_fraction is not None

    def resolve(self, timesteps: Sequence[float], default: GateSpec | None = None) -> float:
        """The gate as a timestep for this run's `timesteps` (`default` when this spec is unset)."""
        spec = self if self.is_set else (default or GateSpec(start_noise=DEFAULT_START_NOISE))
        if spec.start_fraction is not None:
            return start_noise_from_fraction(timesteps, spec.start_fraction)
        return DEFAULT_START_NOISE if spec.start_noise is None else float(spec.start_noise)

    def describe(self) -> dict[str, float | None]:
        """JSON-ready form."""
        return {"start_noise": self.start_noise, "start_fraction": self.start_fraction}


def default_gate(metadatas: Sequence[dict[str, str]]) -> tuple[GateSpec, str]:
    """The first slider's recommended gate from its metadata, else `start_noise` 750; with its source.

    Slider files record `concept_transfer.start_noise` as a timestep in (1, 1000] or, at most 1, as a
    fraction of the steps (`sliders.slider_file.slider_metadata`).
    """
    for index, metadata in enumerate(metadatas):
        value = metadata.get(START_NOISE_KEY)
        if value in (None, ""):
            continue
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"slider {index}: metadata {START_NOISE_KEY}={value!r} is not a finite number")
        source = f"slider {index} metadata"
        if 0.0 < number <= 1.0:
            return GateSpec(start_fraction=number), source
        return GateSpec(start_noise=number), source
    return GateSpec(start_noise=DEFAULT_START_NOISE), "default"


class Switchable(Protocol):
    """What the gate drives: one weight multiplying every slider's signed scale."""

    weight: float

    def set_weight(self, weight: float) -> None: ...


@dataclass(frozen=True)
class StepRecord:
    """The weight that was in effect while step `index` (timestep `timestep`) ran."""

    index: int
    timestep: float
    weight: float


class SliderGate:
    """A `callback_on_step_end` that switches a composition on at the gate and records every step.

    The callback runs after step i, so it sets the weight for step i+1; `active()` sets step 0's weight
    before sampling and switches the sliders off again afterwards (also on errors).
    """

    tensor_inputs = ["latents"]

    def __init__(self, composition: Switchable, start_noise: float, timesteps: Sequence[float]):
        if not timesteps:
            raise ValueError("SliderGate: the run has no timesteps")
        self.composition = composition
        self.start_noise = float(start_noise)
        self.timesteps = [float(t) for t in timesteps]
        self.schedule = [gate_weight(t, self.start_noise) for t in self.timesteps]
        self.records: list[StepRecord] = []

    @contextmanager
    def active(self) -> Iterator[SliderGate]:
        """Set the weight of step 0, sample inside the block, then switch the sliders off."""
        self.records = []
        self.composition.set_weight(self.schedule[0])
        try:
            yield self
        finally:
            self.composition.set_weight(0.0)

    def __call__(self, pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict) -> dict:
        """Record the weight step `step_index` ran with and set the weight of the next step."""
        if step_index >= len(self.timesteps) or float(timestep) != self.timesteps[step_index]:
            # The pipeline ran another schedule than planned: the weights would be wrong, so stop.
            raise RuntimeError(
                f"SliderGate: step {step_index} ran at timestep {float(timestep)}, planned "
                f"{self.timesteps[step_index] if step_index < len(self.timesteps) else 'no step'}"
            )
        self.records.append(StepRecord(step_index, float(timestep), float(self.composition.weight)))
        if step_index + 1 < len(self.schedule):
            self.composition.set_weight(self.schedule[step_index + 1])
        return callback_kwargs

    @property
    def weights(self) -> list[float]:
        """The effective weight of every step that ran, in order."""
        return [record.weight for record in self.records]

    def summary(self) -> dict[str, Any]:
        """The gate as JSON-ready data: the timestep, the schedule and the recorded weights."""
        return {
            "start_noise": self.start_noise,
            "timesteps": self.timesteps,
            "weights": self.weights,
            "first_on_step": next((i for i, w in enumerate(self.schedule) if w > 0), None),
        }
