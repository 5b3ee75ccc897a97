"""Stage 3: train the attribute probe with VAE round-trip augmentation and report held-out R² per attribute."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from toyworld.decoder import final_vae_path
from toyworld.probe import ProbeConfig, ProbeNet, save_probe
from toyworld.stage import Stage, stage_done, train_stage, warmup_cosine_factor, write_done
from toyworld.training import world_batch
from toyworld.vae import decode_latents, encode_latents
from toyworld.world import ATTRIBUTE_NAMES, normalize


@torch.no_grad()
def round_trip(vae: AutoencoderKL, images: torch.Tensor, sample: bool = True) -> torch.Tensor:
    """Encode and decode through the VAE, clamped to [-1, 1]; a posterior sample adds a little variety."""
    return decode_latents(vae, encode_latents(vae, images, sample=sample)).clamp(-1, 1)


def targets(attrs: list) -> torch.Tensor:
    """Normalised attributes [B, K] of a batch."""
    return torch.from_numpy(normalize(np.stack([a.to_array() for a in attrs])))


def r_squared(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column."""
    ss_res = ((pred - true) ** 2).sum(axis=0)
    ss_tot = ((true - true.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - ss_res / ss_tot


@torch.no_grad()
def evaluate(net: ProbeNet, vae: AutoencoderKL, seed: int, n_batches: int = 8, batch_size: int = 128) -> dict:
    """Held-out R² per attribute on clean renders, VAE round trips, and round trips of a posterior sample."""
    # The posterior-mean round trip is what decoded model outputs look like; the sampled one is the
    # (noisier) training augmentation.
    net.eval()
    preds: dict[str, list] = {"clean": [], "vae_round_trip": [], "vae_round_trip_sampled": []}
    trues = []
    device = next(net.parameters()).device
    for i in range(n_batches):
        images, attrs = world_batch(seed + 31337, i, batch_size)
        images = images.to(device)
        trues.append(targets(attrs).numpy())
        preds["clean"].append(net(images).cpu().numpy())
        preds["vae_round_trip"].append(net(round_trip(vae, images, sample=False)).cpu().numpy())
        preds["vae_round_trip_sampled"].append(net(round_trip(vae, images)).cpu().numpy())
    true = np.concatenate(trues)
    out = {}
    for label, batches in preds.items():
        r2 = r_squared(np.concatenate(batches), true)
        out[label] = {name: round(float(v), 4) for name, v in zip(ATTRIBUTE_NAMES, r2)}
    net.train()
    return out


def train_probe(
    work: Path,
    steps: int = 800,
    batch_size: int = 64,
    seed: int = 0,
    lr: float = 2e-3,
    ckpt_every: int = 50,
    eval_batches: int = 8,
    device: torch.device | str = "cpu",
) -> Path:
    """Train (or resume) the probe under `work`; writes work/probe/{probe.safetensors, probe.json}."""
    out = work / "probe"
    if stage_done(work, "probe"):
        return out
    vae_path = final_vae_path(work)  # round trips through the VAE that ships
    device = torch.device(device)
    vae = AutoencoderKL.from_pretrained(vae_path).eval().requires_grad_(False).to(device)
    config = ProbeConfig()
    torch.manual_seed(seed)
    net = ProbeNet(config).to(device)  # before the optimiser, so its state lands on the device too
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    stage = Stage("probe", work / "probe_ckpt.pt", steps, net, opt, warmup_cosine_factor(steps, 30), device,
                  every_steps=ckpt_every)  # fmt: skip
    net.train()
    wall_s = train_stage(stage, lambda s: world_batch(seed + 3, s, batch_size), partial(probe_loss, net, vae))
    metrics = {
        "heldout_r2": evaluate(net, vae, seed, n_batches=eval_batches),
        "steps": steps,
        "batch_size": batch_size,
        "vae": vae_path.name,
        "wall_s": round(wall_s, 1),
    }
    save_probe(out, net.eval().to("cpu"), config, metrics)
    write_done(work, "probe", metrics, device)
    return out


def probe_loss(net: ProbeNet, vae: AutoencoderKL, step: int, batch: tuple) -> tuple[torch.Tensor, dict]:
    """MSE of the normalised attributes; the second half of the batch is seen through a VAE round trip."""
    images, attrs = batch
    device = next(net.parameters()).device
    images = images.to(device)
    half = len(images) // 2
    images = torch.cat([images[:half], round_trip(vae, images[half:])])
    return F.mse_loss(net(images), targets(attrs).to(device)), {}
