"""A studio result on disk: PNGs carrying the same metadata `apply` writes, and the grid of a comparison.

Each image's record has apply's keys (prompt, negative prompt, seed, sliders with path, name, scale, raw
weight, calibrated and modules, scales and raw weights, gate, steps, guidance, model, picture and
strength), plus the `apply` command that renders it again; `transfer.sweep.png_text` turns it into the PNG's text chunks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from transfer.studio.job import Job
from transfer.sweep import make_grid, png_text, save_png


@dataclass(frozen=True)
class Result:
    """What a job produced: the file the page shows and offers for download, every file, the command."""

    kind: str
    shown: Path
    files: tuple[Path, ...]
    command: str
    seconds: float
    records: list[dict[str, Any]] = field(default_factory=list)


def image_record(
    job: Job,
    scales: Sequence[float],
    raw: Sequence[float],
    calibrated: Sequence[bool],
    modules: Sequence[int],
    gate: dict[str, Any],
    model: str,
    file: str,
    command: str,
) -> dict[str, Any]:
    """One image's record, keyed as `apply`'s summary.json and PNG metadata."""
    sliders = [
        {
            "path": str(s.path),
            "name": s.name,
            "scale": float(v),
            "raw_scale": float(w),
            "calibrated": c,
            "modules": m,
        }
        for s, v, w, c, m in zip(job.sliders, scales, raw, calibrated, modules)
    ]
    return {
        "file": file,
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "seed": job.seed,
        "sliders": sliders,
        "scales": [float(v) for v in scales],
        "raw_scales": [float(w) for w in raw],
        "gate": gate,
        "steps": job.steps,
        "guidance": job.guidance,
        "model": model,
        "image": str(job.image) if job.image else None,
        "strength": job.strength if job.image and not job.invert else None,
        "command": command,
    }


def save_image(image: Image.Image, path: Path, record: dict[str, Any]) -> Path:
    """Write one result PNG with its record in the text chunks (atomically)."""
    save_png(image, path, png_text(record))
    return path


def save_grid(job: Job, cells: Sequence[Image.Image], path: Path, command: str) -> Path:
    """Write a comparison's grid: one row (the seed), a column per swept scale, the held sliders in the title."""
    swept = job.sliders[0]
    labels = [f"{swept.name} {scale:+g}" for scale in job.sweep_scales or ()]
    held = ", ".join(f"{s.name} {s.scale:+g}" for s in job.sliders[1:])
    title = job.prompt + (f"   (held: {held})" if held else "")
    grid = make_grid([list(cells)], [f"seed {job.seed}"], labels, title)
    sliders = [{"path": str(s.path), "name": s.name, "scale": s.scale} for s in job.sliders]
    save_png(grid, path, {"prompt": job.prompt, "sliders": json.dumps(sliders), "command": command})
    return path
