"""Slider configuration: frozen, validated dataclasses (training loop, text and visual sliders) and YAML.

Torch-free, so the command line shows these defaults in `--help` without loading any model library.

Two YAML shapes load for a text slider (DESIGN §4):
- the original implementation's prompt file: a list of prompt entries (`target, positive,
  unconditional, neutral, action, guidance_scale, resolution, dynamic_resolution, batch_size`,
  `dynamic_crops`), unchanged;
- our document: a mapping with `prompts:` (that same list) beside our own fields (`concept`,
  `preserve`, `schedule`, `bipolar`, and the training settings of `TrainSettings`).
Unknown keys are an error naming the key and the file; nothing is silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from pair_datasets.images import check_resolution
from sliders.schedules import DEFAULT_SCHEDULE, SCHEDULES

MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")
ACTIONS = ("enhance", "erase")  # a text slider enhances or erases the contrast (DESIGN §3)


def _where(source: str) -> str:
    return f"{source}: " if source else ""


def _as_float(value: Any, name: str, source: str = "") -> float:
    # YAML 1.1 reads `2e-4` as a string; accept any text float() accepts, but not `true` (float(True) is 1).
    if isinstance(value, bool):
        raise ValueError(f"{_where(source)}{name}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{_where(source)}{name}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{_where(source)}{name}: must be finite, got {value!r}")
    return number


def _as_int(value: Any, name: str, source: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{_where(source)}{name}: expected an integer, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{_where(source)}{name}: expected an integer, got {value!r}") from None
    if not number.is_integer():
        raise ValueError(f"{_where(source)}{name}: expected an integer, got {value!r}")
    return int(number)


def _as_bool(value: Any, name: str, source: str = "") -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{_where(source)}{name}: expected true or false, got {value!r}")
    return value


def _as_str(value: Any, name: str, source: str = "") -> str:
    if not isinstance(value, str):
        raise ValueError(f"{_where(source)}{name}: expected text, got {value!r}")
    return value


@dataclass(frozen=True)
class PromptEntry:
    """One prompt set of the original prompt file; `unconditional` is the negative prompt c-.

    `neutral` (the prompt of the base prediction) defaults to `target`, and `positive` to `target`.
    The original code defaulted `action` to erase; every shipped original file states it, and ours
    defaults to `enhance`. `guidance_scale` (eta, DESIGN §3) defaults to 1.0 as in the original.
    `resolution` None trains at the model's own size (its UNet's sample size times the VAE's factor).
    """

    target: str
    positive: str | None = None
    unconditional: str = ""
    neutral: str | None = None
    action: str = "enhance"
    guidance_scale: float = 1.0
    resolution: int | None = None
    dynamic_resolution: bool = False
    batch_size: int = 1
    dynamic_crops: bool = False

    def __post_init__(self) -> None:
        if self.positive is None:
            object.__setattr__(self, "positive", self.target)
        if self.neutral is None:
            object.__setattr__(self, "neutral", self.target)
        if self.action not in ACTIONS:
            raise ValueError(f"action: must be one of {', '.join(ACTIONS)}, got {self.action!r}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale > 0):
            raise ValueError(f"guidance_scale: must be a positive number, got {self.guidance_scale}")
        if self.resolution is not None:
            check_resolution(self.resolution, "resolution")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be at least 1, got {self.batch_size}")
        if self.dynamic_crops:
            raise ValueError("dynamic_crops: true is not supported (SDXL crop conditioning stays at 0,0)")

    @classmethod
    def from_dict(cls, raw: Any, source: str = "") -> PromptEntry:
        """Build an entry from a YAML mapping; unknown keys and wrong types name the field."""
        if not isinstance(raw, dict):
            raise ValueError(f"{_where(source)}each prompt entry must be a mapping, got {raw!r}")
        known = {f.name for f in fields(cls)}
        for key in raw:
            if key not in known:
                raise ValueError(
                    f"{_where(source)}unknown key {key!r} in a prompt entry (known: {', '.join(sorted(known))})"
                )
        if "target" not in raw:
            raise ValueError(f"{_where(source)}a prompt entry has no 'target'")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if value is None:
                continue  # null means "the default", as in the original files
            if key in ("target", "positive", "unconditional", "neutral", "action"):
                values[key] = _as_str(value, key, source)
            elif key == "guidance_scale":
                values[key] = _as_float(value, key, source)
            elif key in ("resolution", "batch_size"):
                values[key] = _as_int(value, key, source)
            else:
                values[key] = _as_bool(value, key, source)
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{_where(source)}{error}") from None


@dataclass(frozen=True)
class TrainSettings:
    """Settings of the slider training loop shared by text and visual sliders."""

    steps: int = 1000
    rank: int = 4
    alpha: float = 1.0
    targets: str = "noxattn"
    lr: float = 2e-4
    seed: int = 0
    checkpoint_every: int = 0  # 0: only on interruption
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"  # auto: the UNet's dtype (bf16/fp16 on GPU, fp32 on CPU)

    def __post_init__(self) -> None:
        from sliders.lora import TARGET_PRESETS

        if self.steps < 1:
            raise ValueError(f"steps: must be at least 1, got {self.steps}")
        if self.rank < 1:
            raise ValueError(f"rank: must be a positive integer, got {self.rank}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha: must be a positive number, got {self.alpha}")
        if self.targets not in TARGET_PRESETS:
            raise ValueError(
                f"targets: unknown preset {self.targets!r}; choose one of {', '.join(TARGET_PRESETS)}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: must be a positive number, got {self.lr}")
        if self.seed < 0:
            raise ValueError(f"seed: must be 0 or more, got {self.seed}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every: must be 0 (off) or positive, got {self.checkpoint_every}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(
                f"mixed_precision: must be one of {', '.join(MIXED_PRECISIONS)}, got {self.mixed_precision!r}"
            )


_TRAIN_TYPES = {"steps": int, "rank": int, "alpha": float, "targets": str, "lr": float, "seed": int,
                "checkpoint_every": int, "gradient_checkpointing": bool, "mixed_precision": str}  # fmt: skip


@dataclass(frozen=True)
class TextSliderConfig:
    """A text slider: prompt entries, preservation attributes, how x_t is sampled, and the loop settings."""

    prompts: tuple[PromptEntry, ...]
    concept: str = ""
    preserve: tuple[str, ...] = ()
    schedule: str = DEFAULT_SCHEDULE
    bipolar: bool = True
    sampling_guidance: float = 3.0  # CFG of the partial denoising that produces x_t (original: 3)
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("prompts: at least one prompt entry is needed")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: unknown {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if any(not a.strip() for a in self.preserve):
            raise ValueError(f"preserve: empty attribute in {list(self.preserve)!r}")
        if not self.sampling_guidance >= 1:
            raise ValueError(f"sampling_guidance: must be at least 1, got {self.sampling_guidance}")

    @property
    def concept_name(self) -> str:
        """The concept's display name: `concept`, else the first entry's positive prompt."""
        return self.concept or self.prompts[0].positive or self.prompts[0].target or "text slider"

    def with_overrides(self, **changes: Any) -> TextSliderConfig:
        """A copy with top-level fields and `TrainSettings` fields replaced (None values are skipped)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        train = {k: changes.pop(k) for k in list(changes) if k in _TRAIN_TYPES}
        return replace(self, train=replace(self.train, **train), **changes)


