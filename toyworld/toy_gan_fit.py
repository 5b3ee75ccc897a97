"""Fit the toy StyleGAN3 to the world by regression: z -> attributes -> `world.render`, weighted L1 + MSE.

Resumable: a checkpoint (weights, EMA, optimiser, step, wall time) is written atomically every few minutes
under the work folder; re-running continues from it, and every batch is a pure function of (seed, step).
The training forward (`synthesis_trainable`) computes the same numbers as `G.synthesis` with
out-of-place ops (the bridge's fast CPU path works in place for inference and cannot be differentiated)
and one batched convolution per layer (modulate the input, demodulate the output: StyleGAN2 sec. 2.2).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stylegan_bridge import Generator, export_generator
from stylegan_bridge.ops import upfirdn2d
from stylegan_bridge.synthesis import SynthesisLayer
from toyworld.stage import Stage, train_stage
from toyworld.toy_gan import (
    TOY_GAN_CONFIG,
    apply_masks,
    attributes_from_z,
    init_eye_path,
    orient_eye_channel,
    set_w_avg,
    structure_masks,
)
from toyworld.training import EMA, load_checkpoint, to_tensor, to_uint8
from toyworld.world import (
    EYE_ROW,
    FACE_CENTER,
    MOUTH_HALF_WIDTH,
    MOUTH_LINE_PX,
    MOUTH_ROW,
    FaceAttributes,
    eye_offset,
    render_batch,
)

CHECKPOINT = "toy_gan.pt"


@dataclass(frozen=True)
class FitConfig:
    """Settings of one fitting run (seeded); `minutes` caps this run's wall time, `steps` the total."""

    work: Path
    steps: int = 4000
    batch: int = 8
    lr: float = 3e-3
    decay_from: float = 0.7  # share of the steps at full learning rate before the cosine decay
    eye_weight: float = 12.0  # loss weight inside the eyes (1 elsewhere)
    mouth_weight: float = 4.0
    ema: float = 0.995
    seed: int = 0
    minutes: float | None = None
    checkpoint_every_s: float = 180.0
    sample_every: int = 100

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "sample_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


# ---------------------------------------------------------------------------------------------------------
# Differentiable forward.


