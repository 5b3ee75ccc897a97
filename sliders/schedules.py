"""The named x_t schedules of the text slider (see `sliders.sampling`), as plain data.

Kept apart from `sliders.sampling` so that the command line can offer `--schedule` choices without
importing torch or diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleSpec:
    """How x_t is obtained; `separate_passes` also makes the frozen predictions unbatched, as the original."""

    name: str
    sampling_steps: int
    reuse: int = 1
    pool: bool = False
    jitter: bool = False
    separate_passes: bool = False
    reference_timesteps: bool = False


SCHEDULES: dict[str, ScheduleSpec] = {
    "reference": ScheduleSpec("reference", 50, separate_passes=True, reference_timesteps=True),
    "fresh10": ScheduleSpec("fresh10", 10),
    "pool50": ScheduleSpec("pool50", 50, reuse=10, pool=True),
    "fast": ScheduleSpec("fast", 10, reuse=4, pool=True, jitter=True),
}
DEFAULT_SCHEDULE = "fast"
