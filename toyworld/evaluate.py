"""Does the toy SDXL follow its captions? Probe-measured attribute gaps between opposite prompts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image
from tqdm import tqdm

from toyworld.probe import AttributeProbe
from toyworld.world import WORLD_STD

# attribute -> (prompt for its high end, prompt for its low end)
OPPOSITES: dict[str, tuple[str, str]] = {
    "eye_size": ("a face with big eyes", "a face with small eyes"),
    "smile": ("a face, smiling", "a face, frowning"),
    "face_width": ("a wide face", "a narrow face"),
    "hair_hue": ("a face with blue hair", "a face with red hair"),
    "skin_tone": ("a face with dark skin", "a face with pale skin"),
}


@torch.no_grad()
def sample(
    pipe: StableDiffusionXLPipeline, prompt: str, n: int, steps: int, guidance: float, seed: int
) -> np.ndarray:
    """n samples of one prompt: float images [n, 64, 64, 3] in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    out = pipe(
        prompt=[prompt] * n,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generator,
        output_type="np",
    )
    return out.images


def caption_following(
    pipe: StableDiffusionXLPipeline,
    probe: AttributeProbe,
    n: int = 32,
    steps: int = 20,
    guidance: float = 3.0,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Per attribute, the probe's mean gap between its two opposite prompts, in world standard deviations.

    Returns (report, images by prompt). The goal for eye size is a gap of at least 1 std. With `device`,
    the pipeline and the probe are moved there first (in place); sampling stays seeded by CPU generators.
    """
    if device is not None:
        pipe.to(device)
        probe.net.to(device)
    pipe.set_progress_bar_config(disable=True)
    report, images = {}, {}
    for name, (high, low) in tqdm(OPPOSITES.items(), desc="caption following"):
        values = {}
        for prompt in (high, low):
            images[prompt] = sample(pipe, prompt, n, steps, guidance, seed)
            values[prompt] = probe.measure(images[prompt])[name]
        gap = float(values[high].mean() - values[low].mean()) / WORLD_STD[name]
        report[name] = {
            "high_prompt": high,
            "low_prompt": low,
            "high_mean": round(float(values[high].mean()), 4),
            "low_mean": round(float(values[low].mean()), 4),
            "gap_world_std": round(gap, 3),
        }
    report["settings"] = {"samples_per_prompt": n, "steps": steps, "guidance_scale": guidance, "seed": seed}
    return report, images


def save_grid(images: dict[str, np.ndarray], path: Path, per_row: int = 8) -> None:
    """One row per prompt, `per_row` samples each, upscaled 2x: a picture a person can look at."""
    rows = [np.concatenate(list(batch[:per_row]), axis=1) for batch in images.values()]
    grid = (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
    image = Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST)
    tmp = path.with_name(path.name + ".tmp.png")
    image.save(tmp)
    os.replace(tmp, path)
