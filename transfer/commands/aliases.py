"""Names that `--model` and `--gan` accept besides paths: the toy world's shipped models (`toy`).

The toy world is an application of the library, not part of it: only this front door of the command
line imports it, lazily, so the library packages never depend on it.
"""

from __future__ import annotations

from pathlib import Path

# `--model` when a command does not require one: SDXL base from the hub.
DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"


def model_aliases() -> dict[str, Path]:
    """`--model` names: `toy` -> the toy world's SDXL-architecture pipeline folder."""
    from toyworld import TOY_SDXL_FOLDER, assets_dir

    return {"toy": assets_dir() / TOY_SDXL_FOLDER}


def gan_aliases() -> dict[str, Path]:
    """`--gan` names: `toy` -> the toy world's StyleGAN3-architecture generator, once it is built."""
    from toyworld.toy_gan import toy_gan_path

    try:
        return {"toy": toy_gan_path()}
    except FileNotFoundError:
        return {}


def studio_defaults(model: str) -> dict[str, object]:
    """What `studio --model MODEL` opens with when no slider is given: `toy` -> the two demo sliders.

    Keys: `sliders` (paths), `prompt`, `steps`; empty for models without shipped sliders.
    """
    if model != "toy":
        return {}
    from toyworld import demo_slider_paths
    from toyworld.demo import PROMPTS

    return {"sliders": list(demo_slider_paths().values()), "prompt": PROMPTS[0], "steps": 20}
