"""Stage 1b: fine-tune the toy VAE's decoder with its encoder frozen.

The latent space (encoder, `latents_mean`, `latents_std`) stays exactly as the UNet was trained on, so this
stage can run while the UNet trains; only the pictures made from latents get sharper (small features such
as the eye whites and the mouth line are what a short VAE run renders worst). Decoding a posterior sample
rather than its mean keeps the decoder tolerant of the imperfect latents a diffusion model produces.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from toyworld.stage import Stage, stage_done, train_stage, warmup_cosine_factor, write_done
from toyworld.training import world_batch
from toyworld.vae import posterior_sample, psnr_db


def decoder_parameters(vae: AutoencoderKL) -> list[torch.nn.Parameter]:
    """The parameters this stage trains: the decoder and the post-quantisation convolution."""
    params = list(vae.decoder.parameters())
    if vae.post_quant_conv is not None:
        params += list(vae.post_quant_conv.parameters())
    return params


def final_vae_path(work: Path) -> Path:
    """The VAE the pipeline ships: the fine-tuned decoder when that stage has finished, else stage 1's."""
    return work / "vae_decoder" if stage_done(work, "decoder") else work / "vae"


def train_decoder(
    work: Path,
    steps: int = 500,
    batch_size: int = 16,
    seed: int = 0,
    lr: float = 5e-4,
    ckpt_every: int = 50,
    device: torch.device | str = "cpu",
) -> Path:
    """Fine-tune (or resume) the decoder of work/vae; returns the saved folder work/vae_decoder."""
    out = work / "vae_decoder"
    if stage_done(work, "decoder"):
        return out
    device = torch.device(device)
    vae = AutoencoderKL.from_pretrained(work / "vae").to(device)  # before the optimiser: its state follows
    vae.requires_grad_(False)
    params = decoder_parameters(vae)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    stage = Stage("decoder", work / "decoder_ckpt.pt", steps, vae, opt, warmup_cosine_factor(steps, 30), device,
                  clip=True, every_steps=ckpt_every)  # fmt: skip
    vae.eval()  # no dropout or batch statistics anywhere; eval keeps the frozen encoder exactly fixed
    wall_s = train_stage(
        stage, lambda s: world_batch(seed + 11, s, batch_size)[0], partial(decoder_loss, vae, seed)
    )
    with torch.no_grad():
        images, _ = world_batch(seed + 104729, 0, 64)
        images = images.to(device)
        psnr = psnr_db(F.mse_loss(vae.decode(vae.encode(images).latent_dist.mean).sample, images))
    vae.to("cpu").save_pretrained(out)  # the saved folder never depends on the training device
    report = {"steps": steps, "batch_size": batch_size, "wall_s": round(wall_s, 1), "heldout_psnr_db": psnr}
    write_done(work, "decoder", report, device)
    return out


def decoder_loss(vae: AutoencoderKL, seed: int, step: int, images: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """L1 + MSE reconstruction of a posterior sample (seeded by the step) through the frozen encoder."""
    images = images.to(vae.device)
    with torch.no_grad():
        z = posterior_sample(vae.encode(images).latent_dist, torch.Generator().manual_seed(seed + step))
    recon = vae.decode(z).sample
    mse = F.mse_loss(recon, images)
    return F.l1_loss(recon, images) + mse, {"psnr": psnr_db(mse.detach())}
