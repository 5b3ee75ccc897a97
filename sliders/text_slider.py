"""The text slider task (DESIGN §3): frozen predictions in one batched pass, both signs in another.

Per iteration: x_t from the schedule (partial denoising with the current slider at +1), then
    eps+, eps-, eps0 = frozen UNet on [x_t] * 3 with (positive, negative, neutral)   # one pass
    pred             = slider UNet on [x_t, x_t] at scales (+1, -1) with the target  # one pass
    loss             = MSE(pred, [eps0 + eta d (eps+ - eps-), eps0 - eta d (eps+ - eps-)])
The `reference` schedule instead runs every prediction as its own CFG-doubled pass, as the original.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sliders.checkpoint import refuse_other_settings
from sliders.config import TextSliderConfig
from sliders.defaults import SCALE_LIMIT, START_NOISE
from sliders.lora import adapter_disabled, per_sample_scale, slider_scale
from sliders.objectives import text_slider_loss, text_slider_target
from sliders.prompts import PromptCache, PromptEmbedding, PromptSet, expand_prompt_sets, predict_noise
from sliders.sampling import SCHEDULES, NoisyLatent, folded_slider, make_schedule
from sliders.trainer import Backward, train_slider


def resolution_buckets(resolution: int) -> list[int]:
    """Sizes for `dynamic_resolution`: multiples of 64 (8 below 128 px) from resolution/2 to resolution."""
    step = 64 if resolution >= 128 else 8
    sizes = [r for r in range(step, resolution + 1, step) if r >= resolution // 2]
    return sizes or [resolution]


def size_multiple(pipe) -> int:
    """Pixel sizes the UNet accepts are multiples of this: the VAE's factor times a halving per level."""
    return pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def native_resolution(pipe) -> int:
    """The model's own image size in pixels: its UNet's sample size times the VAE's factor."""
    return int(pipe.unet.config.sample_size) * pipe.vae_scale_factor


def with_model_resolution(config: TextSliderConfig, pipe) -> TextSliderConfig:
    """`config` with every prompt entry that names no resolution trained at the model's own size."""
    size = native_resolution(pipe)
    entries = tuple(e if e.resolution is not None else replace(e, resolution=size) for e in config.prompts)
    return replace(config, prompts=entries)


def check_resolution(pipe, size: int, where: str) -> int:
    """`size` (pixels) if its latent can be halved at every UNet level, else ValueError naming `where`."""
    multiple = size_multiple(pipe)
    if size % multiple:
        raise ValueError(f"{where}: resolution {size}: must be a multiple of {multiple} for this model")
    return size


