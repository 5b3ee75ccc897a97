"""Calibrated scales on the toy world: does user scale 1 mean the same change for different sliders?

Calibrates copies of the shipped eye-size (toy StyleGAN3) and smile (text) sliders with the default
`CalibrationSettings` (seeds 0-3, 20 steps, the sliders' own prompts), then renders each slider at
scales -2..2 on seeds the calibration never saw (100-107), once read as user scales (calibrated) and
once as raw weights (the baseline), and measures with the calibration's distance (mean |dz| of the
final latents against scale 0) and with the attribute probe (the slider's own attribute, world stds):

- effect_at_1: the mean over scale -1 and +1 of the change against scale 0;
  effect_at_1_spread: max over sliders of |effect_at_1 / mean over sliders - 1| (goal <= 0.25);
- step_cv: coefficient of variation of the four successive step changes over -2..2 (latent: mean |dz|
  between neighbouring scales; probe: the attribute's change), the worse slider (goal <= 0.25);
- calibrate_s: the wall time of `calibrate_slider` per slider.

    python benchmarks/calibration.py [--json]          # ~5 min of one CPU thread
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sliders.slider_file import load_slider  # noqa: E402
from toyworld import demo_slider_paths, toy_sdxl_path  # noqa: E402
from toyworld.probe import measure  # noqa: E402
from toyworld.world import WORLD_STD  # noqa: E402
from transfer.calibrate import (  # noqa: E402
    CalibrationSettings,
    calibrate_slider,
    decode_latents,
    default_prompts,
    latent_distance,
    render_latents,
)
from transfer.compose import compose_sliders  # noqa: E402
from transfer.gate import default_gate  # noqa: E402

SLIDERS = {"eye-size": "eye_size", "smile": "smile"}
SCALES = (-2.0, -1.0, 0.0, 1.0, 2.0)
CHECK_SEEDS = tuple(range(100, 108))


def sweep(pipe, path: Path, raw_scales: list[float], settings: CalibrationSettings) -> list[torch.Tensor]:
    """Final latents of the slider at each raw weight on its own prompts and the check seeds."""
    slider = load_slider(path, unet=pipe.unet)
    prompts, gate = default_prompts(slider.metadata), default_gate([slider.metadata])[0]
    out = []
    with compose_sliders(pipe.unet, [dict(slider.factors)], [0.0], "fused") as composition:
        for raw in raw_scales:
            composition.set_scales([raw])
            out.append(render_latents(pipe, composition, prompts, CHECK_SEEDS, settings, gate))
    return out


def figures(pipe, latents: list[torch.Tensor], target: str) -> dict:
    """Changes against scale 0 and successive steps, in latent distance and probe world stds."""
    zero = SCALES.index(0.0)
    probe = [measure(decode_latents(pipe, z))[target] / WORLD_STD[target] for z in latents]
    effect = [float(latent_distance(z, latents[zero]).mean()) for z in latents]
    steps = [float(latent_distance(b, a).mean()) for a, b in zip(latents, latents[1:])]
    probe_steps = [float(np.mean(b - a)) for a, b in zip(probe, probe[1:])]
    return {
        "effect": [round(e, 4) for e in effect],
        "effect_at_1": round((effect[zero - 1] + effect[zero + 1]) / 2, 4),
        "step_cv": round(float(np.std(steps) / np.mean(steps)), 4),
        "probe": [round(float(np.mean(p - probe[zero])), 3) for p in probe],
        "probe_at_1": round(float(np.mean(probe[zero + 1] - probe[zero - 1])) / 2, 3),
        "probe_step_cv": round(float(np.std(probe_steps) / abs(np.mean(probe_steps))), 4),
    }


def spread(values: list[float]) -> float:
    """max |v / mean - 1|: how far the sliders are from agreeing."""
    mean = float(np.mean(values))
    return round(max(abs(v / mean - 1) for v in values), 4)


def summary(per_slider: dict[str, dict]) -> dict:
    """The goal figures over all sliders."""
    return {
        "effect_at_1_spread": spread([s["effect_at_1"] for s in per_slider.values()]),
        "step_cv": max(s["step_cv"] for s in per_slider.values()),
        "probe_effect_at_1_spread": spread([abs(s["probe_at_1"]) for s in per_slider.values()]),
        "probe_step_cv": max(s["probe_step_cv"] for s in per_slider.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transfer.sdxl import load_sdxl

    pipe = load_sdxl(str(toy_sdxl_path()), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    settings = CalibrationSettings()
    result: dict = {
        "calibrated": {},
        "raw": {},
        "calibrate_s": {},
        "calibration": {},
        "threads": args.threads,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, target in SLIDERS.items():
            path = Path(shutil.copy(demo_slider_paths()[name], Path(tmp) / f"{name}.safetensors"))
            started = time.perf_counter()
            calibration = calibrate_slider(pipe, path, settings, say=lambda _: None)
            result["calibrate_s"][name] = round(time.perf_counter() - started, 1)
            result["calibration"][name] = {
                "raw_at_1": [round(calibration.to_raw(u), 3) for u in (-1.0, 1.0)],
                "user_range": [round(u, 2) for u in calibration.user_range],
                "raw_range": list(calibration.raw_range),
            }
            user = sweep(pipe, path, [calibration.to_raw(u) for u in SCALES], settings)
            result["calibrated"][name] = figures(pipe, user, target)
            result["raw"][name] = figures(pipe, sweep(pipe, path, list(SCALES), settings), target)
            print(
                name,
                json.dumps({k: result[k][name] for k in ("calibration", "calibrated", "raw")}),
                flush=True,
            )
    result["goals"] = {"calibrated": summary(result["calibrated"]), "raw": summary(result["raw"])}
    print(json.dumps(result["goals"], indent=2))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
