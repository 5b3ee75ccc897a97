"""Re-generate an inverted photo with the plain SDXL pipeline, so sliders and their gate act as in `apply`.

The pipeline is `StableDiffusionXLPipeline` itself (its prompt encoding, guidance, micro-conditioning,
decoding and `callback_on_step_end`), sharing the loaded components; only the scheduler is chosen for
the inversion and the start is `x_T`:

- `ddim`: diffusers' `DDIMScheduler` (eta = 0);
- `edit-friendly`: `NoiseMapScheduler`, a `DDIMScheduler` whose every step takes the photo's noise map
  as its variance noise (`step(..., eta=1, variance_noise=z_t)`: diffusers' own DDPM step, the one the
  noise maps were computed against). The pipeline does not pass noise maps to its scheduler, so the
  scheduler carries them.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, StableDiffusionXLPipeline

from transfer.edit.inversion import EDIT_FRIENDLY_ETA, Inversion, ddim_config


class NoiseMapScheduler(DDIMScheduler):
    """DDPM sampling (DDIM with eta = 1) whose step at timestep `t` adds the stored noise map `z_t`."""

    noise_maps: torch.Tensor | None = None
    map_index: dict[int, int] | None = None

    def use_noise_maps(self, noise_maps: torch.Tensor, timesteps: torch.Tensor) -> NoiseMapScheduler:
        """Carry the inversion's noise maps [n, B, C, h, w], one per timestep of `timesteps` [n]."""
        self.noise_maps = noise_maps
        self.map_index = {int(t): i for i, t in enumerate(timesteps)}
        return self

    def step(self, model_output, timestep, sample, eta=0.0, use_clipped_model_output=False, generator=None,
             variance_noise=None, return_dict=True):  # fmt: skip
        """`DDIMScheduler.step` at eta = 1 with the noise map of `timestep` (other eta/noise are ignored)."""
        index = None if self.map_index is None else self.map_index.get(int(timestep))
        if self.noise_maps is None or index is None:
            raise RuntimeError(
                f"NoiseMapScheduler: no noise map for timestep {int(timestep)}; the sampler runs other "
                f"timesteps than the inversion ({sorted(self.map_index or {}, reverse=True)})"
            )
        noise = self.noise_maps[index].to(sample.device, sample.dtype)
        return super().step(model_output, timestep, sample, eta=EDIT_FRIENDLY_ETA,
                            variance_noise=noise, return_dict=return_dict)  # fmt: skip


def edit_pipeline(pipe: StableDiffusionXLPipeline, inversion: Inversion) -> StableDiffusionXLPipeline:
    """An SDXL pipeline sharing `pipe`'s components whose scheduler re-generates `inversion`."""
    if inversion.noise_maps is None:
        scheduler = ddim_config(pipe.scheduler.config)
    else:
        scheduler = NoiseMapScheduler.from_config(ddim_config(pipe.scheduler.config).config)
        scheduler.use_noise_maps(inversion.noise_maps, inversion.timesteps)
    edit = StableDiffusionXLPipeline(
        **{**pipe.components, "scheduler": scheduler},
        force_zeros_for_empty_prompt=pipe.config.get("force_zeros_for_empty_prompt", True),
    )
    edit.set_progress_bar_config(disable=True)
    return edit