@dataclass(frozen=True)
class VisualSliderConfig:
    """A visual slider: prompt, resolution, batch, augmentation, pass layout and the loop settings.

    `prompt` conditions the pairs without a caption (captions win; the default is the empty prompt).
    `resolution` is the side of the square training images (None: the corpus's resolution).
    `crop_scale` F in (0, 1]: each step every pair is cut to a window of side ~F of its latent (rounded
    to a size the UNet accepts) at a random position, the same window for its two images (None, 1: off).
    """

    concept: str = ""
    prompt: str = ""
    resolution: int | None = None
    batch_size: int = 1
    augment: bool = False
    crop_scale: float | None = None
    separate_passes: bool = False
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        if self.resolution is not None:
            check_resolution(self.resolution, "resolution")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be at least 1, got {self.batch_size}")
        if self.crop_scale is not None and not 0 < self.crop_scale <= 1:  # also refuses NaN
            raise ValueError(f"crop_scale (--crop-scale): must be in (0, 1], got {self.crop_scale}")

    @property
    def crop(self) -> float | None:
        """The crop scale in effect: None when off (a scale of 1 keeps the whole latent)."""
        return None if self.crop_scale is None or self.crop_scale == 1 else float(self.crop_scale)

    def task_key(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run that wrote the checkpoint."""
        return {"prompt": self.prompt, "resolution": self.resolution, "batch_size": self.batch_size,
                "augment": self.augment, "crop_scale": self.crop,
                "separate_passes": self.separate_passes}  # fmt: skip


_DOCUMENT_KEYS = {"prompts", "concept", "preserve", "schedule", "bipolar", "sampling_guidance"}


def _preserve_list(value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{source}: preserve: expected a list of attributes or 'a, b', got {value!r}")
    return tuple(v.strip() for v in value)


def config_from_document(document: Any, source: str = "") -> TextSliderConfig:
    """Build a `TextSliderConfig` from a parsed YAML document (original list or our mapping)."""
    if isinstance(document, list):
        document = {"prompts": document}
    if not isinstance(document, dict):
        raise ValueError(f"{source}: expected a list of prompt entries or a mapping with 'prompts:'")
    for key in document:
        if key not in _DOCUMENT_KEYS and key not in _TRAIN_TYPES:
            known = ", ".join(sorted(_DOCUMENT_KEYS | set(_TRAIN_TYPES)))
            raise ValueError(f"{source}: unknown key {key!r} (known: {known})")
    raw_prompts = document.get("prompts")
    if not isinstance(raw_prompts, list) or not raw_prompts:
        raise ValueError(f"{source}: 'prompts' must be a non-empty list of prompt entries")
    prompts = tuple(PromptEntry.from_dict(e, f"{source}: prompts[{i}]") for i, e in enumerate(raw_prompts))
    top: dict[str, Any] = {}
    train: dict[str, Any] = {}
    convert = {int: _as_int, float: _as_float, bool: _as_bool, str: _as_str}
    for key, value in document.items():
        if key == "prompts" or value is None:
            continue
        if key == "preserve":
            top[key] = _preserve_list(value, source)
        elif key in ("concept", "schedule"):
            top[key] = _as_str(value, key, source)
        elif key == "bipolar":
            top[key] = _as_bool(value, key, source)
        elif key == "sampling_guidance":
            top[key] = _as_float(value, key, source)
        else:
            train[key] = convert[_TRAIN_TYPES[key]](value, key, source)
    try:
        return TextSliderConfig(prompts=prompts, train=TrainSettings(**train), **top)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def load_text_config(path: str | Path) -> TextSliderConfig:
    """Read a text-slider YAML file; every error names the file and the offending key."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--config {path}: is a folder, not a YAML prompt file")
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(
            f"--config {path}: not a text file (byte {error.start} is not UTF-8); expected a YAML prompt file"
        ) from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
    return config_from_document(document, str(path))
