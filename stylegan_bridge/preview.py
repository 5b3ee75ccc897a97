"""A PNG a person can look at: each direction's edit on a few seeds (rows = directions; -delta, 0, +delta per seed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn

from pair_datasets.atomic import atomic_write
from stylegan_bridge.edits import Edit, render
from stylegan_bridge.style_space import to_pil, ws_from_seeds

LABEL_WIDTH = 120
HEADER = 14
GAP = 2


def edit_grid(
    G: nn.Module,
    edits: Sequence[Edit],
    path: Path,
    seeds: Sequence[int] = (0, 1),
    delta: float = 5.0,
    psi: float = 0.7,
    tile: int = 128,
) -> Path:
    """Write a grid: one row per edit, columns (-delta, 0, +delta) for each seed; returns the path."""
    if not edits:
        raise ValueError("edit grid: no directions to show")
    ws = ws_from_seeds(G, seeds, psi)
    deltas = (-delta, 0.0, delta)
    columns = len(seeds) * len(deltas)
    size = tile  # small generators are upscaled so that a person can see the edit
    sheet = Image.new(
        "RGB", (LABEL_WIDTH + columns * (size + GAP), HEADER + len(edits) * (size + GAP)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for col in range(columns):
        seed, d = seeds[col // len(deltas)], deltas[col % len(deltas)]
        draw.text((LABEL_WIDTH + col * (size + GAP), 1), f"s{seed} {d:+g}", fill=(0, 0, 0))
    for row, edit in enumerate(edits):
        y = HEADER + row * (size + GAP)
        draw.text((2, y + size // 2 - 6), edit.label[:18] or f"#{row}", fill=(0, 0, 0))
        for j, d in enumerate(deltas):
            with torch.no_grad():
                images = to_pil(render(G, ws, edit, d))
            for i, image in enumerate(images):
                col = i * len(deltas) + j
                sheet.paste(
                    image.resize((size, size), Image.Resampling.LANCZOS),
                    (LABEL_WIDTH + col * (size + GAP), y),
                )
    return save_png_atomic(sheet, path)


def save_png_atomic(image: Image.Image, path: Path) -> Path:
    """Save `image` as PNG through a temporary file in the same folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as out:
        image.save(out, format="PNG")
    return path
