"""The StyleGAN3 generator: mapping + synthesis with NVlabs' calling convention and state-dict names.

`G(z, c=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const")` -> [B, C, R, R] in about
[-1, 1]; `G.mapping(z, c, truncation_psi=...)` -> ws [B, num_ws, w_dim]; `G.synthesis(ws)` -> images.
Parameter and buffer names equal NVlabs' (`mapping.fc0.weight`, `synthesis.L4_84_512.affine.weight`,
`synthesis.input.freqs`, ...), so their flat state dict loads with strict=True.
See `stylegan_bridge.synthesis` for the layer-index convention of the style space.
"""

from __future__ import annotations

import torch
from torch import nn

from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.mapping import FullyConnectedLayer, MappingNetwork
from stylegan_bridge.synthesis import SynthesisInput, SynthesisLayer, SynthesisNetwork, layer_schedule

__all__ = [
    "FullyConnectedLayer",
    "Generator",
    "GeneratorConfig",
    "MappingNetwork",
    "SynthesisInput",
    "SynthesisLayer",
    "SynthesisNetwork",
    "layer_schedule",
]


class Generator(nn.Module):
    """StyleGAN3 generator built from a `GeneratorConfig` (random weights until a state dict is loaded)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.img_resolution, self.img_channels = config.img_resolution, config.img_channels
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            config.z_dim,
            config.c_dim,
            config.w_dim,
            self.num_ws,
            num_layers=config.mapping_layers,
            lr_multiplier=config.mapping_lr_multiplier,
            w_avg_beta=config.w_avg_beta,
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        noise_mode: str = "const",
        force_fp32: bool = True,
    ) -> torch.Tensor:
        """z [B, z_dim] (c [B, c_dim]) -> images [B, img_channels, R, R] in about [-1, 1]."""
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(ws, update_emas=update_emas, noise_mode=noise_mode, force_fp32=force_fp32)

    @property
    def init_kwargs(self) -> dict:
        """NVlabs-style constructor arguments (as `G.init_kwargs` of a persistent NVlabs module)."""
        return self.config.to_init_kwargs()

    def extra_repr(self) -> str:
        c = self.config
        return f"{c.img_resolution}px, z={c.z_dim}, w={c.w_dim}, c={c.c_dim}, num_ws={self.num_ws}"
