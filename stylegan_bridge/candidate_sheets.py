"""Contact sheets of discovered candidates: one per candidate (seeds x delta) and an overview of all by rank."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn
from tqdm.auto import tqdm

from stylegan_bridge.discovery import Candidate
from stylegan_bridge.edits import render
from stylegan_bridge.preview import save_png_atomic
from stylegan_bridge.style_space import to_pil

FRACTIONS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # of each candidate's delta: the sheet's columns
OVERVIEW_COLUMNS = (0, 2, 4)  # -delta, 0, +delta
OVERVIEW_SEEDS = 2
LABEL_WIDTH = 110
HEADER = 14
GAP = 2


def sweep_tiles(G: nn.Module, candidate: Candidate, ws: torch.Tensor, tile: int) -> list[list[Image.Image]]:
    """tiles[seed][column]: the candidate at delta x FRACTIONS on each seed of ws [S, ...], `tile` px square."""
    steps = torch.tensor(FRACTIONS) * candidate.delta
    rows = ws.repeat_interleave(len(FRACTIONS), dim=0)  # seed-major: seed s, then every column
    images = to_pil(render(G, rows, candidate.edit, steps.repeat(ws.shape[0])))
    tiles = [image.resize((tile, tile), Image.Resampling.LANCZOS) for image in images]
    return [tiles[s * len(FRACTIONS) : (s + 1) * len(FRACTIONS)] for s in range(ws.shape[0])]


def grid(
    tiles: Sequence[Sequence[Image.Image]], row_labels: Sequence[str], column_labels: Sequence[str]
) -> Image.Image:
    """The tiles in rows with a label left of each row and one above each column."""
    size = tiles[0][0].width
    columns = max(len(row) for row in tiles)
    sheet = Image.new(
        "RGB", (LABEL_WIDTH + columns * (size + GAP), HEADER + len(tiles) * (size + GAP)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for col, label in enumerate(column_labels):
        draw.text((LABEL_WIDTH + col * (size + GAP), 1), label, fill=(0, 0, 0))
    for row, (label, images) in enumerate(zip(row_labels, tiles)):
        y = HEADER + row * (size + GAP)
        draw.text((2, y + max(0, size // 2 - 12)), label, fill=(0, 0, 0))
        for col, image in enumerate(images):
            sheet.paste(image, (LABEL_WIDTH + col * (size + GAP), y))
    return sheet


def write_sheets(
    G: nn.Module,
    candidates: Sequence[Candidate],
    ws: torch.Tensor,
    seeds: Sequence[int],
    sheets_dir: Path,
    overview: Path,
    tile: int = 96,
    progress: bool = True,
) -> list[Path]:
    """Write `<sheets_dir>/<name>.png` per candidate and the overview; returns the sheet paths by rank."""
    paths, overview_rows = [], []
    for candidate in tqdm(candidates, desc="contact sheets", unit="sheet", disable=not progress):
        tiles = sweep_tiles(G, candidate, ws, tile)
        columns = [f"{f * candidate.delta:+g}" for f in FRACTIONS]
        sheet = grid(tiles, [f"seed {s}" for s in seeds], columns)
        paths.append(save_png_atomic(sheet, Path(sheets_dir) / f"{candidate.name}.png"))
        overview_rows.append([row[c] for row in tiles[:OVERVIEW_SEEDS] for c in OVERVIEW_COLUMNS])
    labels = [f"{rank}. {c.name}"[:17] for rank, c in enumerate(candidates, start=1)]
    header = [f"s{s} {d}" for s in seeds[:OVERVIEW_SEEDS] for d in ("-d", "0", "+d")]
    save_png_atomic(grid(overview_rows, labels, header), overview)
    return paths
