"""Invert a photo into the starting point (and noise) from which SDXL re-generates it.

Two methods, both from diffusers' schedulers, both with the same noise prediction `eps(x_t, c, t)` the
SDXL pipeline uses (classifier-free guidance over the prompt, the size conditioning of the photo):

- `edit-friendly` (Huberman-Spiegelglas et al. 2023, "An Edit Friendly DDPM Noise Space"; the DDIM
  branch of LEDITS++'s `invert()`): draw every `x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) n_t` independently,
  then take each step's noise map `z_t = (x_{t-1} - mu_t(x_t)) / sigma_t` from the DDPM (DDIM, eta=1)
  step. Sampling from `x_T` with these `z_t` gives back `x_0` exactly, whatever the guidance, and an edit
  (a slider switched on by the gate) changes `mu_t` while the noise maps keep the photo's structure.
  The noise maps come from diffusers' own `compute_noise_ddim` (LEDITS++), sampling from its
  `DDIMScheduler.step(..., variance_noise=z_t)`, so the two can never disagree.
- `ddim`: deterministic DDIM inversion with `DDIMInverseScheduler` (as diffusers' DiffEdit pipeline),
  sampled back with `DDIMScheduler` (eta=0). Approximate: each step assumes `eps` barely changes
  between neighbouring timesteps, which guidance breaks.

LEDITS++'s own SDXL default (second-order SDE DPM-solver++) is not used: its noise extraction does
not follow the scheduler's first-order final step, so it does not give the photo back (LEDITS++ zeroes
the last three noise maps to hide the artefacts). Everything here is batched over photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from diffusers.pipelines.ledits_pp.pipeline_leditspp_stable_diffusion import compute_noise_ddim
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from pair_datasets.latent_cache import scale_latents
from transfer.calibrate import decode_latents as decode_pixels
from transfer.edit import METHODS

EDIT_FRIENDLY_ETA = 1.0  # the DDPM posterior: the noise maps carry the photo


@dataclass(frozen=True)
class InversionSettings:
    """What an inversion depends on besides the photo and the model (the cache key's settings)."""

    method: str
    prompt: str = ""
    negative_prompt: str | None = None
    steps: int = 30
    guidance: float = 5.0
    seed: int = 0  # edit-friendly only: the noise of the independent x_t draws

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"inversion method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.steps < 1:
            raise ValueError(f"--steps: must be a positive integer, got {self.steps}")

    def describe(self) -> dict[str, Any]:
        """JSON-ready form (the seed only where it matters)."""
        record = {
            "method": self.method,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "steps": self.steps,
            "guidance": self.guidance,
        }
        if self.method == "edit-friendly":
            record["seed"] = self.seed
        return record


@dataclass(frozen=True)
class Inversion:
    """Where the re-generation starts and what it needs: `x_T` [B, C, h, w], noise maps [n, B, C, h, w]."""

    latents: torch.Tensor
    timesteps: torch.Tensor  # [n], the sampling order (descending)
    noise_maps: torch.Tensor | None = None  # edit-friendly only

    def __post_init__(self) -> None:
        assert self.latents.ndim == 4, f"latents must be [B, C, h, w], got {tuple(self.latents.shape)}"
        if self.noise_maps is not None:
            assert self.noise_maps.shape == (len(self.timesteps), *self.latents.shape), (
                f"noise maps {tuple(self.noise_maps.shape)} do not fit {len(self.timesteps)} steps of "
                f"{tuple(self.latents.shape)}"
            )


def ddim_config(config: Any, inverse: bool = False) -> DDIMScheduler | DDIMInverseScheduler:
    """A DDIM (or inverse DDIM) scheduler on the model's noise schedule, predicting unclipped latents.

    DDIM's defaults clip the predicted `x_0` to [-1, 1] (pixels); latents are not pixels, and a model
    whose scheduler config does not say otherwise (the toy's Euler) would inherit that clipping. The
    last step lands on the first training timestep (`set_alpha_to_one=False`, as SDXL's own config):
    with a final alpha of one that step has no variance, so no noise map could carry the photo's
    last details and the edit-friendly re-generation would end on the model's guess of `x_0`.
    """
    spacing = config.get("timestep_spacing", "leading")
    spacing = spacing if spacing in ("leading", "trailing") else "leading"  # what the inverse supports
    kind = DDIMInverseScheduler if inverse else DDIMScheduler
    return kind.from_config(
        config, clip_sample=False, thresholding=False, set_alpha_to_one=False, timestep_spacing=spacing
    )


class NoisePredictor:
    """`eps(x_t, t)` exactly as `StableDiffusionXLPipeline.__call__` computes it (guidance included).

    The prompt is encoded once; the batch of latents must match the number of prompts.
    """

    def __init__(self, pipe: Any, prompts: Sequence[str], negative_prompt: str | None, guidance: float,
                 size: tuple[int, int]) -> None:  # fmt: skip
        if pipe.unet.config.time_cond_proj_dim is not None:
            raise ValueError("--invert: UNets with guidance embeddings (LCM-style) are not supported")
        self.pipe, self.guidance = pipe, float(guidance)
        self.guided = self.guidance > 1.0  # the pipeline's `do_classifier_free_guidance`
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=list(prompts),
            device=pipe._execution_device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=self.guided,
            negative_prompt=None if negative_prompt is None else [negative_prompt] * len(prompts),
        )
        projection = (
            int(pooled.shape[-1])
            if pipe.text_encoder_2 is None
            else pipe.text_encoder_2.config.projection_dim
        )
        time_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=embeds.dtype,
                                          text_encoder_projection_dim=projection)  # fmt: skip
        if self.guided:
            embeds, pooled = torch.cat([negative, embeds]), torch.cat([negative_pooled, pooled])
            time_ids = torch.cat([time_ids, time_ids])
        device = pipe._execution_device
        self.embeds, self.pooled = embeds.to(device), pooled.to(device)
        self.time_ids = time_ids.to(device).repeat(len(prompts), 1)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """The guided noise prediction for `latents` [B, C, h, w] at `timestep`."""
        model_input = torch.cat([latents] * 2) if self.guided else latents
        eps = self.pipe.unet(
            model_input,
            timestep,
            encoder_hidden_states=self.embeds,
            added_cond_kwargs={"text_embeds": self.pooled, "time_ids": self.time_ids},
            return_dict=False,
        )[0]
        if not self.guided:
            return eps
        uncond, cond = eps.chunk(2)
        return uncond + self.guidance * (cond - uncond)


