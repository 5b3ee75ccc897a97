"""GeneratorConfig: every constructor argument of a StyleGAN3 generator, frozen and validated.

Field names and defaults are those of NVlabs' `Generator(...)` keyword arguments (the `_init_kwargs` a
pickle stores), flattened: the mapping network's `mapping_kwargs` become `mapping_layers`,
`mapping_lr_multiplier` and `w_avg_beta`. `from_init_kwargs` / `to_init_kwargs` convert between the two.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# NVlabs' name in `mapping_kwargs` -> our flat field.
_MAPPING_FIELDS = {
    "num_layers": "mapping_layers",
    "lr_multiplier": "mapping_lr_multiplier",
    "w_avg_beta": "w_avg_beta",
}


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a StyleGAN3 generator (Karras et al. 2021); defaults are the FFHQ-1024 T config."""

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    # Mapping network.
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.998
    # Synthesis network: layer schedule.
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2**2.1
    last_stopband_rel: float = 2**0.3
    margin_size: int = 10
    output_scale: float = 0.25
    num_fp16_res: int = 4  # recorded for fidelity; this implementation computes in the caller's dtype
    # Synthesis layers.
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.999
    # NVlabs keyword arguments that do not change the computation (kept so that exports round-trip).
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("z_dim", "w_dim", "img_resolution", "img_channels", "mapping_layers", "channel_base"):
            _require(self, name, getattr(self, name) >= 1, "must be >= 1")
        for name in ("c_dim", "margin_size", "num_fp16_res"):
            _require(self, name, getattr(self, name) >= 0, "must be >= 0")
        _require(self, "channel_max", self.channel_max >= 1, "must be >= 1")
        _require(self, "num_layers", self.num_layers >= 1, "must be >= 1")
        _require(self, "num_critical", 0 <= self.num_critical < self.num_layers, "must be in [0, num_layers)")
        _require(self, "img_resolution", self.img_resolution >= 4, "must be >= 4")
        _require(
            self, "conv_kernel", self.conv_kernel >= 1 and self.conv_kernel % 2 == 1, "must be odd and >= 1"
        )
        _require(self, "filter_size", self.filter_size >= 1, "must be >= 1")
        _require(self, "lrelu_upsampling", self.lrelu_upsampling >= 1, "must be >= 1")
        for name in ("first_cutoff", "first_stopband", "last_stopband_rel", "output_scale"):
            _require(
                self, name, math.isfinite(getattr(self, name)) and getattr(self, name) > 0, "must be > 0"
            )
        _require(self, "conv_clamp", self.conv_clamp is None or self.conv_clamp > 0, "must be > 0 or None")

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network takes: input + num_layers + ToRGB."""
        return self.num_layers + 2

    @classmethod
    def from_init_kwargs(cls, kwargs: Mapping[str, Any], source: str = "init_kwargs") -> GeneratorConfig:
        """Build from NVlabs `Generator(**kwargs)` arguments (nested `mapping_kwargs`); unknown keys are errors."""
        kwargs = dict(kwargs)
        flat: dict[str, Any] = {}
        mapping = kwargs.pop("mapping_kwargs", None) or {}
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{source}: mapping_kwargs must be a dict, got {type(mapping).__name__}")
        mapping = dict(mapping)
        for key, value in mapping.items():
            if key not in _MAPPING_FIELDS:
                raise ValueError(f"{source}: unknown mapping_kwargs key {key!r}")
            flat[_MAPPING_FIELDS[key]] = value
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"} - set(_MAPPING_FIELDS.values())
        extra = {}
        for key, value in kwargs.items():
            if key in known:
                flat[key] = value
            elif key in _IGNORED_KWARGS:
                extra[key] = value
            else:
                raise ValueError(f"{source}: unknown generator argument {key!r}")
        for name in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
            if name not in flat:
                raise ValueError(f"{source}: missing generator argument {name!r}")
        try:
            coerced = _coerce(flat)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from None
        return cls(**coerced, extra=extra)

    def to_init_kwargs(self) -> dict[str, Any]:
        """NVlabs-style keyword arguments: synthesis keys flat, mapping keys under `mapping_kwargs`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["mapping_kwargs"] = {nv: out.pop(ours) for nv, ours in _MAPPING_FIELDS.items()}
        out.update(self.extra)
        return out

    def to_json(self) -> str:
        """JSON text of `to_init_kwargs()` (stored in safetensors metadata)."""
        return json.dumps(self.to_init_kwargs(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> GeneratorConfig:
        """Inverse of `to_json`; ValueError naming `source` when the text is not a config."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: generator config is not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: generator config must be a JSON object")
        return cls.from_init_kwargs(data, source=source)


# Arguments NVlabs generators accept that leave the fp32 forward pass unchanged.
_IGNORED_KWARGS = {"fused_modconv_default"}

_INT_FIELDS = {f.name for f in dataclasses.fields(GeneratorConfig) if f.type in ("int", int)}
_FLOAT_FIELDS = {f.name for f in dataclasses.fields(GeneratorConfig) if f.type in ("float", float)}


def _coerce(flat: dict[str, Any]) -> dict[str, Any]:
    """Plain Python numbers (pickles may hold numpy scalars; JSON holds 2.0 for 2)."""
    out = {}
    for key, value in flat.items():
        try:
            out[key] = _coerce_one(key, value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"generator argument {key!r} has an invalid value {value!r}") from None
    return out


def _coerce_one(key: str, value: Any) -> Any:
    """One value as the plain Python type of its field (int fields must hold whole numbers)."""
    if key == "use_radial_filters":
        return bool(value)
    if key == "conv_clamp" and value is None:
        return None
    if key in _INT_FIELDS:
        if float(value) != int(value):
            raise ValueError(f"{key} is not a whole number")
        return int(value)
    if key in _FLOAT_FIELDS or key == "conv_clamp":
        return float(value)  # float(None) is a TypeError: a number is required
    return value


def _require(config: GeneratorConfig, name: str, ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"GeneratorConfig.{name} {message}, got {getattr(config, name)!r}")