class TextSliderTask:
    """The text-slider objective on a pipeline's UNet, with prompt embeddings encoded once up front."""

    def __init__(self, pipe, config: TextSliderConfig):
        config = with_model_resolution(config, pipe)
        self.unet: nn.Module = pipe.unet
        self.config = config
        self.device, self.dtype = pipe.unet.device, pipe.unet.dtype
        self.vae_scale = pipe.vae_scale_factor
        self.separate_passes = SCHEDULES[config.schedule].separate_passes
        self.folded = SCHEDULES[config.schedule].folded
        self.schedule = make_schedule(config.schedule, pipe.scheduler.config)
        for i, entry in enumerate(config.prompts):  # fail now, not with a shape error inside the UNet
            for size in (
                resolution_buckets(entry.resolution) if entry.dynamic_resolution else [entry.resolution]
            ):
                check_resolution(pipe, size, f"prompts[{i}]")
        self.prompt_sets = expand_prompt_sets(config.prompts, config.preserve)
        self.prompts = PromptCache(pipe, self.device, self.dtype)
        self.prompts.encode_all(text for s in self.prompt_sets for text in s.texts)
        self.current = 0

    # --- UNet calls -------------------------------------------------------------------------------
    def predict(self, model: nn.Module, x: Tensor, t: Tensor, cond: PromptEmbedding) -> Tensor:
        """The UNet's noise prediction for latents x [B, 4, h, w] at timestep t under `cond` [B, ...]."""
        return predict_noise(model, x, t, cond, self.vae_scale)

    def guided_denoiser(self, prompt_set: PromptSet, batch: int):
        """eps for sampling: slider at +1, CFG with uncond = negative, cond = target, one [2B] pass.

        With a `folded` schedule the caller has folded the slider into the weights (`folded_slider`).
        """
        cond = self.prompts.batch([prompt_set.negative, prompt_set.target], repeat=batch)
        scale = self.config.sampling_guidance

        def denoise(x: Tensor, t: Tensor) -> Tensor:
            with torch.no_grad(), nullcontext() if self.folded else slider_scale(self.unet, 1.0):
                uncond, text = self.predict(self.unet, torch.cat([x, x]), t, cond).chunk(2)
            return uncond + scale * (text - uncond)

        return denoise

    def frozen_predictions(self, sample: NoisyLatent, ps: PromptSet) -> tuple[Tensor, Tensor, Tensor]:
        """(eps+, eps-, eps0) of the frozen UNet: one [3B] pass, or three CFG-doubled passes (reference)."""
        x, t, batch = sample.latents, sample.timestep, sample.latents.shape[0]
        prompts = (ps.positive, ps.negative, ps.neutral)
        with torch.no_grad(), adapter_disabled(self.unet):
            if self.separate_passes:
                eps = [self._doubled(self.unet, x, t, ps.negative, p) for p in prompts]
            else:
                cond = self.prompts.batch(list(prompts), repeat=batch)
                eps = list(self.predict(self.unet, x.repeat(3, 1, 1, 1), t, cond).chunk(3))
        return eps[0], eps[1], eps[2]

    def _doubled(self, model: nn.Module, x: Tensor, t: Tensor, uncond: str, prompt: str) -> Tensor:
        # The original's guidance-1 pass: batch [uncond, cond], the uncond half thrown away.
        cond = self.prompts.batch([uncond, prompt], repeat=x.shape[0])
        return self.predict(model, torch.cat([x, x]), t, cond).chunk(2)[1]

    # --- the objective ----------------------------------------------------------------------------
    def targets(self, eps: tuple[Tensor, Tensor, Tensor], ps: PromptSet) -> dict[int, Tensor]:
        """The fixed targets per sign (+1, and -1 when bipolar)."""
        eps_pos, eps_neg, eps_neutral = eps
        entry = ps.entry
        signs = (1, -1) if self.config.bipolar else (1,)
        return {
            s: text_slider_target(eps_neutral, eps_pos, eps_neg, entry.guidance_scale, entry.action, s)
            for s in signs
        }

    def slider_loss(self, model: nn.Module, sample: NoisyLatent, ps: PromptSet, targets: dict[int, Tensor],
                    backward: Backward) -> Tensor:  # fmt: skip
        """The slider's predictions for every sign in one pass (per-sample scales), backward inside."""
        x, t, batch = sample.latents, sample.timestep, sample.latents.shape[0]
        if self.separate_passes:
            return self._slider_loss_separate(model, sample, ps, targets, backward)
        signs = list(targets)
        scales = torch.tensor([s for s in signs for _ in range(batch)], device=x.device)
        cond = self.prompts.batch([ps.target], repeat=batch * len(signs))
        with per_sample_scale(self.unet, scales):
            pred = self.predict(model, x.repeat(len(signs), 1, 1, 1), t, cond)
            loss = text_slider_loss(pred, torch.cat([targets[s] for s in signs])).mean()
            backward(loss)  # inside: a checkpointed forward recomputes with the same scales
        return loss.detach()

    def _slider_loss_separate(self, model, sample, ps, targets, backward) -> Tensor:
        total = torch.zeros((), device=sample.latents.device)
        for sign, target in targets.items():
            with slider_scale(self.unet, float(sign)):
                pred = self._doubled(model, sample.latents, sample.timestep, ps.negative, ps.target)
                loss = text_slider_loss(pred, target).mean() / len(targets)
                backward(loss)
            total += loss.detach()
        return total

    def latent_shape(self, ps: PromptSet, generator: torch.Generator) -> tuple[int, int, int, int]:
        """[batch_size, C, h, w] at the entry's resolution (a random bucket with dynamic_resolution)."""
        entry = ps.entry
        size = entry.resolution
        if entry.dynamic_resolution:
            buckets = resolution_buckets(size)
            size = buckets[int(torch.randint(len(buckets), (1,), generator=generator))]
        channels = self.unet.config.in_channels
        return (entry.batch_size, channels, size // self.vae_scale, size // self.vae_scale)

    def compute_loss(self, model: nn.Module, generator: torch.Generator, backward: Backward) -> Tensor:
        """One iteration of the text-slider objective; calls `backward(loss)` and returns the loss."""
        if self.schedule.wants_fresh():
            # The prompt set (entry x attribute) is drawn with each new trajectory and stays with it.
            self.current = int(torch.randint(len(self.prompt_sets), (1,), generator=generator))
            ps = self.prompt_sets[self.current]
            shape = self.latent_shape(ps, generator)
            with folded_slider(self.unet, 1.0) if self.folded else nullcontext():
                self.schedule.refresh(
                    self.guided_denoiser(ps, shape[0]), shape, generator, self.device, self.dtype
                )
        ps = self.prompt_sets[self.current]
        sample = self.schedule.draw(generator)
        targets = self.targets(self.frozen_predictions(sample, ps), ps)
        return self.slider_loss(model, sample, ps, targets, backward)

    # --- resume and metadata ----------------------------------------------------------------------
    def task_key(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the checkpoint."""
        # The entries too: eta, action, resolution and batch size change the objective, not only the prompts.
        return {"prompt_sets": [list(s.texts) for s in self.prompt_sets], "schedule": self.config.schedule,
                "bipolar": self.config.bipolar, "sampling_guidance": self.config.sampling_guidance,
                "entries": [asdict(e) for e in self.config.prompts]}  # fmt: skip

    def state_dict(self) -> dict:
        """The drawn prompt set and the schedule's held trajectory."""
        return {"current": self.current, "schedule": self.schedule.state_dict(), "config": self.task_key()}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`; a checkpoint of other prompts or sampling settings is refused."""
        refuse_other_settings("checkpoint", "text-slider settings", state.get("config"), self.task_key())
        self.current = int(state["current"])
        self.schedule.load_state_dict(state["schedule"], self.device)

    def metadata_fields(self) -> dict[str, Any]:
        """Kind, concept, prompts and recommendations for the slider file header."""
        return {
            "kind": "text",
            "concept": self.config.concept_name,
            "prompts": {"entries": [asdict(e) for e in self.config.prompts], "preserve": list(self.config.preserve)},
            "start_noise": START_NOISE,
            "scale_range": (-SCALE_LIMIT if self.config.bipolar else 0.0, SCALE_LIMIT),
            "extra": {"schedule": self.config.schedule, "bipolar": self.config.bipolar,
                      "rank": self.config.train.rank, "alpha": self.config.train.alpha},
        }  # fmt: skip


def free_text_encoders(pipe) -> None:
    """Move the text encoders and VAE off the accelerator: text training needs neither after encoding."""
    if pipe.unet.device.type != "cpu":
        for module in (pipe.text_encoder, pipe.text_encoder_2, pipe.vae):
            if module is not None:
                module.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def train_text_slider(pipe, config: TextSliderConfig, out: str | Path, *, base_model: str, resume: bool = False,
                      on_step_end=None, show_progress: bool = True) -> Path:  # fmt: skip
    """Train a text slider on `pipe`'s UNet and save it to `out`; returns the path."""
    task = TextSliderTask(pipe, config)
    free_text_encoders(pipe)
    return train_slider(task, config.train, out, base_model=base_model, resume=resume,
                        on_step_end=on_step_end, show_progress=show_progress)  # fmt: skip
