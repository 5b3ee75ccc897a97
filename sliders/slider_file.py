"""Slider files (DESIGN §4): one kohya-layout .safetensors with a real `.alpha` and our metadata.

`save_slider` writes what ComfyUI, A1111/Forge and diffusers' `load_lora_weights` read; `load_slider`
also reads the original Concept Sliders files and diffusers/peft LoRA files (see `lora_formats`).
Factors are keyed by the diffusers dotted module path of the UNet; on a module the update is
`scale * alpha / rank * up @ down`, with `scale` the slider weight the user picks.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from pair_datasets.atomic import atomic_write, atomic_write_bytes
from sliders.calibration import Calibration
from sliders.lora import DEFAULT_ADAPTER, adaptable_modules, lora_config_for, lora_layers
from sliders.lora_formats import (
    fill_kohya_alphas,
    fill_peft_alphas,
    group_lora_keys,
    read_tensor_file,
    resolve_name,
    weights_file,
)
from sliders.slider_metadata import (
    FORMAT_VERSION,
    KEY_ALPHA,
    KEY_BASE_MODEL,
    KEY_CONCEPT,
    KEY_DIM,
    KEY_FORMAT,
    KEY_KIND,
    KEY_SCALE_RANGE,
    KEY_START_NOISE,
    KEY_TARGETS,
    KEY_TITLE,
    KOHYA_DEFAULTS,
    slider_metadata,
)
from sliders.unet_names import kohya_resolver, looks_sgm

__all__ = [
    "Calibration",
    "LoraFactors",
    "SliderFile",
    "factors_from_unet",
    "load_factors_into_unet",
    "load_slider",
    "read_slider_header",
    "save_slider",
    "slider_metadata",
    "update_slider_metadata",
]

SAVE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True, eq=False)
class LoraFactors:
    """One module's low-rank update: delta W = alpha / rank * up @ down (convs: down carries the kernel)."""

    down: torch.Tensor  # [r, in] or [r, in, kh, kw]
    up: torch.Tensor  # [out, r] or [out, r, 1, 1]
    alpha: float

    def __post_init__(self) -> None:
        if self.down.ndim not in (2, 4) or self.up.ndim != self.down.ndim:
            raise ValueError(f"down {tuple(self.down.shape)} / up {tuple(self.up.shape)}: not LoRA factors")
        if self.up.shape[1] != self.down.shape[0]:
            raise ValueError(f"down has rank {self.down.shape[0]} but up has rank {self.up.shape[1]}")
        if self.up.ndim == 4 and tuple(self.up.shape[2:]) != (1, 1):
            raise ValueError(f"up {tuple(self.up.shape)}: a conv LoRA's up weight must be 1x1")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {self.alpha}")

    @property
    def rank(self) -> int:
        """The LoRA rank r."""
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        """alpha / r: the factor the update gets at slider weight 1."""
        return self.alpha / self.rank


@dataclass(frozen=True, eq=False)
class SliderFile:
    """A loaded slider: factors by diffusers module path, the header metadata, and where it came from."""

    factors: dict[str, LoraFactors]
    metadata: dict[str, str] = field(default_factory=dict)
    source_path: Path | None = None
    source_format: str = "concept-transfer"  # or: concept-sliders, kohya, kohya-sgm, diffusers

    @property
    def kind(self) -> str | None:
        """text / visual / gan, if the file records it."""
        return self.metadata.get(KEY_KIND)

    @property
    def concept(self) -> str | None:
        """The concept name (ours, else the modelspec title)."""
        return self.metadata.get(KEY_CONCEPT) or self.metadata.get(KEY_TITLE)

    @property
    def rank(self) -> int:
        """The rank (the largest one if modules differ)."""
        return max(f.rank for f in self.factors.values())

    @property
    def alpha(self) -> float | None:
        """The alpha shared by all modules; None if modules differ."""
        alphas = {f.alpha for f in self.factors.values()}
        return alphas.pop() if len(alphas) == 1 else None

    @property
    def targets(self) -> str | None:
        """The target preset the slider was trained with, if recorded."""
        return self.metadata.get(KEY_TARGETS)

    @property
    def base_model(self) -> str | None:
        """The base model id the slider was trained on, if recorded."""
        return self.metadata.get(KEY_BASE_MODEL)

    @property
    def start_noise(self) -> float | None:
        """Recommended start_noise (timestep on the 1000-step scale, or a fraction of steps), if recorded."""
        value = self.metadata.get(KEY_START_NOISE)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise ValueError(
                f"{self.source_path}: header {KEY_START_NOISE} is not a number: {value!r}"
            ) from None

    @property
    def scale_range(self) -> tuple[float, float] | None:
        """Recommended (lowest, highest) slider scale, if recorded."""
        value = self.metadata.get(KEY_SCALE_RANGE)
        if value is None:
            return None
        try:
            low, high = json.loads(value)
            return float(low), float(high)
        except (ValueError, TypeError):  # JSONDecodeError is a ValueError; [1] or "x" fail to unpack/convert
            raise ValueError(
                f"{self.source_path}: header {KEY_SCALE_RANGE} must be a JSON pair [low, high], got {value!r}"
            ) from None

    @property
    def calibration(self) -> Calibration | None:
        """The user-scale calibration `slider calibrate` wrote, if any (ValueError naming key and file)."""
        return Calibration.from_metadata(self.metadata, self.source_path)


