"""`toyworld build`: train the toy VAE (then its decoder), the toy SDXL UNet and the probe; measure; ship.

Every stage trains under a work folder with checkpoints, so re-running resumes where it stopped and
finished stages are skipped. `ship` copies the results into the output folder (fp16 UNet and VAE, fp32
text encoders: transformers would otherwise load fp16 encoders as fp16) with `build.json` (settings,
wall times, metrics) and `samples.png`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from toyworld.stage import stage_done, write_done
from toyworld.toy_gan import TOY_GAN_FILE
from toyworld.training import device_report

STAGES = ("vae", "decoder", "unet", "probe", "gan", "eval", "ship")


@dataclass(frozen=True)
class BuildConfig:
    """What `toyworld build` runs and where; the defaults take about 48 min on two CPU cores."""

    out: Path
    work: Path
    stages: tuple[str, ...] = STAGES
    seed: int = 0
    vae_steps: int = 500
    decoder_steps: int = 500
    unet_steps: int = 4800
    probe_steps: int = 800
    gan_steps: int = 3600
    unet_images: int = 16384
    eval_samples: int = 32
    eval_guidance: float = 5.0  # SDXL's default guidance_scale
    threads: int | None = None
    device: str = "auto"  # "auto": cuda when available, else cpu

    def __post_init__(self) -> None:
        self.resolved_device()  # a bad or unavailable device fails here, before any work
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown toyworld stage(s) {unknown}; choose from {list(STAGES)} or 'all'")
        for name in (
            "vae_steps",
            "decoder_steps",
            "unet_steps",
            "probe_steps",
            "gan_steps",
            "unet_images",
            "eval_samples",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def resolved_device(self) -> torch.device:
        """The torch device the trainers run on; ValueError naming --device when it is bad or unavailable."""
        from stylegan_bridge.loading import resolve_device

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return resolve_device(self.device, option="--device")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def load_trained_pipeline(work: Path):
    """The trained pipeline from `work`, with the VAE that ships (fine-tuned decoder when there is one)."""
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline

    from toyworld.decoder import final_vae_path

    vae = AutoencoderKL.from_pretrained(final_vae_path(work))
    return StableDiffusionXLPipeline.from_pretrained(work / "sdxl", vae=vae)


def run_eval(config: BuildConfig, device: torch.device | None = None) -> dict:
    """Measure caption following of the trained pipeline with the trained probe; writes work/eval.json."""
    from toyworld.evaluate import caption_following, save_grid
    from toyworld.probe import load_probe

    start = time.monotonic()
    pipe = load_trained_pipeline(config.work)
    probe = load_probe(config.work / "probe")
    report, images = caption_following(
        pipe,
        probe,
        n=config.eval_samples,
        guidance=config.eval_guidance,
        seed=config.seed,
        device=device or config.resolved_device(),
    )
    report["wall_s"] = round(time.monotonic() - start, 1)
    report.update(device_report(device or config.resolved_device()))
    save_grid(images, config.work / "samples.png")
    _write_json(config.work / "eval.json", report)
    return report


def ship(config: BuildConfig) -> Path:
    """Copy the trained models into `config.out`: sdxl/ (fp16 UNet and VAE), probe files, build.json."""
    pipe = load_trained_pipeline(config.work)
    config.out.mkdir(parents=True, exist_ok=True)
    staged = config.out / "sdxl.tmp"
    shutil.rmtree(staged, ignore_errors=True)
    pipe.unet.to(torch.float16)
    pipe.vae.to(torch.float16)
    pipe.save_pretrained(staged, safe_serialization=True)
    final = config.out / "sdxl"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staged, final)
    for name in ("probe.safetensors", "probe.json"):
        shutil.copyfile(config.work / "probe" / name, config.out / (name + ".tmp"))
        os.replace(config.out / (name + ".tmp"), config.out / name)
    if (config.work / "samples.png").exists():
        shutil.copyfile(config.work / "samples.png", config.out / "samples.png")
    gan = config.work / "gan" / TOY_GAN_FILE
    if gan.exists():
        shutil.copyfile(gan, config.out / (TOY_GAN_FILE + ".tmp"))
        os.replace(config.out / (TOY_GAN_FILE + ".tmp"), config.out / TOY_GAN_FILE)
    report = {
        "settings": {k: v for k, v in asdict(config).items() if k not in ("out", "work", "stages")},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **device_report(config.resolved_device()),
        "vae": _read_json(config.work / "vae_done.json"),
        "decoder": _read_json(config.work / "decoder_done.json"),
        "unet": _read_json(config.work / "unet_done.json"),
        "probe": _read_json(config.work / "probe_done.json"),
        "gan": _read_json(config.work / "gan_done.json"),
        "caption_following": _read_json(config.work / "eval.json"),
    }
    _write_json(config.out / "build.json", report)
    return config.out


def train_gan(config: BuildConfig, device: torch.device | None = None) -> None:
    """Fit the toy StyleGAN3 by regression (resumable), then export it with +style = bigger eyes."""
    from toyworld.toy_gan_fit import FitConfig, finalize, fit, fit_report

    work = config.work / "gan"
    if stage_done(config.work, "gan"):
        return
    device = device or config.resolved_device()
    fit(FitConfig(work=work, steps=config.gan_steps, seed=config.seed), device=device)
    # On the CPU, from the checkpoint: the exported generator never depends on the training device.
    finalize(work, work / TOY_GAN_FILE)
    write_done(config.work, "gan", fit_report(work), device)


@contextmanager
def tf32_matmuls(device: torch.device) -> Iterator[None]:
    """On CUDA, allow TF32 matrix products and convolutions for the duration (weights stay fp32)."""
    if device.type != "cuda":
        yield
        return
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def run_build(config: BuildConfig) -> Path:
    """Run the chosen stages in order (each resumes or is skipped when already done)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = config.resolved_device()  # once: every stage trains on the same device
    config.work.mkdir(parents=True, exist_ok=True)
    needs = {
        "decoder": ("vae",),
        "unet": ("vae",),
        "probe": ("vae",),
        "eval": ("unet", "probe"),
        "ship": ("unet", "probe"),
    }
    for stage in config.stages:
        for before in needs.get(stage, ()):
            done = config.work / f"{before}_done.json"
            if before not in config.stages and not done.exists():
                raise ValueError(f"stage {stage!r} needs stage {before!r} first: {done} does not exist")
    with tf32_matmuls(device):
        for stage in config.stages:
            _run_stage(config, stage, device)
    return config.out


def _run_stage(config: BuildConfig, stage: str, device: torch.device) -> None:
    from toyworld.decoder import train_decoder
    from toyworld.train_probe import train_probe
    from toyworld.train_sdxl import train_unet
    from toyworld.vae import train_vae

    if stage == "vae":
        train_vae(config.work, steps=config.vae_steps, seed=config.seed, device=device)
    elif stage == "decoder":
        train_decoder(config.work, steps=config.decoder_steps, seed=config.seed, device=device)
    elif stage == "unet":
        train_unet(
            config.work, steps=config.unet_steps, seed=config.seed, n_images=config.unet_images, device=device
        )
    elif stage == "probe":
        train_probe(config.work, steps=config.probe_steps, seed=config.seed, device=device)
    elif stage == "gan":
        train_gan(config, device)
    elif stage == "eval":
        run_eval(config, device)
    elif stage == "ship":
        ship(config)
