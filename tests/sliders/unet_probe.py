"""Helpers the slider-file tests share: random slider factors and a UNet output on fixed inputs."""

from __future__ import annotations

import torch

from sliders.lora import lora_layers


def randomize(unet, adapter: str = "slider", seed: int = 0) -> None:
    """Give the adapter non-zero random factors (a freshly attached slider has up = 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(unet, adapter):
            for part in (layer.lora_A[adapter], layer.lora_B[adapter]):
                part.weight.copy_(0.3 * torch.randn(part.weight.shape, generator=generator))


def unet_output(unet, seed: int = 1) -> torch.Tensor:
    """The tiny UNet's noise prediction on fixed random inputs."""
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 4, 16, 16, generator=g)
    text = torch.randn(1, 5, 64, generator=g)
    cond = {
        "text_embeds": torch.randn(1, 32, generator=g),
        "time_ids": torch.tensor([[64, 64, 0, 0, 64, 64.0]]),
    }
    with torch.no_grad():
        return unet(sample, torch.tensor([500]), text, added_cond_kwargs=cond).sample
