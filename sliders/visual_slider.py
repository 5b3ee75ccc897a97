"""The visual slider task (DESIGN §3): before/after pairs teach the slider a contrast.

Per iteration, for a batch of pairs (A = before, B = after) with levels s, from cached VAE latents:
    eps ~ N(0, I), t ~ U{0..T-1}, one of each per pair, shared by its two images
    pred = slider UNet on [noisy(A, eps, t), noisy(B, eps, t)] at per-sample scales [-s, +s]  # one pass
    loss = mean_pairs visual_slider_loss(pred_A, pred_B, eps)
The `separate_passes` option runs the two signs as two passes, each with its own backward (the original
procedure's structure); the loss and the gradients are the same.

Paired augmentation (optional) happens on the cached latents, never by re-encoding: a horizontal flip
(`augment`) and a random crop (`crop_scale`), each the same for the two images of a pair. A crop is
told to the UNet through SDXL's micro-conditioning (original size, crop top-left, target size).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

from pair_datasets import Corpus
from sliders.checkpoint import refuse_other_settings
from sliders.config import VisualSliderConfig
from sliders.defaults import SCALE_LIMIT, START_NOISE
from sliders.lora import per_sample_scale
from sliders.objectives import denoising_loss, visual_slider_loss
from sliders.prompts import PromptCache, PromptEmbedding, crop_time_ids, predict_noise
from sliders.text_slider import check_resolution, free_text_encoders, size_multiple
from sliders.trainer import Backward, train_slider

FLIP_P = 0.5  # paired augmentation: probability of mirroring a pair (both images together)
LIST_SUMMARY = 8  # provenance lists longer than this are summarised (GAN corpora record thousands of seeds)


@dataclass(frozen=True)
class PairBatch:
    """One draw: pair indices, latents [B, C, h, w] (after any flip and crop), noise, timesteps, levels.

    `noise` is shared by a pair's two images; `timesteps` and `levels` are [B]; `top_left` [B, 2] is each
    pair's crop window (row, column) in latent pixels (zeros without a crop).
    """

    indices: list[int]
    before: Tensor
    after: Tensor
    noise: Tensor
    timesteps: Tensor
    levels: Tensor
    top_left: Tensor


def summarize_provenance(provenance: dict) -> dict:
    """The corpus provenance for a slider header: long lists replaced by their count, first and last item."""
    summary: dict[str, Any] = {}
    for key, value in provenance.items():
        if isinstance(value, dict):
            summary[key] = summarize_provenance(value)
        elif isinstance(value, (list, tuple)) and len(value) > LIST_SUMMARY:
            summary[key] = {"count": len(value), "first": value[0], "last": value[-1]}
        else:
            summary[key] = value
    return summary


def corpus_summary(corpus: Corpus, resolution: int) -> dict[str, Any]:
    """Name, pair count, levels, captions and provenance of a corpus (metadata `concept_transfer.corpus`)."""
    records = corpus.records()
    return {
        "name": corpus.info.name,
        "pairs": len(records),
        "levels": sorted({float(r.level) for r in records}),
        "captioned": sum(1 for r in records if r.caption),
        "corpus_resolution": corpus.info.resolution,
        "training_resolution": resolution,
        "provenance": json.dumps(summarize_provenance(corpus.info.provenance), sort_keys=True, default=str),
    }


def crop_side(side: int, scale: float, multiple: int) -> int:
    """The crop window's side for `scale` of `side`: the nearest multiple of `multiple` (latent pixels)."""
    return math.floor(scale * side / multiple + 0.5) * multiple  # halves round up (round() would go to even)


