"""Render one image with sliders at signed scales behind the gate: from noise, or as an edit of a picture.

`render` is the unit a sweep repeats: set the composition's scales, plan the run's timesteps, gate the
sliders with `SliderGate` (a `callback_on_step_end`), sample. Loading is separate (`load_sliders`,
`img2img_pipeline`) so a sweep loads everything once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from PIL import Image

from sliders.calibration import Calibration
from sliders.defaults import SCALE as DEFAULT_SCALE
from transfer.compose import Composition
from transfer.gate import GateSpec, SliderGate, planned_timesteps


@dataclass(frozen=True)
class SliderSpec:
    """A slider file and its signed scale, as given on the command line (`FILE[:SCALE]`)."""

    path: Path
    scale: float = DEFAULT_SCALE


def parse_slider_spec(spec: str) -> SliderSpec:
    """Parse `FILE[:SCALE]`: the scale is the part after the last ':' (1 when there is none).

    A path that itself contains ':' works: a spec that names an existing file as a whole is that file.
    """
    if not spec:
        raise ValueError("--slider: empty slider spec")
    path, sep, tail = spec.rpartition(":")
    if not sep or not path or Path(spec).exists() or _looks_like_path(tail):
        return SliderSpec(Path(spec))
    try:
        scale = float(tail)
    except ValueError:
        raise ValueError(
            f"--slider {spec}: scale {tail!r} is not a number (FILE:SCALE, e.g. {path}:-1.5)"
        ) from None
    if not math.isfinite(scale):
        raise ValueError(f"--slider {spec}: scale {tail!r} is not a finite number")
    return SliderSpec(Path(path), scale)


def _looks_like_path(tail: str) -> bool:
    # `C:\sliders\x.safetensors` or `dir:with/colon/x.safetensors`: the colon belongs to the path.
    return (
        "/" in tail or "\\" in tail or tail.lower().endswith((".safetensors", ".pt", ".pth", ".bin", ".ckpt"))
    )


def check_slider_file(path: Path) -> None:
    """FileNotFoundError / IsADirectoryError naming --slider unless `path` is a file (or a diffusers LoRA folder)."""
    from sliders.lora_formats import DIFFUSERS_WEIGHT_NAME

    if path.is_dir():
        if not (path / DIFFUSERS_WEIGHT_NAME).is_file():
            raise IsADirectoryError(
                f"--slider {path}: is a folder, not a slider file (nor a diffusers LoRA folder with "
                f"{DIFFUSERS_WEIGHT_NAME})"
            )
    elif not path.is_file():
        raise FileNotFoundError(f"--slider {path}: no such file")


@dataclass(frozen=True)
class LoadedSlider:
    """A slider file loaded and checked against the UNet it will run on.

    With a `calibration` the scales the user gives are user scales (`sliders/calibration.py`) and
    `raw_scale` maps them to the adapter weight; without one they are raw weights.
    """

    spec: SliderSpec
    name: str
    factors: dict[str, Any] = field(repr=False)
    metadata: dict[str, str] = field(default_factory=dict)
    calibration: Calibration | None = field(default=None, repr=False)

    def raw_scale(self, scale: float) -> float:
        """The adapter weight of a scale the user gave (the same number when uncalibrated)."""
        return scale if self.calibration is None else self.calibration.to_raw(scale)

    def scale_note(self, scales: Sequence[float] | None = None) -> str:
        """How this slider's scales (default: its own) are read: calibrated, to which raw weights, or raw."""
        scales = [self.spec.scale] if scales is None else list(scales)
        if self.calibration is None:
            return f"{self.name}: not calibrated; scale {', '.join(f'{s:+g}' for s in scales)} = raw weight"
        mapped = ", ".join(f"{s:+g} -> {self.raw_scale(s):+.3g}" for s in scales)
        low, high = self.calibration.user_range
        outside = [f"{s:+g}" for s in scales if not self.calibration.in_range(s)]
        note = f" ({', '.join(outside)} outside the usable {low:+.2f}..{high:+.2f})" if outside else ""
        return f"{self.name}: calibrated; scale -> raw weight {mapped}{note}"


