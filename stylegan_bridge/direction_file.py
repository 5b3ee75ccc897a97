"""Direction files: what `concept-transfer directions` writes and `concept-transfer mine --direction` reads.

One `.safetensors` file, ranked best first. Tensors:
    `w.<i>`              [w_dim]  unit vector of entry i (kind "w")
    `style.<i>.<layer>`  [dim]    style offset of entry i at delta = 1 (kind "style")
    `scores`             [K]      the entries' scores (also in the metadata)
Metadata (strings; JSON where structured):
    `concept_transfer.format` = "directions", `concept_transfer.format_version` = "1",
    `concept_transfer.method` = "channels" | "pca" | "svm" | ...,
    `concept_transfer.directions` = JSON list, one object per entry:
        {"kind": "channel" | "w" | "style", "name", "score", "sign",
         "layer", "layer_index", "channel"   (channel: delta is in units of the channel's std sigma_c),
         "sigma"                              (w: std of sampled w along the unit vector; delta unit),
         "ws"                                 (w, optional: the ws that get the offset, 0 = the input
                                               block, i + 1 = layer i; absent: every w),
         "info": {...}}                       (method-specific numbers: explained variance, accuracy ...)
    `concept_transfer.details` = JSON object (how it was found: seeds, region, psi, samples ...),
    `concept_transfer.generator` = JSON {"fingerprint", "w_dim", "layers": [names]}.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from pair_datasets.atomic import atomic_save
from stylegan_bridge.edits import Edit, channel_edit, w_edit
from stylegan_bridge.style_space import StyleStats, generator_fingerprint, style_layers

FORMAT = "directions"
FORMAT_VERSION = "1"
KINDS = ("channel", "w", "style")


@dataclass(frozen=True)
class Direction:
    """One ranked entry: a style channel, a w vector or a style-space vector, with its score."""

    kind: str
    name: str
    score: float = 0.0
    sign: float = 1.0
    layer: str | None = None
    layer_index: int | None = None
    channel: int | None = None
    w: torch.Tensor | None = None
    sigma: float | None = None
    ws: list[int] | None = None
    style: dict[str, torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"direction {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        needed = {"channel": ("layer", "channel"), "w": ("w",), "style": ("style",)}[self.kind]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"direction {self.name!r} of kind {self.kind!r} needs field {name!r}")

    def to_edit(self, G: nn.Module, stats: StyleStats | None = None) -> Edit:
        """The Edit this entry stands for on `G` (channel entries need the style statistics for sigma_c)."""
        if self.kind == "channel":
            if stats is None:
                raise ValueError(f"direction {self.name!r}: a channel edit needs style statistics")
            return channel_edit(G, self.layer, int(self.channel), stats, sign=self.sign)
        if self.kind == "w":
            layers = None if self.ws is None else tuple(self.ws)
            return w_edit(self.w, sigma=self.sigma or 1.0, sign=self.sign, label=self.name, w_layers=layers)
        return Edit(style={k: v * self.sign for k, v in self.style.items()}, label=self.name)

    def summary(self) -> dict[str, Any]:
        """The JSON-able part (everything but tensors)."""
        keys = ("kind", "name", "score", "sign", "layer", "layer_index", "channel", "sigma", "ws", "info")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass(frozen=True)
class DirectionFile:
    """A ranked list of directions, how they were found, and for which generator."""

    method: str
    directions: list[Direction]
    details: dict[str, Any] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)

    def pick(self, index: int, source: str = "direction file") -> Direction:
        """Entry `index` (0 = best); ValueError naming the file when out of range."""
        if not 0 <= index < len(self.directions):
            raise ValueError(
                f"{source}: has {len(self.directions)} direction(s); index {index} is out of range"
            )
        return self.directions[index]


def generator_summary(G: nn.Module) -> dict[str, Any]:
    """What a direction file records about its generator (checked again when the file is used)."""
    return {
        "fingerprint": generator_fingerprint(G),
        "w_dim": G.w_dim,
        "layers": [layer.name for layer in style_layers(G)],
    }


def save_directions(path: Path, data: DirectionFile) -> Path:
    """Write a direction file (format in the module docstring) atomically; returns the path."""
    if not data.directions:
        raise ValueError(f"{path}: no directions to write")
    tensors: dict[str, torch.Tensor] = {"scores": torch.tensor([float(d.score) for d in data.directions])}
    for i, direction in enumerate(data.directions):
        if direction.w is not None:
            tensors[f"w.{i}"] = direction.w.detach().float().cpu().contiguous()
        for layer, vector in (direction.style or {}).items():
            tensors[f"style.{i}.{layer}"] = vector.detach().float().cpu().contiguous()
    metadata = {
        "concept_transfer.format": FORMAT,
        "concept_transfer.format_version": FORMAT_VERSION,
        "concept_transfer.method": data.method,
        "concept_transfer.directions": json.dumps([d.summary() for d in data.directions]),
        "concept_transfer.details": json.dumps(data.details, sort_keys=True),
        "concept_transfer.generator": json.dumps(data.generator, sort_keys=True),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_save(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_directions(path: Path) -> DirectionFile:
    """Read a direction file; ValueError naming the file and the field when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: direction file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a safetensors direction file ({error})") from None
    if metadata.get("concept_transfer.format") != FORMAT:
        raise ValueError(
            f"{path}: not a direction file (metadata 'concept_transfer.format' is not {FORMAT!r})"
        )
    if metadata.get("concept_transfer.format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported direction file version {metadata.get('concept_transfer.format_version')!r}"
        )
    entries = _json_field(metadata, "concept_transfer.directions", path, list)
    directions = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: directions[{i}] is not an object")
        style = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"style.{i}.")}
        known = ("kind", "name", "score", "sign", "layer", "layer_index", "channel", "sigma", "ws", "info")
        unknown = sorted(set(entry) - set(known))
        if unknown:
            raise ValueError(f"{path}: directions[{i}] has unknown field(s) {unknown}")
        try:
            directions.append(Direction(**entry, w=tensors.get(f"w.{i}"), style=style or None))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: directions[{i}]: {error}") from None
    return DirectionFile(
        method=metadata.get("concept_transfer.method", ""),
        directions=directions,
        details=_json_field(metadata, "concept_transfer.details", path, dict),
        generator=_json_field(metadata, "concept_transfer.generator", path, dict),
    )


