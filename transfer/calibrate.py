"""Calibrate a slider: measure how much it changes images at raw weights, fit the user scale, write it.

The measure. For each raw weight r the slider is rendered on a few prompts x seeds behind its gate
(the same composition and gate as `apply`), and compared with the render at r = 0 of the same prompt and
seed. The distance is the mean absolute difference of the *final latents* z, in the space the model's
UNet denoises (the pipeline's `output_type="latent"`):

    d_i(r) = mean_{c,h,w} |z_i(r) - z_i(0)|,        effect e(r) = mean_i d_i(r).

Why this distance:
- It works offline on any model: every latent-diffusion pipeline has these latents; nothing to download
  (LPIPS, CLIP or face landmarks all need weights from the network).
- It is comparable across sliders and models: latent diffusion rescales its latents to about unit
  variance (SDXL's `scaling_factor`, the toy VAE's `latents_mean`/`latents_std`), so the same mean |dz|
  is a like amount of change on any such model; the mean (not the sum) makes it independent of size.
- L1, not L2: when a slider moves an edge (a larger eye, a wider face), the area that changes grows in
  proportion to how far the edge moves, so the mean |dz| grows in proportion too, where the RMS would grow
  like a square root. Equal steps of an attribute then give equal steps of distance.
- It is cheap: no VAE decode, which at 1024 px costs as much memory and time as several UNet steps.
- It is monotone in the change: on the toy world the distance ranks the eye-size slider's renders in
  the order of the probe's eye-size change (tests/toyworld/test_toy_calibration.py).

Breaking, measured: a raw weight is *broken* when its renders (a) hold a non-finite latent, (b) are on
average further from their weight-0 renders than `break_effect` x the mean distance between two
different weight-0 renders (the slider replaced the picture instead of editing it), or (c) left what the
model itself considers a normal image: each render is noised to t = 300 (fixed noise) and the base model
(no slider, empty prompt) predicts the noise; its error, divided by the same error on the weight-0
render, is the *prior ratio*. A picture the model could have made denoises about as well as its own
renders (ratio near 1); smeared or burnt pictures do not. On the toy world's shipped sliders the ratio is
1.0-2.7 within raw +-3, 3.1-4.7 at +-4 (still faces; the eyes start to blur), and 7-13 from +-6 on, where
the faces have visibly fallen apart, so the default limit `break_prior` is 5.

Drift, measured: `step_directions` gives, per raw weight, the cosine between the step into it (the
change of the renders from the previous probed weight on its side) and that side's first step. On the toy
world the eye-size slider's steps keep their direction (0.6-0.9) while the probe's eye size grows, and
turn away (0.06 at raw +3, where the eyes stop growing and blur) where it stops; the smile slider's turn
at +3 and -4, where the probe's smile stops growing. `sliders/calibration.py` ends the usable range
before the first broken or drifted weight and where the effect saturates, and fits the map user -> raw.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sliders.calibration import (
    DEFAULT_DRIFT,
    DEFAULT_PLATEAU,
    USAGE_HINT_PREFIX,
    Calibration,
    EffectCurve,
    fit_calibration,
)
from sliders.defaults import DEFAULT_RAW_SCALES, DEFAULT_UNIT_EFFECT
from sliders.slider_metadata import KEY_PROMPTS, KEY_USAGE_HINT, PREFIX
from transfer.compose import compose_sliders
from transfer.gate import GateSpec, SliderGate, default_gate, planned_timesteps

DISTANCE = "latent_mean_abs"
PRIOR_TIMESTEP, PRIOR_SEED = 300, 0
MAX_DEFAULT_PROMPTS = 3
KEY_TRAIN_PROMPT = PREFIX + "prompt"  # a visual slider's training caption (empty: unconditional)


@dataclass(frozen=True)
class CalibrationSettings:
    """What to render and how to read it: prompts x seeds at each raw weight, and the fitting rules."""

    prompts: tuple[str, ...] | None = None  # None: the slider's own prompts (`default_prompts`)
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    raw_scales: tuple[float, ...] = DEFAULT_RAW_SCALES
    steps: int = 20
    guidance: float = 5.0
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    gate: GateSpec = field(default_factory=GateSpec)  # unset: the slider's recommended gate, as in apply
    unit_effect: float = DEFAULT_UNIT_EFFECT  # the effect of user scale 1 (mean |dz|)
    plateau: float = DEFAULT_PLATEAU  # the effect counts as saturated within this fraction of its largest
    drift: float = DEFAULT_DRIFT  # the range ends where a step's cosine with the first step falls below
    break_effect: float = 1.0  # broken beyond this fraction of the distance between two samples
    break_prior: float = 5.0  # broken when the base model denoises the render this many times worse
    batch: int = 8  # images per pipeline call
    method: str = "fused"

    def __post_init__(self) -> None:
        if self.prompts is not None and not self.prompts:
            raise ValueError("--prompts: give at least one prompt")
        if not self.seeds:
            raise ValueError("--seeds: give at least one seed")
        scales = [float(s) for s in self.raw_scales]
        if not scales or not all(math.isfinite(s) for s in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"--scales: give distinct finite raw scales, got {list(self.raw_scales)}")
        if not any(s != 0 for s in scales):
            raise ValueError("--scales: give at least one raw scale other than 0")
        if self.steps < 1:
            raise ValueError(f"--steps: must be a positive integer, got {self.steps}")
        if self.batch < 1:
            raise ValueError(f"--batch: must be a positive integer, got {self.batch}")
        for name in ("unit_effect", "break_effect"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be positive, got {getattr(self, name)}")
        if not self.break_prior > 1:
            raise ValueError(f"--break-prior: must be above 1, got {self.break_prior}")
        for name, value in (("width", self.width), ("height", self.height)):
            if value is not None and (value < 8 or value % 8):
                raise ValueError(f"--size: {name} must be a multiple of 8 (at least 8), got {value}")


def default_prompts(metadata: dict[str, str]) -> tuple[str, ...]:
    """The prompts a slider was trained on: a text slider's first `MAX_DEFAULT_PROMPTS` targets, a visual
    slider's caption, else ''."""
    prompts = metadata.get(KEY_PROMPTS)
    if prompts:
        try:
            entries = json.loads(prompts).get("entries", [])
            targets = [str(e["target"]) for e in entries if isinstance(e, dict) and e.get("target")]
        except (ValueError, AttributeError):
            targets = []
        if targets:
            return tuple(dict.fromkeys(targets))[:MAX_DEFAULT_PROMPTS]
    return (metadata.get(KEY_TRAIN_PROMPT) or "",)


