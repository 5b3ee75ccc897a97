"""StyleSpace of StyleGAN3 (Wu et al. 2021, "StyleSpace Analysis"): per-layer affine outputs, statistics, edits.

Layer addressing (the same as `stylegan_bridge.synthesis`):
    - The `input` block (Fourier features) is NOT part of the style space: its `affine` gives 4 values
      (cos, sin, tx, ty) that rotate/translate the features, not per-channel styles.
    - Layer 0 is the first `SynthesisLayer` after `input` (`L0_36_512` at 1024 px); layer i is
      `L{i}_{size}_{channels}` and reads ws[:, i + 1]; the last index (`num_layers`, 14 at 1024 px) is ToRGB.
    - Channel c of layer i is output c of `L{i}_*.affine` (one per *input* channel of the layer's
      modulated convolution). For ToRGB that is the affine output *before* NVlabs' 1/sqrt(in) gain.
Reproducing "layer 4, channel 847" (Concept Sliders): here that is `L4_84_1024` of an R generator (the T
config has only 512 channels at L4, so channel 847 implies the R config). Code that lists the style dict
with `input` first (stylegan3-editing's `W2S` order) would call `L3_52_1024` "layer 4"; pass the NVlabs
name (`--layer L3_52_1024`) to be unambiguous: every `layer` argument accepts an index, `L4` or a full name.

Edits are forward hooks on the affine modules, registered inside a context manager and removed after it;
the rendered ws are unchanged, so before and after differ only by the style offset.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from pair_datasets.atomic import atomic_save

STATS_VERSION = 1
CACHE_ENV = "CONCEPT_TRANSFER_CACHE"


@dataclass(frozen=True)
class StyleLayer:
    """One layer of the style space: index (0 = first layer after `input`), NVlabs name, style dim, size."""

    index: int
    name: str
    dim: int
    size: int
    is_torgb: bool


def synthesis_layers(G: nn.Module) -> list[tuple[str, nn.Module]]:
    """(NVlabs name, module) of every synthesis layer after `input` (works for NVlabs' own modules too)."""
    return [(name, getattr(G.synthesis, name)) for name in G.synthesis.layer_names]


def style_layers(G: nn.Module) -> list[StyleLayer]:
    """The style-space layers of `G` in order, L0 .. ToRGB (the `input` block is not included)."""
    return [
        StyleLayer(i, name, layer.affine.out_features, layer.out_size, layer.is_torgb)
        for i, (name, layer) in enumerate(synthesis_layers(G))
    ]


def resolve_layer(G: nn.Module, key: int | str) -> StyleLayer:
    """A style layer by index (`4`, `"4"`, `-1` = ToRGB), short name (`"L4"`) or NVlabs name (`"L4_84_512"`)."""
    layers = style_layers(G)
    names = ", ".join(layer.name for layer in layers)
    if isinstance(key, str):
        text = key.strip()
        if text.lstrip("-").isdigit():
            key = int(text)
        else:
            found = [layer for layer in layers if text in (layer.name, layer.name.split("_")[0])]
            if not found:
                raise ValueError(f"layer {key!r}: no such style layer; layers are {names}")
            return found[0]
    if not -len(layers) <= key < len(layers):
        raise ValueError(f"layer {key}: index out of range 0..{len(layers) - 1} (layers: {names})")
    return layers[key]


def z_from_seeds(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """z [B, z_dim] float32, one per seed as NVlabs' gen_images.py: np.random.RandomState(seed).randn(z_dim)."""
    if not seeds:
        raise ValueError("seeds: need at least one seed")
    rows = [np.random.RandomState(int(seed) % 2**32).randn(z_dim) for seed in seeds]
    return torch.from_numpy(np.stack(rows)).to(torch.float32)


def ws_from_seeds(
    G: nn.Module, seeds: Sequence[int], psi: float = 1.0, cutoff: int | None = None
) -> torch.Tensor:
    """ws [B, num_ws, w_dim] of the given seeds, truncated with psi for the first `cutoff` ws (all if None)."""
    if G.c_dim > 0:
        raise ValueError(
            f"the generator is conditional (c_dim={G.c_dim}); only unconditional ones are supported"
        )
    device = next(G.parameters()).device
    z = z_from_seeds(seeds, G.z_dim).to(device)
    with torch.no_grad():
        return G.mapping(z, None, truncation_psi=psi, truncation_cutoff=cutoff)


def style_vectors(G: nn.Module, ws: torch.Tensor) -> dict[str, torch.Tensor]:
    """{layer name: styles [B, dim]} for ws [B, num_ws, w_dim], by calling each affine on its w directly.

    The affines depend on ws only, so no convolution runs; `capture_styles` records the same vectors from
    a real forward pass (the reference path the tests compare with).
    """
    assert ws.ndim == 3 and ws.shape[1] == G.synthesis.num_ws, tuple(ws.shape)
    ws = ws.to(torch.float32)
    return {name: layer.affine(ws[:, i + 1]) for i, (name, layer) in enumerate(synthesis_layers(G))}


@contextmanager
def capture_styles(G: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record every layer's affine output during forward passes inside the block: {name: [B, dim]}."""
    captured: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            captured[name] = output.detach()

        return hook

    handles = [layer.affine.register_forward_hook(make_hook(name)) for name, layer in synthesis_layers(G)]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def style_offsets(G: nn.Module, offsets: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Inside the block, layer l's styles become `affine(w) + offsets[l]` ([dim] or [B, dim]); hooks removed after."""
    handles = []
    try:
        for key, offset in offsets.items():
            layer = resolve_layer(G, key)
            if offset.shape[-1] != layer.dim or offset.ndim not in (1, 2):
                raise ValueError(
                    f"style offset for {layer.name}: expected [{layer.dim}] or [B, {layer.dim}], got {tuple(offset.shape)}"
                )
            # prepend: the offset is part of the layer's styles, so observers (capture_styles) see it.
            affine = getattr(G.synthesis, layer.name).affine
            handles.append(affine.register_forward_hook(_offset_hook(offset), prepend=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _offset_hook(offset: torch.Tensor):
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        assert offset.ndim == 1 or offset.shape[0] == output.shape[0], (
            tuple(offset.shape),
            tuple(output.shape),
        )
        return output + offset.to(device=output.device, dtype=output.dtype)

    return hook


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """NCHW images in [-1, 1] -> RGB PIL images, quantised as NVlabs does (x * 127.5 + 128, clamped)."""
    pixels = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    arrays = pixels.permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, C]
    return [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).convert("RGB") for a in arrays]


@dataclass(frozen=True)
class StyleStats:
    """Per-channel mean and std of the styles over `num_samples` random z at truncation `psi` / `cutoff`."""

    mean: dict[str, torch.Tensor]
    std: dict[str, torch.Tensor]
    num_samples: int
    psi: float
    cutoff: int | None
    seed: int
    fingerprint: str

    def sigma(self, layer: str, channel: int) -> float:
        """The std of one channel (the unit of `delta` in channel edits)."""
        if layer not in self.std:
            raise ValueError(f"style statistics have no layer {layer!r}")
        if not 0 <= channel < self.std[layer].numel():
            raise ValueError(
                f"channel {channel} out of range 0..{self.std[layer].numel() - 1} for layer {layer}"
            )
        return float(self.std[layer][channel])


def generator_fingerprint(G: nn.Module) -> str:
    """sha256 of the generator's config and every parameter and buffer (independent of the file format)."""
    digest = hashlib.sha256()
    config = getattr(G, "config", None)
    digest.update((config.to_json() if config is not None else "").encode())
    for name, tensor in sorted(G.state_dict().items()):
        data = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
        digest.update(f"{name}:{tuple(data.shape)}".encode())
        digest.update(data.tobytes())
    return digest.hexdigest()


def compute_style_stats(
    G: nn.Module,
    num_samples: int = 100_000,
    psi: float = 1.0,
    cutoff: int | None = None,
    seed: int = 0,
    batch: int = 4096,
) -> StyleStats:
    """Mean and std of every style channel over `num_samples` z ~ N(0, I) (mapping + affines only)."""
    if num_samples < 2:
        raise ValueError(f"style statistics need at least 2 samples, got {num_samples}")
    device = next(G.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    sums: dict[str, torch.Tensor] = {}
    squares: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for start in range(0, num_samples, batch):
            z = torch.randn([min(batch, num_samples - start), G.z_dim], generator=generator).to(device)
            ws = G.mapping(z, None, truncation_psi=psi, truncation_cutoff=cutoff)
            for name, styles in style_vectors(G, ws).items():
                styles = styles.to(torch.float64)
                sums[name] = sums.get(name, 0) + styles.sum(dim=0)
                squares[name] = squares.get(name, 0) + styles.square().sum(dim=0)
    mean = {name: (total / num_samples).float().cpu() for name, total in sums.items()}
    std = {
        name: (squares[name] / num_samples - (sums[name] / num_samples).square())
        .clamp_min(0)
        .sqrt()
        .float()
        .cpu()
        for name in sums
    }
    return StyleStats(mean, std, num_samples, float(psi), cutoff, seed, generator_fingerprint(G))


def default_cache_dir() -> Path:
    """Where style statistics are cached: $CONCEPT_TRANSFER_CACHE/stylestats, else ~/.cache/concept-transfer/stylestats."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "stylestats"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "concept-transfer" / "stylestats"


def _stats_key(
    fingerprint: str, num_samples: int, psi: float, cutoff: int | None, seed: int
) -> dict[str, object]:
    return {
        "fingerprint": fingerprint,
        "num_samples": num_samples,
        "psi": float(psi),
        "cutoff": cutoff,
        "seed": seed,
        "version": STATS_VERSION,
    }


def stats_cache_path(cache_dir: Path, key: Mapping[str, object]) -> Path:
    """The cache file for one (generator, N, psi, cutoff, seed) key."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return Path(cache_dir) / f"{name}.safetensors"


def style_stats(
    G: nn.Module,
    num_samples: int = 100_000,
    psi: float = 1.0,
    cutoff: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> StyleStats:
    """Style statistics of `G`, read from the cache when present, else computed and written there atomically."""
    fingerprint = generator_fingerprint(G)
    key = _stats_key(fingerprint, num_samples, psi, cutoff, seed)
    path = stats_cache_path(cache_dir or default_cache_dir(), key)
    if use_cache and path.is_file():
        cached = _read_stats(path, key)
        if cached is not None:
            return cached
    stats = compute_style_stats(G, num_samples, psi, cutoff, seed)
    if use_cache:
        write_stats(path, stats)
    return stats


def write_stats(path: Path, stats: StyleStats) -> None:
    """Save `stats` as safetensors (`mean.<layer>`, `std.<layer>`, key in the metadata), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"mean.{k}": v.contiguous() for k, v in stats.mean.items()}
    tensors.update({f"std.{k}": v.contiguous() for k, v in stats.std.items()})
    key = _stats_key(stats.fingerprint, stats.num_samples, stats.psi, stats.cutoff, stats.seed)
    metadata = {"concept_transfer.stylestats": json.dumps(key, sort_keys=True)}
    atomic_save(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _read_stats(path: Path, key: Mapping[str, object]) -> StyleStats | None:
    """The cached stats at `path` if the file is readable and was written for `key`, else None (recompute)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            stored = json.loads((handle.metadata() or {}).get("concept_transfer.stylestats", "null"))
        tensors = load_file(str(path))
    except (OSError, SafetensorError, ValueError):
        return None
    if stored != json.loads(json.dumps(key, sort_keys=True)):
        return None
    mean = {k.removeprefix("mean."): v for k, v in tensors.items() if k.startswith("mean.")}
    std = {k.removeprefix("std."): v for k, v in tensors.items() if k.startswith("std.")}
    if set(mean) != set(std) or not mean:
        return None
    return StyleStats(
        mean,
        std,
        int(key["num_samples"]),
        float(key["psi"]),
        key["cutoff"],
        int(key["seed"]),
        str(key["fingerprint"]),
    )
