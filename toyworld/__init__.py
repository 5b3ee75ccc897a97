"""The toy world: procedural faces, an attribute probe, and small models fitted to them (DESIGN.md §5).

The shipped models live in `assets/` beside this file; `concept-transfer toyworld build` remakes them.
"""

from __future__ import annotations

from pathlib import Path

TOY_SDXL_FOLDER = "sdxl"


def assets_dir() -> Path:
    """The folder holding the shipped toy-world models (toy SDXL pipeline, probe, build report)."""
    return Path(__file__).resolve().parent / "assets"


def toy_sdxl_path() -> Path:
    """The shipped toy SDXL diffusers folder (what `--model toy` loads)."""
    path = assets_dir() / TOY_SDXL_FOLDER
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(f"no toy SDXL at {path}: run `concept-transfer toyworld build`")
    return path
