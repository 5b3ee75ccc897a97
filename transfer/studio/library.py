"""The library gallery: the sliders of a library folder (`index.json`) or of any folder of slider files.

A library built by `library build` lists its sliders in `index.json` (`{"sliders": [{"name", "file",
"status", "previews", ...}]}`, paths relative to the library folder); only finished sliders are shown,
with their first preview. A plain folder shows its `.safetensors` / `.pt` files, with `<stem>.png`
beside a file as its preview when there is one. Every path an index names must stay inside its folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

INDEX_FILE = "index.json"
SLIDER_SUFFIXES = (".safetensors", ".pt", ".pth")
CARD_SIZE = 160


@dataclass(frozen=True)
class LibraryItem:
    """One slider of a gallery: what it is called, its file, and a picture (None: draw a card)."""

    name: str
    file: Path
    preview: Path | None


def _inside(folder: Path, relative: object) -> Path | None:
    """`folder / relative` when it is a string naming a path that stays inside `folder`, else None."""
    if not isinstance(relative, str) or not relative:
        return None
    path = (folder / relative).resolve()
    return path if path.is_relative_to(folder) else None


def _from_index(folder: Path) -> list[LibraryItem]:
    try:
        index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder / INDEX_FILE}: not a readable library index ({error})") from None
    records = index.get("sliders") if isinstance(index, dict) else None
    if not isinstance(records, list):
        raise ValueError(f"{folder / INDEX_FILE}: no 'sliders' list")
    items = []
    for record in records:
        if not isinstance(record, dict) or record.get("status", "done") != "done":
            continue
        file = _inside(folder, record.get("file"))
        if file is None or not file.is_file():
            continue
        previews = [_inside(folder, p) for p in record.get("previews") or [] if isinstance(p, str)]
        preview = next((p for p in previews if p is not None and p.is_file()), None)
        items.append(LibraryItem(str(record.get("name") or file.stem), file, preview))
    return items


def _from_folder(folder: Path) -> list[LibraryItem]:
    items = []
    for file in sorted(folder.iterdir()):
        if file.suffix in SLIDER_SUFFIXES and file.is_file():
            preview = file.with_suffix(".png")
            items.append(LibraryItem(file.stem, file, preview if preview.is_file() else None))
    return items


def read_library(folder: Path) -> list[LibraryItem]:
    """The sliders a (real, already confined) folder offers: its index, else its slider files."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"library {folder}: not a folder")
    return _from_index(folder) if (folder / INDEX_FILE).is_file() else _from_folder(folder)


def blank_preview() -> Image.Image:
    """The picture of a slider without a preview (the gallery captions it with the name)."""
    return Image.new("RGB", (CARD_SIZE, CARD_SIZE), (228, 228, 234))
