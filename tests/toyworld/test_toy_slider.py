"""The shipped toy world end to end: the models load through the public loaders, and a GAN-transferred
slider trained for a few steps moves the probe's eye size the right way (about 20 s on one CPU thread)."""

from __future__ import annotations

import pytest
import torch

from toyworld.demo import ToyAssets, toy_assets
from toyworld.world import WORLD_STD


@pytest.fixture(scope="module")
def assets() -> ToyAssets:
    """The shipped toy SDXL, toy StyleGAN3 and probe; the tests skip while any is missing."""
    found = toy_assets()
    if found is None:
        pytest.skip("toy world not shipped (toyworld/assets: sdxl/, toy_stylegan3, probe)")
    return found


def test_shipped_models_load_through_public_loaders(assets):
    from diffusers import StableDiffusionXLPipeline

    from stylegan_bridge import Generator, load_generator
    from toyworld.probe import load_probe
    from toyworld.toy_gan import toy_gan_path
    from transfer.commands.aliases import model_aliases
    from transfer.sdxl import load_sdxl

    pipe = load_sdxl("toy", device="cpu", aliases=model_aliases())
    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert pipe.unet.dtype == torch.float32  # CPU placement upcasts the fp16 files
    G = load_generator(toy_gan_path())
    assert isinstance(G, Generator) and G.img_resolution == 64
    probe = load_probe(assets.probe)
    assert set(probe.measure(torch.zeros(1, 3, 64, 64))) >= {"eye_size", "smile"}


def test_gan_slider_moves_probe_eye_size(assets, tmp_path):
    """The demo's eye-size plan through the `transfer` recipe's mine and train stages, shortened."""
    from dataclasses import replace

    from sliders.slider_file import load_slider
    from toyworld.demo import DemoSettings, eye_size_plan
    from toyworld.probe import load_probe
    from toyworld.slider_eval import SweepSpec, measure_sweep, render_sweep
    from toyworld.toy_gan import EYE_CHANNEL, EYE_LAYER
    from transfer.apply import remove_adapters
    from transfer.recipe import mine_stage, train_stage
    from transfer.sdxl import load_sdxl

    settings = replace(DemoSettings(), stats_samples=2000, pairs=8, visual_steps=40, visual_lr=2e-3)
    channel = {"layer": f"L{EYE_LAYER}", "channel": EYE_CHANNEL}
    plan = eye_size_plan(tmp_path / "eye", assets, channel, settings, tmp_path / "cache")
    assert mine_stage(plan).written == 16  # 8 seeds x levels 1 and 2

    pipe = load_sdxl(str(assets.sdxl), device="cpu")
    path = train_stage(plan, pipe)
    remove_adapters(pipe.unet)
    factors = load_slider(path, unet=pipe.unet).factors
    spec = SweepSpec(prompts=("a face with red hair", "a wide face"), seeds=(0, 1, 2, 3), scales=(-2.0, 2.0),
                     steps=10)  # fmt: skip
    eye = measure_sweep(load_probe(assets.probe), render_sweep(pipe, [factors], spec))["eye_size"]
    change = float((eye[:, 1] - eye[:, 0]).mean()) / WORLD_STD["eye_size"]
    assert change > 0.5, f"eye size moved {change:.2f} world std from scale -2 to +2"


def test_gan_alias_toy_names_the_shipped_generator(assets):
    from transfer.commands.aliases import gan_aliases

    assert gan_aliases() == {"toy": assets.gan}


def test_shipped_demo_sliders_fit_the_toy_sdxl(assets):
    from sliders.slider_file import load_slider
    from toyworld import demo_slider_paths
    from transfer.commands.aliases import model_aliases
    from transfer.sdxl import load_sdxl

    unet = load_sdxl("toy", device="cpu", aliases=model_aliases()).unet
    paths = demo_slider_paths()
    kinds = {name: load_slider(path, unet=unet).kind for name, path in paths.items()}
    assert kinds == {"eye-size": "gan", "smile": "text"}
    assert all(path.stat().st_size < 400_000 for path in paths.values())  # fp16, rank 4
