"""What a person looks at: corpus counts and a contact sheet of pairs (before above after)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from pair_datasets.atomic import atomic_write_bytes
from pair_datasets.corpus import Corpus

THUMB = 128
LABEL_HEIGHT = 14
COLUMNS = 8
GAP = 4
SPLIT = 2  # white line between a pair's before and after


def summarize(corpus: Corpus | Path) -> dict:
    """Counts for `pairs inspect`: name, resolution, pairs, pairs per level, captioned pairs, provenance."""
    if not isinstance(corpus, Corpus):
        corpus = Corpus.open(Path(corpus))
    levels: dict[float, int] = {}
    for record in corpus.records():
        levels[record.level] = levels.get(record.level, 0) + 1
    return {
        "name": corpus.info.name,
        "resolution": corpus.info.resolution,
        "pairs": len(corpus),
        "levels": dict(sorted(levels.items())),
        "captioned": sum(1 for record in corpus.records() if record.caption),
        "provenance": corpus.info.provenance,
    }


def contact_sheet(corpus: Corpus | Path, path: Path, max_pairs: int = 16) -> Path:
    """Write a PNG grid of up to `max_pairs` pairs, each a column: label, before above after. Returns path."""
    if not isinstance(corpus, Corpus):
        corpus = Corpus.open(Path(corpus))
    records = corpus.records()[: max(0, max_pairs)]
    if not records:
        raise ValueError(f"{corpus.root}: the corpus has no pairs to show")
    columns = min(COLUMNS, len(records))
    rows = -(-len(records) // columns)
    cell_w = THUMB + GAP
    cell_h = LABEL_HEIGHT + 2 * THUMB + SPLIT + GAP
    sheet = Image.new("RGB", (columns * cell_w + GAP, rows * cell_h + GAP), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, record in enumerate(records):
        x = GAP + (index % columns) * cell_w
        y = GAP + (index // columns) * cell_h
        label = f"{record.id} L{record.level:g}"
        draw.text((x, y), label[:20], fill=(0, 0, 0))
        for row, relpath in enumerate((record.before, record.after)):
            sheet.paste(_thumbnail(corpus.path_of(relpath)), (x, y + LABEL_HEIGHT + row * (THUMB + SPLIT)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _thumbnail(path: Path) -> Image.Image:
    """A THUMB x THUMB RGB tile of the image at `path`: scaled to fit, grey borders if not square, red if unreadable."""
    tile = Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
    try:
        with Image.open(path) as image:
            image.draft("RGB", (THUMB, THUMB))
            small = ImageOps.contain(
                image.convert("RGB"), (THUMB, THUMB), Image.Resampling.LANCZOS
            )  # up or down
    except (OSError, SyntaxError, ValueError):
        return Image.new("RGB", (THUMB, THUMB), (220, 0, 0))
    tile.paste(small, ((THUMB - small.width) // 2, (THUMB - small.height) // 2))
    return tile
