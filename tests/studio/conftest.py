"""Fixtures for the studio: the toy world's pipeline and demo sliders, and broken slider files."""

from __future__ import annotations

import shutil

import pytest
import torch

from sliders.lora import target_module_names
from sliders.slider_file import LoraFactors, save_slider


@pytest.fixture(scope="module")
def toy_pipe():
    """The shipped toy SDXL (64 px), loaded once per module."""
    from transfer.commands.aliases import model_aliases
    from transfer.sdxl import load_sdxl

    return load_sdxl("toy", device="cpu", aliases=model_aliases())


@pytest.fixture(scope="module")
def engine(toy_pipe, tmp_path_factory):
    """A studio engine on the toy pipeline, writing into a folder of its own."""
    from transfer.studio.engine import StudioEngine

    engine = StudioEngine(toy_pipe, "toy", tmp_path_factory.mktemp("out"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def demo_sliders(tmp_path_factory):
    """Copies of the two demo sliders (eye size, smile) in a folder of their own."""
    from toyworld import demo_slider_paths

    folder = tmp_path_factory.mktemp("sliders")
    return {name: shutil.copy(path, folder / path.name) for name, path in demo_slider_paths().items()}


def foreign_slider(unet: torch.nn.Module, path, rank: int = 2):
    """A real slider file for another UNet (`unet`): the toy UNet must refuse it."""
    generator = torch.Generator().manual_seed(0)
    factors = {}
    for name in target_module_names(unet, "noxattn"):
        weight = unet.get_submodule(name).weight
        kernel = tuple(weight.shape[2:])
        down = torch.randn(rank, weight.shape[1], *kernel, generator=generator)
        up = torch.randn(weight.shape[0], rank, *([1, 1] if kernel else []), generator=generator)
        factors[name] = LoraFactors(down, up, 1.0)
    return save_slider(path, factors, {"concept_transfer.concept": "foreign"})


@pytest.fixture(scope="module")
def bad_sliders(tmp_path_factory, demo_sliders):
    """Broken slider files by what is wrong: truncated, not safetensors, another architecture."""
    from toyworld.tiny_sdxl import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("bad")
    data = open(demo_sliders["smile"], "rb").read()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "text.safetensors").write_text("this is not a slider\n")
    foreign_slider(build_tiny_pipeline(0).unet, folder / "foreign.safetensors")
    return {name: folder / f"{name}.safetensors" for name in ("truncated", "text", "foreign")}


@pytest.fixture(scope="module")
def calibrated_slider(tmp_path_factory, demo_sliders):
    """The eye-size demo slider with a calibration whose user scale 1 is raw weight 2 (a doubling map)."""
    from sliders.calibration import EffectCurve, fit_calibration
    from sliders.slider_file import update_slider_metadata

    curve = EffectCurve((-3.0, -1.5, 1.5, 3.0), (3.0, 1.5, 1.5, 3.0), (False,) * 4)
    calibration = fit_calibration(curve, unit_effect=1.0 * 2, plateau=0.0)
    out = tmp_path_factory.mktemp("calibrated") / "eye-size.safetensors"
    return update_slider_metadata(demo_sliders["eye-size"], calibration.to_metadata(), out=out)