def check_generator(data: DirectionFile, G: nn.Module, source: str) -> None:
    """ValueError if the file's directions cannot apply to `G`; a warning if it was found on other weights."""
    recorded = data.generator
    if recorded.get("w_dim") not in (None, G.w_dim):
        raise ValueError(f"{source}: made for w_dim {recorded['w_dim']}, the generator has {G.w_dim}")
    names = {layer.name for layer in style_layers(G)}
    for direction in data.directions:
        missing = {direction.layer} - names if direction.layer else set(direction.style or {}) - names
        if missing:
            raise ValueError(
                f"{source}: direction {direction.name!r} uses layer(s) {sorted(missing)} the generator lacks"
            )
        if direction.ws and max(direction.ws) >= G.synthesis.num_ws:
            raise ValueError(
                f"{source}: direction {direction.name!r} edits ws {direction.ws}, the generator has "
                f"{G.synthesis.num_ws}"
            )
        if direction.w is not None and direction.w.numel() != G.w_dim:
            raise ValueError(
                f"{source}: direction {direction.name!r} has {direction.w.numel()} values, the generator's "
                f"w has {G.w_dim}"
            )
    if recorded.get("fingerprint") and recorded["fingerprint"] != generator_fingerprint(G):
        warnings.warn(
            f"{source}: directions were found on a different generator (weights differ)", stacklevel=2
        )


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_field(metadata: dict[str, str], key: str, path: Path, kind: type) -> Any:
    try:
        value = json.loads(metadata.get(key, "null"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON ({error})") from None
    if not isinstance(value, kind):
        raise ValueError(f"{path}: metadata {key!r} must be a JSON {kind.__name__}")
    return value