def paired_crop(
    before: Tensor, after: Tensor, top_left: Tensor, size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Pair i's window of `size` (h, w) at `top_left[i]` (row, column), cut alike from both [B, C, H, W]."""
    h, w = size
    windows = top_left.tolist()
    assert all(0 <= y <= before.shape[-2] - h and 0 <= x <= before.shape[-1] - w for y, x in windows)
    crops_b = torch.stack([b[:, y : y + h, x : x + w] for b, (y, x) in zip(before, windows)])
    crops_a = torch.stack([a[:, y : y + h, x : x + w] for a, (y, x) in zip(after, windows)])
    return crops_b, crops_a


def training_resolution(pipe, corpus: Corpus, resolution: int | None) -> int:
    """The training side in pixels; it must map to a latent the UNet can halve at every level."""
    where = "--resolution" if resolution else f"--pairs {corpus.root} (set --resolution)"
    return check_resolution(pipe, int(resolution or corpus.info.resolution), where)


class VisualSliderTask:
    """The visual-slider objective on a pipeline's UNet, from a corpus's cached latents and cached prompts."""

    def __init__(self, pipe, corpus: Corpus, config: VisualSliderConfig, *, progress: bool = False):
        if not len(corpus):
            raise ValueError(f"--pairs {corpus.root}: the corpus has no pairs")
        prediction = pipe.scheduler.config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise ValueError(
                f"--model: visual sliders need an epsilon-prediction model, this one predicts {prediction!r}"
            )
        self.unet: nn.Module = pipe.unet
        self.config, self.corpus = config, corpus
        self.device, self.dtype = pipe.unet.device, pipe.unet.dtype
        self.vae_scale = pipe.vae_scale_factor
        self.resolution = training_resolution(pipe, corpus, config.resolution)
        self.window = self._crop_window(pipe)  # (h, w) of the training latents after any crop
        self.noise_scheduler = DDPMScheduler.from_config(dict(pipe.scheduler.config))
        self.num_encoded = self._load_latents(pipe, progress)
        self.captions = [r.caption or config.prompt for r in corpus.records()]
        self.prompts = PromptCache(pipe, self.device, self.dtype)
        self.prompts.encode_all(dict.fromkeys(self.captions))
        self.order: list[int] = []  # this epoch's shuffled pair order
        self.position = 0

    def _crop_window(self, pipe) -> tuple[int, int]:
        """The latent window (h, w) for `crop_scale` (without a crop: the whole latent); checked up front."""
        side = self.resolution // self.vae_scale  # the cached latents are square, [N, C, side, side]
        scale = self.config.crop
        if scale is None:
            return side, side
        # The smallest latent side the UNet can halve at every level; windows come in steps of it.
        multiple = size_multiple(pipe) // self.vae_scale
        window = crop_side(side, scale, multiple)
        if window < multiple:
            raise ValueError(
                f"crop_scale (--crop-scale) {scale}: a window of {scale} x {self.resolution} px is smaller "
                f"than this model's smallest input, {multiple * self.vae_scale} px; "
                f"use at least {multiple / (2 * side):g}"
            )
        return window, window

    @property
    def cropping(self) -> bool:
        """Whether draws cut a window smaller than the latent (a scale rounding to the whole is no crop)."""
        return self.window != (self.resolution // self.vae_scale,) * 2

    def _load_latents(self, pipe, progress: bool) -> int:
        """Encode stale images once (fp32 VAE) into the corpus cache; keep all latents on the CPU."""
        from pair_datasets import LatentCache

        cache = LatentCache(self.corpus, pipe.vae, self.resolution, dtype=torch.float32)
        encoded = cache.ensure(progress=progress)
        records = self.corpus.records()
        self.before = torch.stack([cache.latent(r.before) for r in records])  # [N, C, h, w] fp32
        self.after = torch.stack([cache.latent(r.after) for r in records])
        self.levels = torch.tensor([float(r.level) for r in records])
        # What the run trains on (manifest lines, image bytes, encoder), so a resume can check it is unchanged.
        digest = hashlib.sha256(cache.fingerprint.encode())
        for record in records:
            digest.update(record.to_json().encode("utf-8"))
            digest.update((cache.image_sha256(record.before) + cache.image_sha256(record.after)).encode())
        self.corpus_digest = digest.hexdigest()
        return encoded

    # --- data -------------------------------------------------------------------------------------
    def next_indices(self, generator: torch.Generator) -> list[int]:
        """The next `batch_size` pairs of a reshuffled-every-epoch order (every pair once per epoch)."""
        indices = []
        while len(indices) < self.config.batch_size:
            if self.position >= len(self.order):
                self.order = torch.randperm(len(self.levels), generator=generator).tolist()
                self.position = 0
            indices.append(self.order[self.position])
            self.position += 1
        return indices

    def draw(self, generator: torch.Generator) -> PairBatch:
        """Draw pairs, the paired flip and crop, a noise and a timestep per pair (all from `generator`)."""
        indices = self.next_indices(generator)
        before, after = self.before[indices], self.after[indices]
        if self.config.augment:
            flip = (torch.rand(len(indices), generator=generator) < FLIP_P).view(-1, 1, 1, 1)
            before = torch.where(flip, before.flip(-1), before)  # the same flip for both images of a pair
            after = torch.where(flip, after.flip(-1), after)
        top_left = torch.zeros(len(indices), 2, dtype=torch.long)
        if self.cropping:  # one window size for the batch (so it stacks), a position per pair
            (height, width), (h, w) = before.shape[-2:], self.window
            top = torch.randint(0, height - h + 1, (len(indices),), generator=generator)
            left = torch.randint(0, width - w + 1, (len(indices),), generator=generator)
            top_left = torch.stack([top, left], dim=1)
            before, after = paired_crop(before, after, top_left, self.window)
        noise = torch.randn(before.shape, generator=generator)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (len(indices),), generator=generator)
        return PairBatch(indices, before, after, noise, timesteps, self.levels[indices], top_left)

    def noisy(self, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, in fp32, then in the UNet's dtype."""
        return self.noise_scheduler.add_noise(latents, noise, timesteps).to(self.dtype)

    def time_ids(self, top_left: Tensor) -> Tensor:
        """SDXL micro-conditioning [B, 6] of a draw: training resolution, each window's top-left, its size.

        In pixels (latent pixels x the VAE factor), on the UNet's device and in its dtype. Without a crop it
        is the uncropped conditioning `predict_noise` uses by default.
        """
        original = (self.resolution, self.resolution)
        target = (self.window[0] * self.vae_scale, self.window[1] * self.vae_scale)
        return crop_time_ids(original, top_left.to(self.device) * self.vae_scale, target, self.dtype)

    # --- UNet calls -------------------------------------------------------------------------------
    def predict(
        self, model: nn.Module, x: Tensor, t: Tensor, cond: PromptEmbedding, time_ids: Tensor | None = None
    ) -> Tensor:
        """The UNet's noise prediction for latents x [B, 4, h, w] at timesteps t [B] under `cond` [B, ...].

        `time_ids` [B, 6]: SDXL's size/crop conditioning (default: x is the whole, uncropped image).
        """
        return predict_noise(model, x, t, cond, self.vae_scale, time_ids)

    def batch_loss(self, model: nn.Module, batch: PairBatch, backward: Backward) -> Tensor:
        """The visual loss of a drawn batch (mean over pairs); calls `backward` and returns it detached."""
        device = self.device
        noise, t = batch.noise.to(device), batch.timesteps.to(device)
        x_a = self.noisy(batch.before.to(device), noise, t)
        x_b = self.noisy(batch.after.to(device), noise, t)
        captions = [self.captions[i] for i in batch.indices]
        levels = batch.levels.to(device)
        ids = self.time_ids(batch.top_left)  # [B, 6]: a pair's two images share their window, so their ids
        if self.config.separate_passes:
            return self._separate(model, (x_a, x_b), noise, t, ids, captions, levels, backward)
        cond = self.prompts.batch(captions + captions)
        with per_sample_scale(self.unet, torch.cat([-levels, levels])):
            pred = self.predict(model, torch.cat([x_a, x_b]), torch.cat([t, t]), cond, torch.cat([ids, ids]))
            pred_a, pred_b = pred.chunk(2)
            loss = visual_slider_loss(pred_a, pred_b, noise).mean()
            backward(loss)  # inside: a checkpointed forward recomputes with the same scales
        return loss.detach()

    def _separate(self, model, latents, noise, t, time_ids, captions, levels, backward) -> Tensor:
        # Before at -s, then after at +s, one backward each: sum of the two terms of visual_slider_loss.
        cond = self.prompts.batch(captions)
        total = torch.zeros((), device=noise.device)
        for x, sign in zip(latents, (-1.0, 1.0)):
            with per_sample_scale(self.unet, sign * levels):
                pred = self.predict(model, x, t, cond, time_ids)
                loss = denoising_loss(pred, noise).mean()
                backward(loss)
            total += loss.detach()
        return total

    def compute_loss(self, model: nn.Module, generator: torch.Generator, backward: Backward) -> Tensor:
        """One iteration of the visual-slider objective; calls `backward(loss)` and returns the loss."""
        return self.batch_loss(model, self.draw(generator), backward)

    # --- resume and metadata ----------------------------------------------------------------------
    def settings_key(self) -> dict[str, Any]:
        """The task settings as they take effect (the resolution resolved against the corpus)."""
        return {**self.config.task_key(), "resolution": self.resolution}

    def state_dict(self) -> dict:
        """The epoch order and position (the generator and weights are the loop's), and our settings."""
        return {"order": list(self.order), "position": self.position, "config": self.settings_key(),
                "pairs": len(self.levels), "corpus": self.corpus_digest}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`; a checkpoint of other task settings or another corpus is refused."""
        # Checkpoints written before cropping existed carry no `crop_scale`: they trained without a crop.
        saved = {"crop_scale": None, **state["config"]} if isinstance(state.get("config"), dict) else None
        refuse_other_settings("checkpoint", "visual settings", saved, self.settings_key())
        if state.get("pairs") != len(self.levels):
            raise ValueError(
                f"--resume: checkpoint was written for {state.get('pairs')} pairs, the corpus has {len(self.levels)}"
            )
        if state.get("corpus") != self.corpus_digest:
            raise ValueError(
                f"--resume: the corpus {self.corpus.root} changed since the checkpoint (other pairs, "
                "levels, captions or images)"
            )
        self.order = [int(i) for i in state["order"]]
        self.position = int(state["position"])

    def metadata_fields(self) -> dict[str, Any]:
        """Kind, concept, corpus summary and recommendations for the slider file header."""
        limit = max(SCALE_LIMIT, float(self.levels.max()))
        # A corpus mined from a GAN's style space makes a transferred ("gan") slider (DESIGN §4).
        from_gan = self.corpus.info.provenance.get("source") == "stylegan3"
        return {
            "kind": "gan" if from_gan else "visual",
            "concept": self.config.concept or self.corpus.info.name,
            "corpus": corpus_summary(self.corpus, self.resolution),
            "start_noise": START_NOISE,
            "scale_range": (-limit, limit),
            "extra": {
                **self.settings_key(),
                # The crop window as trained, in pixels (crop_scale rounded to what the UNet accepts).
                "crop_size": [s * self.vae_scale for s in self.window] if self.cropping else None,
                "rank": self.config.train.rank,
                "alpha": self.config.train.alpha,
            },
        }


def train_visual_slider(pipe, corpus: Corpus, config: VisualSliderConfig, out: str | Path, *, base_model: str,
                        resume: bool = False, on_step_end=None, show_progress: bool = True) -> Path:  # fmt: skip
    """Train a visual slider on `pipe`'s UNet from `corpus` and save it to `out`; returns the path."""
    task = VisualSliderTask(pipe, corpus, config, progress=show_progress)
    free_text_encoders(pipe)  # latents and prompts are cached: the VAE and text encoders can leave the GPU
    return train_slider(task, config.train, out, base_model=base_model, resume=resume,
                        on_step_end=on_step_end, show_progress=show_progress)  # fmt: skip
