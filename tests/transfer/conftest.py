"""Fixtures for applying sliders: random slider factors and slider files that fit the tiny UNet."""

from __future__ import annotations

import pytest
import torch

from sliders.lora import target_module_names
from sliders.slider_file import LoraFactors, save_slider


def random_factors(
    unet: torch.nn.Module,
    targets: str = "noxattn",
    rank: int = 4,
    alpha: float = 1.0,
    seed: int = 0,
    std: float = 0.2,
) -> dict[str, LoraFactors]:
    """Random LoRA factors on every module of the preset `targets` (large enough to change images)."""
    generator = torch.Generator().manual_seed(seed)
    factors = {}
    for name in target_module_names(unet, targets):
        weight = unet.get_submodule(name).weight
        kernel = tuple(weight.shape[2:])
        down = torch.randn(rank, weight.shape[1], *kernel, generator=generator) * std
        up = torch.randn(weight.shape[0], rank, *([1, 1] if kernel else []), generator=generator) * std
        factors[name] = LoraFactors(down, up, alpha)
    return factors


@pytest.fixture
def make_factors():
    """`make_factors(unet, targets=..., rank=..., alpha=..., seed=...)` -> random factors by module path."""
    return random_factors


@pytest.fixture
def make_slider_file(tmp_path):
    """`make_slider_file(unet, name, start_noise=None, **factor_kwargs)` -> a saved .safetensors slider."""

    def make(unet, name: str = "slider", start_noise: float | None = None, **kwargs):
        metadata = {"concept_transfer.concept": name}
        if start_noise is not None:
            metadata["concept_transfer.start_noise"] = f"{start_noise:g}"
        return save_slider(tmp_path / f"{name}.safetensors", random_factors(unet, **kwargs), metadata)

    return make
