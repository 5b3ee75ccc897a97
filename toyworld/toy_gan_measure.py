"""Measure what a toy-GAN style channel does: eye size from pixels (renderer knowledge) and the probe.

`eye_size_from_pixels` needs no trained model: the world draws each eye as a white disc of radius
`eye_size` with a near-black pupil, and nothing else in a face is that white or that dark, so the
whitish + dark area above the mouth gives the radius (linear calibration on world renders, R^2 0.97).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from stylegan_bridge.edits import channel_edit, render
from stylegan_bridge.style_space import StyleStats, ws_from_seeds
from toyworld.world import ATTRIBUTE_NAMES, WORLD_STD

# eye_size ~= a * sqrt(area / 2pi) + b, fitted on 2,000 world renders (seed 2): R^2 = 0.966.
_EYE_CALIBRATION = (1.1516, 1.6226)
EYE_ROWS = (14, 46)  # rows that hold the eyes at every jitter, above the mouth
EYE_BOX = "0.25,0.38,0.75,0.62"  # relative x0,y0,x1,y1 around both eyes of a typical (psi 0.7) face


def eye_size_from_pixels(images: torch.Tensor) -> np.ndarray:
    """Eye radius in world units (px at 64x64) of images [B, 3, 64, 64] in [-1, 1], from white/dark area."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    scale = x.shape[-1] / 64
    white = ((x.min(dim=1).values - 236) / 16).clamp(0, 1)  # eye white is 252; background 226..236
    dark = ((60 - x.max(dim=1).values) / 25).clamp(0, 1)  # pupil is <= 35; outlines and nose are >= 60
    rows = slice(int(EYE_ROWS[0] * scale), int(EYE_ROWS[1] * scale))
    area = (white + dark)[:, rows].sum(dim=(1, 2)) / scale**2
    a, b = _EYE_CALIBRATION
    return (a * (area / (2 * np.pi)).sqrt() + b).numpy()


def measure(images: torch.Tensor, probe=None) -> dict[str, np.ndarray]:
    """{attribute: [B]} in world units: every attribute from `probe` if given, plus `eye_size_pixels`."""
    out = {"eye_size_pixels": eye_size_from_pixels(images)}
    if probe is not None:
        out.update(probe.measure(images))
    return out


def channel_effect(
    G: nn.Module,
    layer: int | str,
    channel: int,
    stats: StyleStats,
    deltas: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    seeds: Sequence[int] = tuple(range(16)),
    psi: float = 0.7,
    probe=None,
) -> dict:
    """Mean change of every measured attribute, in world stds, per `delta` (channel stds), over `seeds`.

    Returns {"deltas", "change": {attribute: [per delta]}, "per_delta": {attribute: slope per +1 delta}}.
    """
    edit = channel_edit(G, layer, channel, stats)
    ws = ws_from_seeds(G, list(seeds), psi)
    base = measure(render(G, ws), probe)
    change: dict[str, list[float]] = {name: [] for name in base}
    for delta in deltas:
        moved = measure(render(G, ws, edit, float(delta)), probe)
        for name in base:
            std = WORLD_STD["eye_size" if name == "eye_size_pixels" else name]
            change[name].append(float(np.mean(moved[name] - base[name]) / std))
    d = np.asarray(deltas, dtype=np.float64)
    slopes = {name: float(np.polyfit(d, np.asarray(v), 1)[0]) for name, v in change.items()}
    return {"deltas": [float(x) for x in deltas], "change": change, "per_delta": slopes}


def off_target(effect: dict, target: str = "eye_size") -> dict[str, float]:
    """|slope| of each other probe attribute relative to the target's slope (the quality benchmark's ratio)."""
    slopes = effect["per_delta"]
    key = target if target in slopes else "eye_size_pixels"
    ref = abs(slopes[key]) or 1e-12
    return {name: abs(slopes[name]) / ref for name in ATTRIBUTE_NAMES if name in slopes and name != target}


def probe_eye_size(images: torch.Tensor) -> np.ndarray:
    """Eye size [B] (world units) read by the shipped probe: a `directions channels --score` function."""
    from toyworld.probe import measure as probe_measure

    return probe_measure(images)["eye_size"]
