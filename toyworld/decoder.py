"""Stage 1b: fine-tune the toy VAE's decoder with its encoder frozen.

The latent space (encoder, `latents_mean`, `latents_std`) stays exactly as the UNet was trained on, so this
stage can run while the UNet trains; only the pictures made from latents get sharper (small features such
as the eye whites and the mouth line are what a short VAE run renders worst). Decoding a posterior sample
rather than its mean keeps the decoder tolerant of the imperfect latents a diffusion model produces.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm import tqdm

from toyworld.training import (
    StageTimer,
    device_report,
    load_checkpoint,
    optimizer_step,
    prefetch,
    save_checkpoint,
    warmup_cosine,
    world_batch,
)
from toyworld.vae import posterior_sample


def decoder_parameters(vae: AutoencoderKL) -> list[torch.nn.Parameter]:
    """The parameters this stage trains: the decoder and the post-quantisation convolution."""
    params = list(vae.decoder.parameters())
    if vae.post_quant_conv is not None:
        params += list(vae.post_quant_conv.parameters())
    return params


def final_vae_path(work: Path) -> Path:
    """The VAE the pipeline ships: the fine-tuned decoder when that stage has finished, else stage 1's."""
    return work / "vae_decoder" if (work / "decoder_done.json").exists() else work / "vae"


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
    if (work / "decoder_done.json").exists():
        return out
    device = torch.device(device)
    vae = AutoencoderKL.from_pretrained(work / "vae").to(device)  # before the optimiser: its state follows
    vae.requires_grad_(False)
    params = decoder_parameters(vae)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ckpt_path = work / "decoder_ckpt.pt"
    state = load_checkpoint(ckpt_path)
    start, timer = 0, StageTimer()
    if state is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start, timer = int(state["step"]), StageTimer(float(state["wall_s"]))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, steps, 30), last_epoch=start - 1
    )

    vae.eval()  # no dropout or batch statistics anywhere; eval keeps the frozen encoder exactly fixed
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="decoder", mininterval=10)
    batches = prefetch(
        lambda s: world_batch(seed + 11, s, batch_size)[0], range(start, steps), enabled=device.type == "cuda"
    )
    for step, images in zip(bar, batches):
        images = images.to(device)
        with torch.no_grad():
            z = posterior_sample(vae.encode(images).latent_dist, torch.Generator().manual_seed(seed + step))
        recon = vae.decode(z).sample
        mse = F.mse_loss(recon, images)
        loss = F.l1_loss(recon, images) + mse
        optimizer_step(loss, opt, sched, clip=params)
        bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{10 * torch.log10(4.0 / mse.detach()).item():.1f}")
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            state = {
                "model": vae.state_dict(),
                "opt": opt.state_dict(),
                "step": step + 1,
                "wall_s": timer.total_s,
            }
            save_checkpoint(ckpt_path, state)

    with torch.no_grad():
        images, _ = world_batch(seed + 104729, 0, 64)
        images = images.to(device)
        recon = vae.decode(vae.encode(images).latent_dist.mean).sample
        psnr = 10 * torch.log10(4.0 / F.mse_loss(recon, images)).item()
    report = {
        "steps": steps,
        "batch_size": batch_size,
        "wall_s": round(timer.total_s, 1),
        "heldout_psnr_db": psnr,
        **device_report(device),
    }
    vae.to("cpu").save_pretrained(out)  # the saved folder never depends on the training device
    (work / "decoder_done.json").write_text(json.dumps(report, indent=2))
    return out