def _modulated_conv(layer: SynthesisLayer, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """`synthesis.modulated_conv2d` as conv(x * s) * demod: one batched convolution (StyleGAN2 sec. 2.2)."""
    b, i = x.shape[:2]
    weight = layer.weight
    if not layer.is_torgb:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    gain = layer.magnitude_ema.rsqrt()
    y = F.conv2d(x * (styles * gain).reshape(b, i, 1, 1), weight, padding=layer.conv_kernel - 1)
    if not layer.is_torgb:
        demod = (weight.unsqueeze(0) * styles.reshape(b, 1, i, 1, 1)).square().sum(dim=[2, 3, 4])
        y = y * (demod + 1e-8).rsqrt().reshape(b, -1, 1, 1)
    return y


def _filtered_lrelu(layer: SynthesisLayer, x: torch.Tensor) -> torch.Tensor:
    """`ops.filtered_lrelu` with out-of-place steps, so autograd can go through it."""
    x = x + layer.bias.reshape(1, -1, 1, 1)
    x = upfirdn2d(x, layer.up_filter, up=layer.up, padding=layer.padding, gain=layer.up**2)
    if not layer.is_torgb:
        x = F.leaky_relu(x, 0.2) * math.sqrt(2)
    if layer.conv_clamp is not None:
        x = x.clamp(-layer.conv_clamp, layer.conv_clamp)
    return upfirdn2d(x, layer.down_filter, down=layer.down)


def synthesis_trainable(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    """Same images as `G.synthesis(ws)` (up to float rounding), differentiable and faster to train."""
    assert ws.ndim == 3 and ws.shape[1:] == (G.num_ws, G.w_dim), tuple(ws.shape)
    ws = ws.unbind(dim=1)
    x = G.synthesis.input(ws[0])
    for layer, w in zip(G.synthesis.layers, ws[1:]):
        styles = layer.affine(w)
        if layer.is_torgb:
            styles = styles * (1 / math.sqrt(layer.in_channels * layer.conv_kernel**2))
        x = _filtered_lrelu(layer, _modulated_conv(layer, x, styles))
    return x * G.synthesis.output_scale


# ---------------------------------------------------------------------------------------------------------
# Data and loss.


def world_targets(seed: int, step: int, batch: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """(z [B, z_dim], attributes [B, K], renders [B, 3, 64, 64] in [-1, 1]) for (seed, step)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    z = torch.randn([batch, TOY_GAN_CONFIG.z_dim], generator=generator)
    attrs = attributes_from_z(z)
    images = render_batch([FaceAttributes.from_array(a) for a in attrs])
    return z, attrs, to_tensor(images)


def region_weights(attrs: np.ndarray, eye_weight: float, mouth_weight: float, size: int = 64) -> torch.Tensor:
    """Per-pixel loss weights [B, 1, size, size]: heavier on each face's eyes and mouth (from `world.render`)."""
    eye, width, xs, ys = attrs[:, 0], attrs[:, 2], attrs[:, 5], attrs[:, 6]
    grid = np.arange(size) + 0.5
    px, py = grid[None, None, :], grid[None, :, None]
    cx, cy = (FACE_CENTER[0] + xs)[:, None, None], (FACE_CENTER[1] + ys)[:, None, None]
    dx = eye_offset(width)[:, None, None]
    r = (eye + 1.5)[:, None, None]
    weights = np.ones((len(attrs), size, size))
    for side in (-1.0, 1.0):
        inside = (px - (cx + side * dx)) ** 2 + (py - (cy + EYE_ROW)) ** 2 <= r**2
        weights = np.where(inside, eye_weight, weights)
    mouth_half = MOUTH_HALF_WIDTH * width[:, None, None] + MOUTH_LINE_PX
    mouth = (np.abs(px - cx) <= mouth_half) & (np.abs(py - (cy + MOUTH_ROW)) <= 7.0)
    weights = np.maximum(weights, np.where(mouth, mouth_weight, 1.0))
    return torch.from_numpy(weights).float()[:, None]


def fit_loss(images: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted L1 + MSE, normalised by the total weight."""
    diff = images - targets
    per_pixel = (diff.abs() + diff.square()).mean(dim=1, keepdim=True)
    return (per_pixel * weights).sum() / weights.sum()


# ---------------------------------------------------------------------------------------------------------
# The loop.


def _lr_factor(step: int, config: FitConfig) -> float:
    warm = min(1.0, (step + 1) / 50)
    start = config.decay_from * config.steps
    if step < start:
        return warm
    progress = min(1.0, (step - start) / max(1.0, config.steps - start))
    return warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def fit(config: FitConfig, device: torch.device | str = "cpu") -> Path:
    """Train (or resume) under `config.work` on `device`; returns the checkpoint path."""
    config.work.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    G, masks = init_generator(config.seed, device)
    opt = torch.optim.Adam(G.parameters(), lr=config.lr, betas=(0.9, 0.99))
    ema = EMA(G, config.ema)
    samples = config.work / "samples.png"

    def sample(done: int) -> None:
        if done % config.sample_every == 0:
            save_samples(G, ema, samples)

    stage = Stage("gan", config.work / CHECKPOINT, config.steps, G, opt, partial(_lr_factor, config=config),
                  device, ema=ema, constrain=partial(apply_masks, G, masks), on_step=sample, every_steps=None,
                  every_s=config.checkpoint_every_s, minutes=config.minutes, log=config.work / "log.txt",
                  extra={"config": {k: str(v) for k, v in asdict(config).items()}})  # fmt: skip
    G.train()
    train_stage(
        stage, lambda step: world_targets(config.seed, step, config.batch), partial(_fit_loss, G, config)
    )
    save_samples(G, ema, samples)
    return stage.checkpoint


def init_generator(seed: int, device: torch.device) -> tuple[Generator, dict[str, torch.Tensor]]:
    """The seeded starting generator (made on the CPU: the same start on every device) and its masks."""
    torch.manual_seed(seed)
    G = Generator(TOY_GAN_CONFIG)
    masks = structure_masks(G)
    apply_masks(G, masks)
    init_eye_path(G)
    # On the device before the optimiser and EMA, so their state lives where the weights do.
    return G.to(device), {name: mask.to(device) for name, mask in masks.items()}


def _fit_loss(G: Generator, config: FitConfig, step: int, batch: tuple) -> tuple[torch.Tensor, dict]:
    """`fit_loss` of one batch of world targets, and the mean L1 error inside the eyes."""
    z, attrs, targets = batch
    device = next(G.parameters()).device
    weights = region_weights(attrs, config.eye_weight, config.mouth_weight).to(device)
    z, targets = z.to(device), targets.to(device)
    images = synthesis_trainable(G, G.mapping(z, None))
    with torch.no_grad():
        eye = weights == config.eye_weight
        eye_err = float((images - targets).abs().mean(dim=1, keepdim=True)[eye].mean())
    return fit_loss(images, targets, weights), {"eye_l1": eye_err}


@torch.no_grad()
def save_samples(G: Generator, ema: EMA, path: Path, n: int = 8) -> None:
    """PNG: rows = world render, current weights, EMA weights, for the same fixed latents."""
    z, _, targets = world_targets(seed=12345, step=0, batch=n)
    z = z.to(next(G.parameters()).device)
    current = G.synthesis(G.mapping(z, None))
    averaged = Generator(TOY_GAN_CONFIG).to(z.device)
    averaged.load_state_dict(ema.state_dict())
    rows = [targets, current, averaged.synthesis(averaged.mapping(z, None))]
    grid = np.concatenate([np.concatenate(list(to_uint8(r)), axis=1) for r in rows], axis=0)
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(tmp)
    os.replace(tmp, path)


def finalize(work: Path, out: Path) -> Path:
    """EMA weights of the checkpoint -> +style = bigger eyes, w_avg set -> `out` (.safetensors, atomic)."""
    state = load_checkpoint(work / CHECKPOINT)
    if state is None:
        raise FileNotFoundError(f"no toy GAN checkpoint at {work / CHECKPOINT}: run the fit first")
    G = Generator(TOY_GAN_CONFIG)
    G.load_state_dict(state["ema"])
    G.eval().requires_grad_(False)
    orient_eye_channel(G)
    set_w_avg(G)
    return export_generator(G, out)


def fit_report(work: Path, last: int = 100) -> dict:
    """Steps, wall time and mean loss / eye L1 of the last `last` steps, read from work/log.txt."""
    lines = [json.loads(line) for line in (work / "log.txt").read_text().splitlines()]
    if not lines:
        raise ValueError(f"{work / 'log.txt'}: no steps logged")
    tail = lines[-last:]
    return {
        "steps": lines[-1]["step"],
        "wall_s": lines[-1]["wall_s"],
        "loss": round(float(np.mean([x["loss"] for x in tail])), 5),
        "eye_l1": round(float(np.mean([x["eye_l1"] for x in tail])), 5),
    }