def latent_distance(z: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean |z - reference| per image: [N, C, H, W] x2 -> [N] (the calibration's distance)."""
    assert z.shape == reference.shape and z.ndim == 4, f"latents {tuple(z.shape)} vs {tuple(reference.shape)}"
    return (z.float() - reference.float()).abs().mean(dim=(1, 2, 3))


def sample_distance(reference: torch.Tensor) -> float:
    """The mean distance between two different renders at weight 0 (all pairs): the 'other picture' unit."""
    n = reference.shape[0]
    if n < 2:
        raise ValueError("calibration: needs at least two renders (prompts x seeds) to measure breaking")
    pairs = list(itertools.combinations(range(n), 2))
    first, second = (torch.tensor(index) for index in zip(*pairs))
    return float(latent_distance(reference[first], reference[second]).mean())


@torch.no_grad()
def prior_error(pipe: Any, z: torch.Tensor, batch: int, t: int = PRIOR_TIMESTEP) -> torch.Tensor:
    """Per image, the base model's denoising error on `z` noised to `t` (fixed noise, empty prompt): [N]."""
    from sliders.prompts import PromptCache, predict_noise

    alpha = float(pipe.scheduler.alphas_cumprod[t])
    noise = torch.randn(z.shape, generator=torch.Generator(device="cpu").manual_seed(PRIOR_SEED))
    noisy = alpha**0.5 * z.float() + (1 - alpha) ** 0.5 * noise
    kind = pipe.scheduler.config.get("prediction_type", "epsilon")
    target = {"epsilon": noise, "v_prediction": alpha**0.5 * noise - (1 - alpha) ** 0.5 * z.float()}.get(kind)
    if target is None:
        raise ValueError(f"calibration: cannot judge images of a model predicting {kind!r}")
    unet = pipe.unet
    errors = []
    for first in range(0, z.shape[0], batch):
        chunk = noisy[first : first + batch].to(unet.device, unet.dtype)
        cond = PromptCache(pipe).batch([""], repeat=chunk.shape[0])
        steps = torch.full((chunk.shape[0],), t, device=unet.device)
        predicted = predict_noise(unet, chunk, steps, cond, pipe.vae_scale_factor).float().cpu()
        errors.append((predicted - target[first : first + batch]).pow(2).mean(dim=(1, 2, 3)))
    return torch.cat(errors)


def geometric_mean_ratio(values: torch.Tensor, reference: torch.Tensor) -> float:
    """exp(mean(log(values / reference))): the typical factor between two per-image measures."""
    return float((values.clamp_min(1e-12) / reference.clamp_min(1e-12)).log().mean().exp())


def is_broken(effect: float, prior_ratio: float, sample_gap: float, settings: CalibrationSettings) -> bool:
    """Whether renders at one weight left the model's normal range (rules (a)-(c) in the docstring)."""
    if not (math.isfinite(effect) and math.isfinite(prior_ratio)):
        return True
    return effect > settings.break_effect * sample_gap or prior_ratio > settings.break_prior


@torch.no_grad()
def render_latents(
    pipe: Any, composition: Any, prompts: Sequence[str], seeds: Sequence[int], settings: CalibrationSettings,
    default: GateSpec,
) -> torch.Tensor:  # fmt: skip
    """Final latents [N, C, h, w] (fp32, CPU) of prompts x seeds with the composition's current scales."""
    jobs = [(p, s) for p in prompts for s in seeds]
    negative = settings.negative_prompt
    timesteps = planned_timesteps(pipe.scheduler, settings.steps)
    start_noise = settings.gate.resolve(timesteps, default)
    out = []
    for first in range(0, len(jobs), settings.batch):
        chunk = jobs[first : first + settings.batch]
        gate = SliderGate(composition, start_noise, timesteps)
        with gate.active():
            latents = pipe(
                prompt=[p for p, _ in chunk],
                negative_prompt=None if negative is None else [negative] * len(chunk),
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                width=settings.width,
                height=settings.height,
                # A CPU generator per image, as `apply` seeds them: the same noise on every device.
                generator=[torch.Generator(device="cpu").manual_seed(s) for _, s in chunk],
                callback_on_step_end=gate,
                output_type="latent",
            ).images
        out.append(latents.float().cpu())
    return torch.cat(out)


def step_directions(scales: Sequence[float], latents: Sequence[torch.Tensor]) -> list[float]:
    """Per raw scale, the cosine between the step into it and its side's first step (mean over images).

    The step into a scale is the change of the renders from the previous probed scale on its side (0 for
    the first); 1 at 0 and at each side's first scale.
    """
    index = {float(s): i for i, s in enumerate(scales)}
    out = [1.0] * len(scales)
    for sign in (-1.0, 1.0):
        previous, first = latents[index[0.0]], None
        for scale in sorted((s for s in index if s * sign > 0), key=abs):
            z = latents[index[scale]]
            step = (z.float() - previous.float()).flatten(1)  # [N, C*h*w]
            first = step if first is None else first
            out[index[scale]] = float(torch.nn.functional.cosine_similarity(step, first, dim=1).mean())
            previous = z
    return out


@torch.no_grad()
def decode_latents(pipe: Any, z: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1] of `render_latents` output, decoded as the SDXL pipeline does."""
    config, vae = pipe.vae.config, pipe.vae
    z = z.to(vae.device, vae.dtype)
    if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(z)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(z)
        z = z * std / config.scaling_factor + mean
    else:
        z = z / config.scaling_factor
    return vae.decode(z).sample.float().clamp(-1, 1).cpu()


def measure_effects(
    pipe: Any, factors: dict, settings: CalibrationSettings, prompts: Sequence[str], default: GateSpec,
    say: Callable[[str], None] = print,
) -> tuple[EffectCurve, dict[str, Any]]:  # fmt: skip
    """Render every raw weight; the effect curve and what breaking was judged on (sample gap, prior ratios)."""
    scales = sorted({0.0, *(float(s) for s in settings.raw_scales)})
    latents, effects, broken, ratios = [], [], [], []
    with compose_sliders(pipe.unet, [factors], [0.0], settings.method, ["slider"]) as composition:
        reference = render_latents(pipe, composition, prompts, settings.seeds, settings, default)
        gap = sample_distance(reference)
        prior_zero = prior_error(pipe, reference, settings.batch)
        for scale in scales:
            z, effect, ratio = reference, 0.0, 1.0
            if scale != 0:
                composition.set_scales([scale])
                z = render_latents(pipe, composition, prompts, settings.seeds, settings, default)
                effect = float(latent_distance(z, reference).mean())
                ratio = geometric_mean_ratio(prior_error(pipe, z, settings.batch), prior_zero)
                say(f"  raw {scale:+g}: effect {effect:.4f}, prior ratio {ratio:.2f}")
            latents.append(z)
            effects.append(effect if math.isfinite(effect) else math.nan)
            ratios.append(round(ratio, 4) if math.isfinite(ratio) else None)
            broken.append(is_broken(effect, ratio, gap, settings))
    directions = step_directions(scales, latents)
    judged = {"sample_distance": gap, "prior_ratio": ratios}
    return EffectCurve(tuple(scales), tuple(effects), tuple(broken), tuple(directions)), judged


def calibration_fields(calibration: Calibration, metadata: dict[str, str]) -> dict[str, str]:
    """The header entries to write: the calibration's, keeping a usage hint the user wrote themselves."""
    fields = calibration.to_metadata()
    own_hint = metadata.get(KEY_USAGE_HINT)
    if own_hint and not own_hint.startswith(USAGE_HINT_PREFIX):
        del fields[KEY_USAGE_HINT]
    return fields


def calibrate_slider(
    pipe: Any,
    slider_path: str | Path,
    settings: CalibrationSettings | None = None,
    say: Callable[[str], None] = print,
    out: str | Path | None = None,
    model: str = "",
) -> Calibration:
    """Measure a slider file on `pipe`, fit its calibration and write it into the file (or `out`)."""
    from sliders.slider_file import load_slider, update_slider_metadata
    from transfer.apply import remove_adapters

    settings = settings or CalibrationSettings()
    slider_path = Path(slider_path)
    if not slider_path.is_file():
        raise FileNotFoundError(f"{slider_path}: no such slider file")
    if slider_path.suffix != ".safetensors" and out is None:
        raise ValueError(f"{slider_path}: only .safetensors files hold a calibration; give an --out file")
    remove_adapters(pipe.unet)  # a training run leaves its adapter attached and switched on
    slider = load_slider(slider_path, unet=pipe.unet)
    prompts = settings.prompts if settings.prompts is not None else default_prompts(slider.metadata)
    gate_default, gate_source = default_gate([slider.metadata])
    say(f"calibrating {slider_path.name}: {len(prompts)} prompt(s) x {len(settings.seeds)} seed(s) "
        f"x {len(settings.raw_scales)} raw scales, distance {DISTANCE}")  # fmt: skip
    curve, judged = measure_effects(pipe, dict(slider.factors), settings, prompts, gate_default, say)
    conditions = {
        "model": model,
        "prompts": list(prompts),
        "gate": settings.gate.describe() if settings.gate.is_set else {**gate_default.describe(), "from": gate_source},
        **judged,
        **{k: v for k, v in asdict(settings).items() if k not in ("prompts", "raw_scales", "gate", "batch")},
    }  # fmt: skip
    calibration = fit_calibration(
        curve,
        settings.unit_effect,
        plateau=settings.plateau,
        drift=settings.drift,
        distance=DISTANCE,
        conditions=conditions,
    )
    if slider_path.suffix == ".safetensors":
        update_slider_metadata(slider_path, calibration_fields(calibration, slider.metadata), out=out)
    else:
        _save_converted(slider, calibration, Path(out))
    for line in describe_calibration(calibration):
        say(line)
    return calibration


def _save_converted(slider: Any, calibration: Calibration, out: Path) -> None:
    """Write a .pt slider as a calibrated .safetensors slider file (kohya layout)."""
    from sliders.slider_file import save_slider

    save_slider(out, slider.factors, {**slider.metadata, **calibration_fields(calibration, slider.metadata)})


def describe_calibration(calibration: Calibration) -> list[str]:
    """Lines that show a calibration: the map at a few user scales and the usable range."""
    low, high = calibration.user_range
    points = ", ".join(f"{u:+g} -> {calibration.to_raw(u):+.3g}" for u in (-2, -1, 1, 2))
    return [
        f"calibration: user scale -> raw weight: {points}",
        f"  usable: user {low:+.2f} .. {high:+.2f} = raw {calibration.raw_range[0]:+.3g} .. "
        f"{calibration.raw_range[1]:+.3g}; user scale 1 = mean |dz| {calibration.unit_effect:g} "
        f"({calibration.distance})",
    ]
