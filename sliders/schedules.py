"""The named x_t schedules of the text slider (see `sliders.sampling`), as plain data.

Kept apart from `sliders.sampling` so that the command line can offer `--schedule` choices without
importing torch or diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleSpec:
    """How x_t is obtained; `separate_passes` also makes the frozen predictions unbatched, as the original.

    `folded`: the trajectory is sampled with the slider folded into the base weights (each sampling
    step costs a base-model call); the original runs the low-rank branch in every sampling call.
    """

    name: str
    sampling_steps: int
    reuse: int = 1
    pool: bool = False
    jitter: bool = False
    separate_passes: bool = False
    reference_timesteps: bool = False
    folded: bool = False


SCHEDULES: dict[str, ScheduleSpec] = {
    "reference": ScheduleSpec("reference", 50, separate_passes=True, reference_timesteps=True),
    "fresh10": ScheduleSpec("fresh10", 10, folded=True),
    "pool50": ScheduleSpec("pool50", 50, reuse=10, pool=True, folded=True),
    "fast": ScheduleSpec("fast", 10, reuse=8, pool=True, jitter=True, folded=True),
}
DEFAULT_SCHEDULE = "fast"
