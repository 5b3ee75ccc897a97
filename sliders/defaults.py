"""A slider's defaults when nothing else is known: its gate (`start_noise`), scale range and calibration.

Plain numbers, no torch, so the slider files, the trainers, the gate and calibration of `transfer`
and the command line's help all read the same values from here.
"""

from __future__ import annotations

# The gate (DESIGN §3 "Applying"): the slider is off while the sampler's timestep is above this, on the
# 1000-step scale. 750 keeps it out of the first, structure-forming quarter of the steps, as the paper does.
START_NOISE = 750.0

# Recommended slider scales: -SCALE_LIMIT .. +SCALE_LIMIT (a corpus with larger levels widens it).
SCALE_LIMIT = 3.0

# The scale of a slider given without one (`--slider FILE`): the slider as trained.
SCALE = 1.0

# Calibration (`slider calibrate`): the raw adapter weights probed, and the change (mean |dz| of the final
# latents against scale 0) that user scale 1 means, the same for every slider.
DEFAULT_RAW_SCALES = (-8.0, -6.0, -4.0, -3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
DEFAULT_UNIT_EFFECT = 0.05
