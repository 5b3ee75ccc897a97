"""Shipped text-slider presets (`--preset NAME`): prompt sets written for this project.

- `repair`:  realistic, undistorted images (anatomy, geometry, realism vs. distortions and artifacts).
- `hands`:   well-formed hands (five fingers, natural joints), with person attributes preserved.
- `details`: fine detail and sharpness (+) vs. smooth, simple images (-).
Each YAML file in `sliders/presets/` documents its prompts and recommended scales in its header.
"""

from __future__ import annotations

from pathlib import Path

from sliders.config import TextSliderConfig, load_text_config

PRESET_DIR = Path(__file__).with_name("presets")


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The YAML file of preset `name`; ValueError listing the presets if there is none."""
    path = PRESET_DIR / f"{name}.yaml"
    if not name or "/" in name or not path.is_file():
        raise ValueError(f"--preset: unknown preset {name!r}; choose one of {', '.join(preset_names())}")
    return path


def load_preset(name: str) -> TextSliderConfig:
    """The text-slider config of preset `name`."""
    return load_text_config(preset_path(name))
