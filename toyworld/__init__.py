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


DEMO_SLIDERS = ("eye-size", "smile")


def demo_slider_paths() -> dict[str, Path]:
    """The two shipped demo sliders (`eye-size` from the toy StyleGAN3, `smile` from text), by name.

    They are `concept-transfer demo`'s sliders (seed 0), stored in fp16; the studio opens with them.
    """
    folder = assets_dir() / "sliders"
    paths = {name: folder / f"{name}.safetensors" for name in DEMO_SLIDERS}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"no demo slider at {', '.join(missing)}: run `concept-transfer demo`")
    return paths