def load_sliders(
    specs: Sequence[SliderSpec], unet: torch.nn.Module, use_calibration: bool = True
) -> list[LoadedSlider]:
    """Load every slider file, refusing ones whose modules do not match `unet` (errors name the file).

    `use_calibration=False` (`--raw-scale`) ignores calibrations: every scale is a raw weight.
    """
    from sliders.slider_file import load_slider

    loaded = []
    for spec in specs:
        check_slider_file(spec.path)
        slider = load_slider(spec.path, unet=unet)
        name = slider.concept or spec.path.stem
        calibration = slider.calibration if use_calibration else None
        loaded.append(LoadedSlider(spec, name, dict(slider.factors), dict(slider.metadata), calibration))
    return loaded


def remove_adapters(unet: torch.nn.Module) -> None:
    """Delete every peft adapter on `unet` (a training run leaves its slider attached and switched on).

    Sampling afterwards with composed sliders on the same pipeline would otherwise add the trained
    slider at +1, ungated, to every image.
    """
    names = list(getattr(unet, "peft_config", None) or {})
    if names:
        unet.delete_adapters(names)


def img2img_pipeline(pipe: StableDiffusionXLPipeline) -> StableDiffusionXLImg2ImgPipeline:
    """An img2img pipeline sharing `pipe`'s components (no weights are copied or reloaded)."""
    edit = StableDiffusionXLImg2ImgPipeline(
        **pipe.components,
        force_zeros_for_empty_prompt=pipe.config.get("force_zeros_for_empty_prompt", True),
    )
    edit.set_progress_bar_config(disable=True)
    return edit


def load_image(path: Path, size: tuple[int, int] | None = None) -> Image.Image:
    """Read the picture to edit as RGB, resized to `size` (W, H) when given."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--image {path}: no such file")
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except OSError as error:
        raise ValueError(f"--image {path}: not a readable image ({error})") from error
    if size is not None and image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


@dataclass(frozen=True)
class RenderRequest:
    """One image: prompt, seed, every slider's scale and the sampling settings."""

    prompt: str
    seed: int
    scales: tuple[float, ...]
    steps: int
    guidance: float
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    gate: GateSpec = GateSpec()
    strength: float | None = None  # img2img only


def render(
    pipe: StableDiffusionXLPipeline | StableDiffusionXLImg2ImgPipeline,
    composition: Composition,
    request: RenderRequest,
    default_gate: GateSpec | None = None,
    image: Image.Image | None = None,
    conditioning: Mapping[str, torch.Tensor] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    latents: torch.Tensor | None = None,
) -> tuple[Image.Image, dict[str, Any]]:
    """Sample one image with the gated sliders; returns it and the gate's record (JSON-ready).

    The gate is `request.gate` if the user set one, else `default_gate` (the sliders' recommendation).
    `conditioning`: the prompt embeddings (`pipe.encode_prompt`'s four tensors by their pipeline
    argument names) to use instead of encoding `request.prompt` again. `on_step(step, total)` runs
    after every step; it may raise to stop sampling (the gate still switches the sliders off).
    `latents` is the start of sampling from noise (an inverted photo's `x_T`, `transfer.edit`).
    """
    editing = image is not None
    if editing != isinstance(pipe, StableDiffusionXLImg2ImgPipeline):
        raise ValueError("render: an input image needs the img2img pipeline, and only it")
    composition.set_scales(request.scales)
    timesteps = planned_timesteps(pipe.scheduler, request.steps, request.strength if editing else None)
    gate = SliderGate(composition, request.gate.resolve(timesteps, default_gate), timesteps)
    # A CPU generator gives the same noise on every device.
    generator = torch.Generator(device="cpu").manual_seed(request.seed)
    prompts = {"prompt": request.prompt, "negative_prompt": request.negative_prompt}
    common = {
        **(prompts if conditioning is None else conditioning),
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance,
        "generator": generator,
        "callback_on_step_end": gate if on_step is None else _then(gate, on_step, len(timesteps)),
        "output_type": "pil",
    }
    with gate.active():
        if editing:
            result = pipe(image=image, strength=request.strength, **common)
        else:
            result = pipe(height=request.height, width=request.width, latents=latents, **common)
    record = gate.summary()
    record["requested"] = (request.gate if request.gate.is_set else default_gate or GateSpec()).describe()
    return result.images[0], record


def _then(gate: SliderGate, on_step: Callable[[int, int], None], total: int) -> Callable[..., dict]:
    """A step callback: the gate, then `on_step(step, total)`."""

    def callback(pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict) -> dict:
        callback_kwargs = gate(pipe, step_index, timestep, callback_kwargs)
        on_step(step_index, total)
        return callback_kwargs

    return callback