@torch.no_grad()
def encode_photos(pipe: Any, images: Sequence[Image.Image]) -> torch.Tensor:
    """VAE latents of the photos in the UNet's space [B, C, h, w] (the distribution's mode, no sampling)."""
    pixels = pipe.image_processor.preprocess(list(images))  # [-1, 1], as the img2img pipeline reads them
    vae = pipe.vae
    z = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    # Contiguous: the VAE may hand back another memory layout, and the UNet's kernels then round
    # differently, so a cached inversion (always contiguous) would not give the same images.
    return scale_latents(z.float(), vae.config).to(pipe.unet.dtype).contiguous()


def decode_latents(pipe: Any, latents: torch.Tensor) -> list[Image.Image]:
    """Images of UNet-space latents, decoded as the SDXL pipeline decodes them (VAE round trips)."""
    return pipe.image_processor.postprocess(decode_pixels(pipe, latents), output_type="pil")


def invert_edit_friendly(
    eps: NoisePredictor, x0: torch.Tensor, scheduler: DDIMScheduler, generator: torch.Generator
) -> Inversion:
    """Edit-friendly DDPM inversion: independent `x_t` draws, then each step's noise map `z_t`."""
    timesteps = scheduler.timesteps
    draws = randn_tensor((len(timesteps), *x0.shape), generator=generator, device=x0.device, dtype=x0.dtype)
    # xts[i] is the sample at timesteps[i] (descending); xts[n] is the photo itself.
    xts = [scheduler.add_noise(x0, draws[i], t.reshape(1)) for i, t in enumerate(timesteps)] + [x0]
    maps = []
    for i, t in enumerate(timesteps):
        z, landed = compute_noise_ddim(scheduler, xts[i + 1], xts[i], t, eps(xts[i], t), EDIT_FRIENDLY_ETA)
        maps.append(z)
        xts[i + 1] = landed  # LEDITS++'s correction: the next step starts where this one lands
    return Inversion(xts[0], timesteps.cpu(), torch.stack(maps))


def invert_ddim(eps: NoisePredictor, x0: torch.Tensor, inverse: DDIMInverseScheduler) -> torch.Tensor:
    """Deterministic DDIM inversion: step the photo's latents up the (ascending) timesteps to `x_T`."""
    x = x0
    for t in inverse.timesteps:
        x = inverse.step(eps(x, t), t, x, return_dict=False)[0]
    return x


def invert(pipe: Any, images: Sequence[Image.Image], settings: InversionSettings) -> Inversion:
    """Invert square photos (one prompt for all) with the pipeline's UNet as it is now (sliders off)."""
    x0 = encode_photos(pipe, images)
    size = (images[0].size[1], images[0].size[0])  # (H, W), the pipeline's micro-conditioning order
    eps = NoisePredictor(
        pipe, [settings.prompt] * len(images), settings.negative_prompt, settings.guidance, size
    )
    device = pipe._execution_device
    if settings.method == "ddim":
        inverse = ddim_config(pipe.scheduler.config, inverse=True)
        inverse.set_timesteps(settings.steps, device=device)
        sampler = ddim_config(pipe.scheduler.config)
        sampler.set_timesteps(settings.steps, device=device)
        return Inversion(invert_ddim(eps, x0, inverse), sampler.timesteps.cpu())
    scheduler = ddim_config(pipe.scheduler.config)
    scheduler.set_timesteps(settings.steps, device=device)
    # A CPU generator gives the same draws on every device (as `transfer.apply.render`).
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    return invert_edit_friendly(eps, x0, scheduler, generator)
