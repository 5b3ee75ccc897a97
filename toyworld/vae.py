"""Stage 1 of the toy SDXL: a small AutoencoderKL (x4 downsampling, latents [B, 4, 16, 16]) fitted to the world.

The latent channels of a weakly KL-regularised VAE are far from unit scale (means near -2.5, stds 0.8-2),
so the saved config carries per-channel `latents_mean` / `latents_std` and `scaling_factor` 1.0: the
SDXL pipeline then decodes `z * std + mean`, and everything that encodes must apply `encode_latents`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from toyworld.stage import Stage, stage_done, train_stage, warmup_cosine_factor, write_done
from toyworld.training import world_batch

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=1.0,
)
KL_WEIGHT = 1e-6


def build_vae() -> AutoencoderKL:
    """A freshly initialised toy VAE."""
    return AutoencoderKL(**VAE_CONFIG)


def posterior_sample(dist, generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample of a diagonal Gaussian posterior, its noise drawn on the CPU and moved to the posterior's device.

    Same numbers as `dist.sample(generator)` on the CPU; on a GPU the draw still comes from the CPU
    generator (or CPU global RNG), so a GPU run is seeded exactly like a CPU one.
    """
    noise = torch.randn(dist.mean.shape, generator=generator, dtype=dist.mean.dtype)
    return dist.mean + dist.std * noise.to(dist.mean.device)


def encode_latents(vae: AutoencoderKL, images: torch.Tensor, sample: bool = False) -> torch.Tensor:
    """Images [B, 3, 64, 64] in [-1, 1] -> normalised latents [B, 4, 16, 16] (the UNet's space)."""
    dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    z = posterior_sample(dist) if sample else dist.mean
    cfg = vae.config
    if cfg.latents_mean is not None:
        mean = torch.tensor(cfg.latents_mean, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
        std = torch.tensor(cfg.latents_std, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
        z = (z - mean) / std
    return z * cfg.scaling_factor


def decode_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """Inverse of `encode_latents`: normalised latents -> images in [-1, 1]."""
    cfg = vae.config
    z = latents / cfg.scaling_factor
    if cfg.latents_mean is not None:
        mean = torch.tensor(cfg.latents_mean, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
        std = torch.tensor(cfg.latents_std, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
        z = z * std + mean
    return vae.decode(z.to(vae.dtype)).sample


@torch.no_grad()
def latent_statistics(vae: AutoencoderKL, seed: int, n_batches: int = 16, batch_size: int = 64) -> tuple:
    """Per-channel mean and std of the posterior means over fresh world images."""
    zs = []
    for i in range(n_batches):
        images, _ = world_batch(seed + 7919, i, batch_size)
        zs.append(vae.encode(images.to(vae.device)).latent_dist.mean)
    z = torch.cat(zs)  # [N, 4, 16, 16]
    return z.mean(dim=(0, 2, 3)).tolist(), z.std(dim=(0, 2, 3)).tolist()


def vae_loss(vae: AutoencoderKL, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + MSE reconstruction of a posterior sample, plus a tiny KL term; returns (loss, {"psnr": dB})."""
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior_sample(posterior)).sample
    mse = F.mse_loss(recon, images)
    loss = F.l1_loss(recon, images) + mse + KL_WEIGHT * posterior.kl().mean()
    return loss, {"psnr": psnr_db(mse.detach())}


def psnr_db(mse: torch.Tensor) -> float:
    """Peak signal-to-noise ratio of images in [-1, 1] (a range 2 wide) with mean squared error `mse`."""
    return 10 * torch.log10(4.0 / mse).item()


def train_vae(
    work: Path,
    steps: int = 500,
    batch_size: int = 32,
    seed: int = 0,
    lr: float = 1e-3,
    ckpt_every: int = 50,
    stats_images: int = 1024,
    device: torch.device | str = "cpu",
) -> Path:
    """Train (or resume) the toy VAE under `work`; returns the saved diffusers folder `work/vae`."""
    out = work / "vae"
    if stage_done(work, "vae"):
        return out
    device = torch.device(device)
    torch.manual_seed(seed)
    vae = build_vae().to(device)  # on the device before the optimiser, so its state lands there too
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    stage = Stage("vae", work / "vae_ckpt.pt", steps, vae, opt, warmup_cosine_factor(steps, 50), device,
                  clip=True, every_steps=ckpt_every)  # fmt: skip
    vae.train()
    wall_s = train_stage(
        stage,
        lambda s: world_batch(seed, s, batch_size)[0],
        lambda s, images: vae_loss(vae, images.to(device)),
    )
    vae.eval()
    psnr = fix_latent_statistics(vae, seed, stats_images)
    vae.to("cpu").save_pretrained(out)  # the saved folder never depends on the training device
    report = {"steps": steps, "batch_size": batch_size, "wall_s": round(wall_s, 1), "heldout_psnr_db": psnr}
    write_done(work, "vae", report, device)
    return out


@torch.no_grad()
def fix_latent_statistics(vae: AutoencoderKL, seed: int, stats_images: int) -> float:
    """Store the latents' per-channel mean and std in the VAE's config; returns its held-out PSNR (dB)."""
    mean, std = latent_statistics(
        vae, seed, n_batches=max(1, stats_images // 64), batch_size=min(64, stats_images)
    )
    vae.register_to_config(latents_mean=mean, latents_std=std)
    images, _ = world_batch(seed + 104729, 0, min(64, stats_images))
    images = images.to(vae.device)
    recon = decode_latents(vae, encode_latents(vae, images))
    return psnr_db(F.mse_loss(recon, images))
