"""The tiny generator configuration the bridge tests share (`from tiny_gan import TINY`)."""

from __future__ import annotations

from stylegan_bridge.config import GeneratorConfig

TINY = GeneratorConfig(
    z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=16,
    num_layers=4, num_critical=1, margin_size=2, mapping_layers=1,
)  # fmt: skip