def kohya_name(module_path: str) -> str:
    """The kohya key stem of a diffusers UNet module path (`lora_unet_` + path with `.` → `_`)."""
    return "lora_unet_" + module_path.replace(".", "_")


def _network_fields(factors: Mapping[str, LoraFactors]) -> dict[str, str]:
    """ss_network_dim/alpha from the factors; kohya writes `Dynamic` when modules differ."""
    ranks = {f.rank for f in factors.values()}
    alphas = {f.alpha for f in factors.values()}
    return {
        KEY_DIM: str(ranks.pop()) if len(ranks) == 1 else "Dynamic",
        KEY_ALPHA: f"{alphas.pop():g}" if len(alphas) == 1 else "Dynamic",
    }


def save_slider(
    path: str | Path,
    factors: Mapping[str, LoraFactors],
    metadata: Mapping[str, str],
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a slider file atomically: kohya keys, a real fp32 `.alpha` per module, header metadata.

    `dtype=None` keeps each factor's own dtype (the training dtype); float32/float16/bfloat16 convert.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: a slider file must end in .safetensors")
    if not factors:
        raise ValueError(f"{path}: no LoRA factors to save")
    if dtype is not None and dtype not in SAVE_DTYPES:
        raise ValueError(f"dtype: must be one of {SAVE_DTYPES}, got {dtype}")
    for key, value in metadata.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise ValueError(f"metadata: {key!r} must map a string to a string, got {type(value).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    for module_path in sorted(factors):
        f = factors[module_path]
        stem = kohya_name(module_path)
        if stem + ".alpha" in tensors:
            raise ValueError(f"factors: {module_path!r} flattens to a kohya name already used")
        target = dtype or f.down.dtype
        tensors[stem + ".lora_down.weight"] = f.down.detach().to("cpu", target).contiguous().clone()
        tensors[stem + ".lora_up.weight"] = f.up.detach().to("cpu", dtype or f.up.dtype).contiguous().clone()
        # Alpha stays fp32 whatever the weights' dtype: fp16 would round e.g. 0.3.
        tensors[stem + ".alpha"] = torch.tensor(float(f.alpha), dtype=torch.float32)
    header = {**KOHYA_DEFAULTS, KEY_FORMAT: FORMAT_VERSION, **metadata, **_network_fields(factors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, sorted_header(safetensors.torch.save(tensors, metadata=header)))
    return path


def _read_safetensors_header(path: Path) -> tuple[dict, int]:
    """The JSON header of a .safetensors file and the offset where its tensor data starts."""
    try:
        with open(path, "rb") as stream:
            (length,) = struct.unpack("<Q", stream.read(8))
            header = json.loads(stream.read(length))
    except (OSError, struct.error, ValueError) as error:  # short file, bad length, bad JSON
        raise ValueError(f"{path}: not a readable .safetensors file ({error})") from error
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a readable .safetensors file (header is not a JSON object)")
    return header, 8 + length


def read_slider_header(path: str | Path) -> dict[str, str]:
    """The header metadata of a .safetensors slider without reading its tensors ({} for other files)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    return dict(_read_safetensors_header(path)[0].get("__metadata__") or {})


def update_slider_metadata(
    path: str | Path, fields: Mapping[str, str], out: str | Path | None = None, remove: tuple[str, ...] = ()
) -> Path:
    """Set (and `remove`) header metadata of a .safetensors slider; the tensor bytes are copied unchanged.

    Writes `out` (default: `path` itself) atomically; the tensor data section is copied byte for byte,
    so every tool still loads the same weights.
    """
    path, out = Path(path), Path(out) if out is not None else Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors files hold metadata; convert it to .safetensors first")
    for key, value in fields.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise ValueError(f"metadata: {key!r} must map a string to a string, got {type(value).__name__}")
    header, data_start = _read_safetensors_header(path)
    metadata = {k: v for k, v in (header.pop("__metadata__", None) or {}).items() if k not in remove}
    metadata.update(fields)
    head = header_bytes({"__metadata__": metadata, **header})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as source, atomic_write(out) as target:
        target.write(head)
        source.seek(data_start)
        shutil.copyfileobj(source, target)
    return out


def sorted_header(data: bytes) -> bytes:
    """The same safetensors file with its JSON header in sorted key order, so equal sliders are equal bytes.

    The library writes the metadata in hash-map order, which changes from one save to the next.
    """
    (length,) = struct.unpack("<Q", data[:8])
    return header_bytes(json.loads(data[8 : 8 + length])) + data[8 + length :]


def header_bytes(header: Mapping) -> bytes:
    """A safetensors header in a fixed order: its 8-byte little-endian length, then the JSON with sorted
    keys, padded with spaces to a multiple of 8 bytes (the tensor data that follows is left as it is)."""
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def fit_to_module(
    down: torch.Tensor, up: torch.Tensor, module: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (down, up) shaped for `module` (1x1-conv factors on a Linear are squeezed); ValueError if not."""
    rank = down.shape[0]
    if isinstance(module, nn.Linear):
        if down.ndim == 4 and tuple(down.shape[2:]) == (1, 1) and tuple(up.shape[2:]) == (1, 1):
            down, up = down[:, :, 0, 0], up[:, :, 0, 0]
        need_down, need_up = (rank, module.in_features), (module.out_features, rank)
        what = f"Linear {module.in_features}->{module.out_features}"
    elif isinstance(module, nn.Conv2d):
        need_down = (rank, module.in_channels // module.groups, *module.kernel_size)
        need_up = (module.out_channels, rank, 1, 1)
        what = f"Conv2d {module.in_channels}->{module.out_channels} k{tuple(module.kernel_size)}"
    else:
        raise ValueError(f"module is a {type(module).__name__}, not a Linear or Conv2d")
    if tuple(down.shape) != need_down:
        raise ValueError(f"down weight has shape {tuple(down.shape)}, the module ({what}) needs {need_down}")
    if tuple(up.shape) != need_up:
        raise ValueError(f"up weight has shape {tuple(up.shape)}, the module ({what}) needs {need_up}")
    return down, up


def load_slider(path: str | Path, unet: nn.Module | None = None) -> SliderFile:
    """Read a slider/LoRA file of any supported layout; with `unet`, check every module and shape fits.

    Without `unet`, kohya names are decoded by the diffusers UNet vocabulary (sgm names by SDXL base's
    layout): enough to describe a file; `load_factors_into_unet` re-checks names and shapes.
    """
    path = weights_file(Path(path))
    tensors, header = read_tensor_file(path)
    raws = group_lora_keys(tensors, path)
    alpha_outside_tensors = fill_kohya_alphas(raws, path)
    fill_peft_alphas(raws, header, path)
    modules = None if unet is None else adaptable_modules(unet)
    resolve_kohya = kohya_resolver(unet)
    factors: dict[str, LoraFactors] = {}
    first_key: dict[str, str] = {}
    for raw in raws:  # in key order, so the first offending key is the one reported
        name = resolve_name(raw, resolve_kohya, modules, path)
        if name in factors:
            raise ValueError(
                f"{path}: key {raw.key!r} adapts module {name!r} again (first: {first_key[name]!r})"
            )
        down, up = raw.down, raw.up
        try:
            if modules is not None:
                down, up = fit_to_module(down, up, modules[name])
            factors[name] = LoraFactors(down, up, float(raw.alpha))
        except ValueError as error:
            raise ValueError(f"{path}: key {raw.key!r} does not fit UNet module {name!r}: {error}") from error
        first_key[name] = raw.key
    if KEY_FORMAT in header:
        source_format = "concept-transfer"
    elif any(raw.style == "peft" for raw in raws):
        source_format = "diffusers"
    elif alpha_outside_tensors or path.suffix != ".safetensors":
        source_format = "concept-sliders"
    elif any(looks_sgm(raw.name) for raw in raws):
        source_format = "kohya-sgm"
    else:
        source_format = "kohya"
    return SliderFile(factors=factors, metadata=header, source_path=path, source_format=source_format)


def factors_from_unet(unet: nn.Module, adapter_name: str = DEFAULT_ADAPTER) -> dict[str, LoraFactors]:
    """Copy the adapter's factors off the UNet's peft layers (lora_A = down, lora_B = up, alpha per layer)."""
    config = getattr(unet, "peft_config", {}).get(adapter_name)
    if config is not None and (config.use_rslora or config.use_dora):
        raise ValueError(f"adapter {adapter_name!r} uses rsLoRA/DoRA; slider files hold plain LoRA only")
    factors = {}
    for name, layer in lora_layers(unet, adapter_name):
        down = layer.lora_A[adapter_name].weight.detach().cpu().clone()
        up = layer.lora_B[adapter_name].weight.detach().cpu().clone()
        assert down.shape[0] == layer.r[adapter_name], f"{name}: peft rank disagrees with lora_A"
        factors[name] = LoraFactors(down, up, float(layer.lora_alpha[adapter_name]))
    if not factors:
        raise ValueError(f"no adapter named {adapter_name!r} on this UNet")
    return factors


def load_factors_into_unet(
    unet: nn.Module, factors: Mapping[str, LoraFactors], adapter_name: str = DEFAULT_ADAPTER
) -> list[str]:
    """Add a peft adapter carrying `factors` (per-module rank/alpha) to the UNet; returns its module paths.

    Like diffusers' `add_adapter`, this makes `adapter_name` the active adapter; to run several sliders
    together, activate them with `unet.set_adapters(names, weights)`.
    """
    if adapter_name in getattr(unet, "peft_config", {}):
        raise ValueError(f"adapter {adapter_name!r} is already attached to this UNet")
    if not factors:
        raise ValueError("factors: empty; nothing to load")
    modules = adaptable_modules(unet)
    fitted = {}
    for name in sorted(factors):
        if name not in modules:
            raise ValueError(f"module {name!r}: not in this UNet (a slider for another architecture?)")
        try:
            fitted[name] = fit_to_module(factors[name].down, factors[name].up, modules[name])
        except ValueError as error:
            raise ValueError(f"module {name!r}: {error}") from error
    # One default rank/alpha (the most common) plus exact-name patterns for the rest.
    rank = Counter(f.rank for f in factors.values()).most_common(1)[0][0]
    alpha = Counter(f.alpha for f in factors.values()).most_common(1)[0][0]
    config = replace(
        lora_config_for(rank, alpha, sorted(factors)),
        rank_pattern={_exact(n): f.rank for n, f in factors.items() if f.rank != rank},
        alpha_pattern={_exact(n): f.alpha for n, f in factors.items() if f.alpha != alpha},
    )
    unet.add_adapter(config, adapter_name=adapter_name)
    loaded = []
    with torch.no_grad():
        for name, layer in lora_layers(unet, adapter_name):
            down, up = fitted[name]
            assert layer.r[adapter_name] == down.shape[0], f"{name}: peft built the wrong rank"
            assert layer.lora_alpha[adapter_name] == factors[name].alpha, (
                f"{name}: peft built the wrong alpha"
            )
            layer.lora_A[adapter_name].weight.copy_(down)
            layer.lora_B[adapter_name].weight.copy_(up)
            loaded.append(name)
    assert sorted(loaded) == sorted(factors), "peft adapted other modules than the slider's"
    return loaded


def _exact(module_path: str) -> str:
    """A peft rank/alpha pattern matching exactly this module path (peft treats keys as regexes)."""
    return module_path.replace(".", r"\.")
