"""`load_generator` / `export_generator`: every way a StyleGAN3 generator enters or leaves the toolkit.

Formats (chosen by the file suffix; settings live inside the file, never in its name):
    .pkl          NVlabs network pickle, loaded by the no-exec unpickler (`pickle_loader`).
    .safetensors  our export: the flat state dict, with the generator config as JSON in the metadata.
    .pt / .pth    {"config": init kwargs, "state_dict": ...}, read with torch.load(weights_only=True).
The opt-in NVlabs backend (`backend="nvlabs"`) hands a .pkl to NVlabs' own loader, which executes the
code stored in the pickle; it needs NVlabs StyleGAN3 on sys.path or in $STYLEGAN3_DIR.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from pair_datasets.atomic import atomic_save
from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.networks import Generator
from stylegan_bridge.pickle_loader import build_generator, load_nvlabs_pickle

FORMAT_NAME = "concept_transfer.stylegan3"
FORMAT_VERSION = "1"
BACKENDS = ("ours", "nvlabs")


def load_generator(
    path: str | Path, device: str | torch.device | None = None, backend: str = "ours"
) -> Generator | nn.Module:
    """A StyleGAN3 generator in eval mode from .pkl / .safetensors / .pt, on `device` (CPU by default)."""
    path = Path(path)
    device = resolve_device(device) if device is not None else None  # fail before the slow load
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not path.exists():
        raise FileNotFoundError(f"generator file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected a .pkl, .safetensors or .pt generator file")
    suffix = path.suffix.lower()
    if backend == "nvlabs":
        if suffix != ".pkl":
            raise ValueError(f"{path}: the nvlabs backend reads NVlabs .pkl files only")
        G = _load_with_nvlabs(path)
    elif suffix == ".pkl":
        G = load_nvlabs_pickle(path)
    elif suffix == ".safetensors":
        G = _load_safetensors(path)
    elif suffix in (".pt", ".pth"):
        G = _load_torch(path)
    else:
        raise ValueError(f"{path}: unknown generator format {suffix!r}; expected .pkl, .safetensors or .pt")
    return G.to(device) if device is not None else G


def resolve_device(device: str | torch.device, option: str = "--device") -> torch.device:
    """`device` as a torch.device; ValueError naming `option` when it is malformed or not available here."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{option} {device}: not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option} {device}: CUDA is not available on this machine")
    if resolved.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError(f"{option} {device}: MPS is not available on this machine")
    return resolved


def export_generator(G: Generator, path: str | Path) -> Path:
    """Write G's config and weights to .safetensors (or .pt) atomically; returns the path."""
    path = Path(path)
    if not isinstance(G, Generator):
        raise ValueError(f"can only export our Generator, got {type(G).__name__}")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"{path}: export format must be .safetensors or .pt, got {suffix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".safetensors":
        metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": G.config.to_json()}
        return atomic_save(path, lambda tmp: safetensors.torch.save_file(state, tmp, metadata=metadata))
    document = {"format": FORMAT_NAME, "config": G.config.to_init_kwargs(), "state_dict": state}
    return atomic_save(path, lambda tmp: torch.save(document, tmp))


def _load_safetensors(path: Path) -> Generator:
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (safetensors.SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a readable safetensors file: {error}") from None
    if "config" not in metadata:
        raise ValueError(
            f"{path}: safetensors metadata has no generator 'config' (not written by gan export?)"
        )
    config = GeneratorConfig.from_json(metadata["config"], source=f"{path} metadata 'config'")
    return build_generator(config, state, str(path))


def _load_torch(path: Path) -> Generator:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or truncated files
        raise ValueError(
            f"{path}: not a readable weights-only torch file: {type(error).__name__}: {error}"
        ) from None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("config"), dict)
        and isinstance(data.get("state_dict"), dict)
    ):
        raise ValueError(
            f"{path}: expected a dict with 'config' and 'state_dict' (as `gan export --out x.pt` writes)"
        )
    config = GeneratorConfig.from_init_kwargs(data["config"], source=f"{path} 'config'")
    return build_generator(config, dict(data["state_dict"]), str(path))


def nvlabs_available() -> bool:
    """True when NVlabs StyleGAN3 (dnnlib, torch_utils, legacy) can be imported, via $STYLEGAN3_DIR or sys.path."""
    _add_stylegan3_dir()
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("dnnlib", "torch_utils", "legacy"))


def _add_stylegan3_dir() -> None:
    folder = os.environ.get("STYLEGAN3_DIR")
    if folder and folder not in sys.path:
        if not Path(folder, "legacy.py").is_file():
            raise ValueError(f"STYLEGAN3_DIR={folder} does not hold NVlabs StyleGAN3 (no legacy.py)")
        sys.path.insert(0, folder)


def _load_with_nvlabs(path: Path) -> nn.Module:
    """NVlabs' own loader: executes the Python source stored in the pickle (opt-in only)."""
    if not nvlabs_available():
        raise ValueError(
            "backend 'nvlabs' needs NVlabs StyleGAN3 code: set STYLEGAN3_DIR to a clone of NVlabs/stylegan3"
        )
    print(
        f"warning: backend 'nvlabs' executes the Python code stored inside {path}; use it only for files you trust",
        file=sys.stderr,
    )
    import legacy  # NVlabs' module, found through STYLEGAN3_DIR / sys.path

    with open(path, "rb") as handle:
        data = legacy.load_network_pkl(handle)
    key = "G_ema" if data.get("G_ema") is not None else "G"
    return data[key].eval().requires_grad_(False)
