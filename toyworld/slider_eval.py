"""Measure sliders on the toy world: batched gated sweeps, probe readings, and the quality figures.

A sweep renders prompts x seeds at each scale of one slider (others held) in one batched pipeline call
per scale, the gate switching the composition on at `start_noise`. The same seed gives the same noise
at every scale, so changes between scales are the slider's, not sampling noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr

from toyworld.world import ATTRIBUTE_NAMES, WORLD_STD
from transfer.compose import compose_sliders
from transfer.gate import SliderGate, planned_timesteps

ALWAYS_ON = 1e9  # a gate above every timestep: the slider acts from the first step (no gate)
SCALES = (-2.0, -1.0, 0.0, 1.0, 2.0)


@dataclass(frozen=True)
class SweepSpec:
    """What to render: prompts x seeds at each scale of slider 0, sampling settings and the gate."""

    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    scales: tuple[float, ...] = SCALES
    steps: int = 20
    guidance: float = 3.0
    start_noise: float | None = 750.0  # None: no gate


@torch.no_grad()
def render_sweep(pipe, factors: Sequence[dict], spec: SweepSpec, held: Sequence[float] = ()) -> np.ndarray:
    """Images [P, S, K, 64, 64, 3] in [0, 1] (prompts, scales, seeds) with slider 0 swept, others at `held`."""
    prompts = [p for p in spec.prompts for _ in spec.seeds]
    out = []
    scales0 = [spec.scales[0], *held]
    with compose_sliders(pipe.unet, list(factors), scales0, "fused") as composition:
        for scale in spec.scales:
            composition.set_scales([scale, *held])
            timesteps = planned_timesteps(pipe.scheduler, spec.steps)
            start = ALWAYS_ON if spec.start_noise is None else spec.start_noise
            gate = SliderGate(composition, start, timesteps)
            generators = [torch.Generator().manual_seed(s) for _ in spec.prompts for s in spec.seeds]
            with gate.active():
                images = pipe(
                    prompt=prompts,
                    num_inference_steps=spec.steps,
                    guidance_scale=spec.guidance,
                    generator=generators,
                    callback_on_step_end=gate,
                    output_type="np",
                ).images
            out.append(images.reshape(len(spec.prompts), len(spec.seeds), *images.shape[1:]))
    return np.stack(out, axis=1)


def measure_sweep(probe, images: np.ndarray) -> dict[str, np.ndarray]:
    """Probe readings {attribute: [P, S, K]} (world units) of `render_sweep` images."""
    flat = images.reshape(-1, *images.shape[-3:])
    values = probe.measure(flat)
    return {name: values[name].reshape(images.shape[:3]) for name in ATTRIBUTE_NAMES}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(x, y).statistic)


def quality(values: dict[str, np.ndarray], scales: Sequence[float], target: str) -> dict:
    """Monotonicity, effect size and off-target change of one swept slider (see benchmarks/quality.py).

    - spearman: Spearman(scale, target) per prompt/seed across scales, averaged;
    - spearman_pooled: over every single sample pooled (mixes seed-to-seed variance);
    - effect_std: mean change of the target from the lowest to the highest scale, in world stds;
    - off_target: mean over the other attributes of the mean |change| (world stds), divided by |effect_std|.
    """
    scales = np.asarray(scales, dtype=np.float64)
    y = values[target]  # [P, S, K]
    per = [_spearman(scales, y[p, :, k]) for p in range(y.shape[0]) for k in range(y.shape[2])]
    pooled_x = np.broadcast_to(scales[None, :, None], y.shape).ravel()
    lo, hi = int(np.argmin(scales)), int(np.argmax(scales))
    effect = float(np.mean(y[:, hi] - y[:, lo])) / WORLD_STD[target]
    others = {
        name: float(np.mean(np.abs(values[name][:, hi] - values[name][:, lo]))) / WORLD_STD[name]
        for name in ATTRIBUTE_NAMES
        if name != target
    }
    off = float(np.mean(list(others.values()))) / max(abs(effect), 1e-9)
    means = {
        name: [round(float(values[name][:, s].mean()), 4) for s in range(len(scales))] for name in values
    }
    return {
        "spearman": round(float(np.mean(per)), 4),
        "spearman_pooled": round(_spearman(pooled_x, y.ravel()), 4),
        "effect_std": round(effect, 4),
        "off_target": round(off, 4),
        "off_target_by_attribute_std": {k: round(v, 4) for k, v in others.items()},
        "mean_by_scale": means,
    }


def structure_change(images: np.ndarray, scales: Sequence[float]) -> float:
    """Mean absolute pixel difference (0..1) between scale 0 and scales +-1 of a sweep (same seeds)."""
    scales = list(scales)
    zero = images[:, scales.index(0.0)]
    diffs = [np.abs(images[:, scales.index(s)] - zero).mean() for s in (-1.0, 1.0) if s in scales]
    return round(float(np.mean(diffs)), 5)
