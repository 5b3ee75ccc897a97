"""Stage 2 of the toy SDXL: train the text_time UNet on the world's captions, save a diffusers folder.

Epsilon prediction on the scaled_linear 1000-step schedule; the frozen random text encoders' embeddings of
all 1,024 possible captions are computed once; 10% of samples get zeroed embeddings (the pipeline's
`force_zeros_for_empty_prompt` unconditional); the saved UNet is the EMA of the trained one.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from tqdm import tqdm

from toyworld.sdxl_parts import (
    SCHEDULER_CONFIG,
    assemble_pipeline,
    build_text_encoders,
    build_unet,
    encode_captions,
    time_ids,
)
from toyworld.stage import Stage, stage_done, train_stage, warmup_cosine_factor, write_done
from toyworld.training import EMA, load_checkpoint, save_checkpoint, world_batch
from toyworld.vae import encode_latents
from toyworld.world import CAPTIONED, all_captions, caption_bins

CAPTION_DROP_P = 0.3  # each phrase left out of a caption
UNCOND_P = 0.1  # whole caption replaced by zero embeddings
EMA_DECAY = 0.999


def caption_index(bins: dict[str, int]) -> int:
    """Index into `all_captions()` of the caption that mentions exactly `bins` (4 codes per attribute)."""
    return sum(bins.get(name, 3) * 4**i for i, name in enumerate(CAPTIONED))


@torch.no_grad()
def build_latent_dataset(work: Path, vae: AutoencoderKL, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Encode `n` world images once (cached in work/unet_data.pt): latents [n, 4, 16, 16] and caption bins."""
    path = work / "unet_data.pt"
    data = load_checkpoint(path)
    if data is not None and len(data["latents"]) == n:
        return data
    latents, bins = [], []
    for i in tqdm(range(0, n, 256), desc="encode world", mininterval=10):
        images, attrs = world_batch(seed + 1, i // 256, min(256, n - i))
        latents.append(encode_latents(vae, images).half().cpu())  # the cache lives on the CPU
        bins += [[caption_bins(a)[name] for name in CAPTIONED] for a in attrs]
    data = {"latents": torch.cat(latents), "bins": torch.tensor(bins, dtype=torch.int64)}
    save_checkpoint(path, data)
    return data


def sample_caption_ids(rng: np.random.Generator, bins: torch.Tensor) -> torch.Tensor:
    """Per sample, drop each phrase with CAPTION_DROP_P, and return caption indices [B]."""
    keep = rng.random(bins.shape) >= CAPTION_DROP_P
    codes = np.where(keep, bins.numpy(), 3)
    return torch.from_numpy((codes * 4 ** np.arange(len(CAPTIONED))).sum(axis=1))


def train_unet(
    work: Path,
    steps: int = 4800,
    batch_size: int = 32,
    seed: int = 0,
    lr: float = 6e-4,
    n_images: int = 32768,
    ckpt_every: int = 50,
    device: torch.device | str = "cpu",
) -> Path:
    """Train (or resume) the toy SDXL UNet under `work`; returns the saved pipeline folder `work/sdxl`."""
    out = work / "sdxl"
    if stage_done(work, "unet"):
        return out
    device = torch.device(device)
    pipe, captions = prepare_pipeline(work, seed, device)
    data = prepare_latents(work, pipe.vae, n_images, seed, device)
    unet = pipe.unet.to(device)  # before the optimiser and EMA: their state must live where the weights do
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-4)
    ema = EMA(unet, EMA_DECAY)
    stage = Stage("unet", work / "unet_ckpt.pt", steps, unet, opt, warmup_cosine_factor(steps, 100), device,
                  ema=ema, clip=True, every_steps=ckpt_every)  # fmt: skip
    noise_scheduler = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "timestep_spacing"})
    loss = partial(denoising_loss, unet, noise_scheduler, captions, time_ids(batch_size).to(device))
    unet.train()
    wall_s = train_stage(stage, partial(noised_batch, data, seed, batch_size), loss)
    unet.load_state_dict(ema.state_dict())
    unet.eval().to("cpu")  # the saved folder never depends on the training device
    pipe.save_pretrained(out, safe_serialization=True)
    write_done(work, "unet", {"steps": steps, "batch_size": batch_size, "wall_s": round(wall_s, 1)}, device)
    return out


def prepare_pipeline(work: Path, seed: int, device: torch.device) -> tuple:
    """The pipeline to train (stage 1's VAE, seeded text encoders and UNet) and every caption's embeddings.

    The caption embeddings ([1024, 32, 128], [1024, 64]) are made once on the CPU (`encode_captions` runs
    the encoders there) and moved to `device`.
    """
    vae = AutoencoderKL.from_pretrained(work / "vae").eval().requires_grad_(False)
    tokenizer, encoder_1, encoder_2 = build_text_encoders(seed)
    pipe = assemble_pipeline(vae, build_unet(seed), tokenizer, encoder_1, encoder_2)
    embeds, pooled = encode_captions(pipe, all_captions())
    return pipe, (embeds.to(device), pooled.to(device))


def prepare_latents(work: Path, vae: AutoencoderKL, n: int, seed: int, device: torch.device) -> dict:
    """`build_latent_dataset`, encoded on `device`; the VAE goes back to the CPU afterwards."""
    vae.to(device)
    data = build_latent_dataset(work, vae, n, seed)
    vae.to("cpu")
    return data


def noised_batch(data: dict[str, torch.Tensor], seed: int, batch_size: int, step: int) -> tuple:
    """The CPU draws of `step`: clean latents, caption ids, the unconditional mask, noise and timesteps."""
    # Noise and timesteps come from a CPU generator, so every device sees the same draws.
    rng = np.random.default_rng([seed, 2, step])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    index = torch.from_numpy(rng.integers(0, len(data["latents"]), batch_size))
    x0 = data["latents"][index].float()
    cap = sample_caption_ids(rng, data["bins"][index])
    uncond = torch.from_numpy(rng.random(batch_size) < UNCOND_P).view(-1, 1, 1)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, 1000, (batch_size,), generator=gen)
    return x0, cap, uncond, noise, t


def denoising_loss(
    unet, noise_scheduler, captions: tuple, ids: torch.Tensor, step: int, batch: tuple
) -> tuple:
    """Epsilon-prediction MSE of one noised batch; unconditional samples get zero embeddings."""
    x0, cap, uncond, noise, t = (x.to(ids.device) for x in batch)
    embeds, pooled = captions
    e = torch.where(uncond, 0.0, embeds[cap])
    p = torch.where(uncond.view(-1, 1), 0.0, pooled[cap])
    xt = noise_scheduler.add_noise(x0, noise, t)
    pred = unet(xt, t, encoder_hidden_states=e, added_cond_kwargs={"text_embeds": p, "time_ids": ids}).sample
    return F.mse_loss(pred, noise), {}
