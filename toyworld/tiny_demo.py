"""`concept-transfer demo --tiny`: the whole journey on tiny random-weight models built on the fly.

An SDXL-architecture pipeline and a StyleGAN3 generator of our own, seeded: every stage and file is
real, but the pictures mean nothing. A smoke run in seconds; `toyworld.demo` is the measured journey.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pair_datasets.atomic import atomic_write_text
from sliders.config import PromptEntry, TextSliderConfig, TrainSettings
from sliders.text_slider import train_text_slider
from sliders.visual_slider import VisualSliderConfig
from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.loading import export_generator
from stylegan_bridge.mining import MiningConfig
from stylegan_bridge.networks import Generator
from toyworld.tiny_sdxl import build_tiny_sdxl
from transfer.apply import SliderSpec, load_sliders, remove_adapters
from transfer.gate import GateSpec
from transfer.recipe import TransferPlan, run_transfer
from transfer.sdxl import load_sdxl
from transfer.sweep import SweepSettings, run_sweep

TINY_GAN = GeneratorConfig(
    z_dim=16, w_dim=16, img_resolution=16, channel_base=256, channel_max=32,
    num_layers=4, num_critical=1, margin_size=2, mapping_layers=2,
)  # fmt: skip
PROMPTS = ("a cat on a sofa", "a red car", "a mountain at sunset")
SIZE = 32


def build_tiny_models(folder: Path) -> tuple[Path, Path]:
    """A tiny SDXL folder and a tiny StyleGAN3 export (random weights, seeded) under `folder`."""
    sdxl = folder / "tiny-sdxl"
    if not (sdxl / "model_index.json").exists():
        build_tiny_sdxl(sdxl, seed=0)
    gan = folder / "tiny-stylegan3.safetensors"
    if not gan.exists():
        torch.manual_seed(0)
        export_generator(Generator(TINY_GAN).eval(), gan)
    return sdxl, gan


def run_tiny_demo(out: Path, say: Callable[[str], None] = print) -> dict:
    """Run the interim demo on tiny random-weight models into `out`; returns (and writes) its summary."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    say("demo: tiny random-weight models built on the fly; every stage and file is real,")
    say("      the pictures are not meaningful (without --tiny the demo runs on the toy world).")
    sdxl, gan = build_tiny_models(out / "models")
    plan = TransferPlan(
        gan=str(gan),
        model=str(sdxl),
        out=out / "gan-transfer",
        layer="1",
        channel=5,
        mining=MiningConfig(pairs=8, delta=5.0, psi=0.7, resolution=SIZE),
        stats_samples=1000,
        slider=VisualSliderConfig(resolution=SIZE, train=TrainSettings(steps=30, lr=1e-3)),
        prompts=PROMPTS,
        seeds=(0, 1),
        sample_steps=8,
        size=SIZE,
        device="cpu",
    )
    visual = run_transfer(plan, say)

    say("[text] train a text slider: 'a face, smiling' vs 'a face, frowning'")
    pipe = load_sdxl(str(sdxl), device="cpu")
    entry = PromptEntry(target="a face", positive="a face, smiling", unconditional="a face, frowning",
                        guidance_scale=2.0, resolution=SIZE)  # fmt: skip
    text_path = out / "text-slider" / "smile.safetensors"
    config = TextSliderConfig(prompts=(entry,), concept="smile", train=TrainSettings(steps=20, lr=1e-3))
    train_text_slider(pipe, config, text_path, base_model=str(sdxl), show_progress=False)
    remove_adapters(pipe.unet)  # the sweep below composes the saved files; the trained adapter must go

    say("[apply] both sliders: sweep the text slider, hold the GAN slider at +1, gate at t=750")
    sliders = load_sliders([SliderSpec(text_path, 1.0), SliderSpec(Path(visual["slider"]), 1.0)], pipe.unet)
    settings = SweepSettings(prompts=PROMPTS, seeds=(0, 1), sweep_scales=(-2.0, -1.0, 0.0, 1.0, 2.0),
                             steps=8, width=SIZE, height=SIZE, gate=GateSpec(start_noise=750),
                             model=str(sdxl))  # fmt: skip
    composed = run_sweep(pipe, sliders, settings, out / "composed-sweep", progress=False)
    summary = {
        "models": {"sdxl": str(sdxl), "stylegan3": str(gan), "kind": "tiny random weights"},
        "gan_transfer": visual,
        "text_slider": str(text_path),
        "composed_sweep": {"folder": str(out / "composed-sweep"), "grids": composed["grids"]},
        "seconds": round(time.perf_counter() - started, 1),
    }
    summary["look_at"] = {
        "pairs": str(visual["contact_sheet"]),
        "GAN sweep": f"{visual['sweep']}/grid_p00.png",
        "loss curve": str(Path(visual["slider"]).with_suffix(".loss.png")),
        "composed": str(out / "composed-sweep" / "grid_p00.png"),
        "summary": str(out / "summary.json"),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
