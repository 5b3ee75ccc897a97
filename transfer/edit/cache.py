"""Inversions on disk, so a sweep, a second run or the studio inverts a photo once.

File: `<folder>/<key>.safetensors` with the tensors `latents` (`x_T`), `timesteps` and, for
edit-friendly inversions, `noise_maps`; the header holds the format and every field of the key as
JSON, checked on reading. The key is the hash of the photo's bytes, the model's fingerprint, the
inversion settings, the edited size and the precision. Written atomically; an unreadable or
mismatching file is a miss (and is replaced by the next write).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from pair_datasets.atomic import atomic_save
from transfer.edit.inversion import Inversion

CACHE_FORMAT = "concept-transfer-inversion/1"
MODEL_PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")
SAMPLES_PER_TENSOR = 4096


def _config_json(config: Any) -> str:
    # diffusers configs are mappings; transformers configs (the text encoders) have `to_dict`.
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    return json.dumps({k: v for k, v in data.items() if not k.startswith("_")}, sort_keys=True, default=str)


@torch.no_grad()
def model_fingerprint(pipe: Any) -> str:
    """16 hex digits naming the model: every part's class and config, every tensor's name, shape, dtype
    and up to 4,096 evenly spaced values of it.

    Sampled rather than whole: hashing all of SDXL's 3.5 B parameters takes longer than the inversion
    it saves, and a fine-tune or a merged LoRA changes values throughout the tensors it touches.
    Call it with the sliders off (composition weight 0), before peft adapters are added.
    """
    digest = hashlib.sha256(_config_json(pipe.scheduler.config).encode())
    for part in MODEL_PARTS:
        module = getattr(pipe, part, None)
        if module is None:
            continue
        digest.update(
            f"{part}:{type(module).__name__}:{_config_json(getattr(module, 'config', None))}".encode()
        )
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            index = torch.linspace(0, flat.numel() - 1, min(flat.numel(), SAMPLES_PER_TENSOR)).long()
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(flat[index.to(flat.device)].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_key(fields: dict[str, Any]) -> str:
    """The file stem of an inversion: 24 hex digits of the SHA-256 of its key fields."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


class InversionCache:
    """A folder of inversions by key; `load` returns None on a miss, `save` writes atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"--inversion-cache {self.folder}: exists and is not a folder")

    def path(self, fields: dict[str, Any]) -> Path:
        """Where the inversion with these key fields lives."""
        return self.folder / f"{cache_key(fields)}.safetensors"

    def load(self, fields: dict[str, Any], device: torch.device | str = "cpu") -> Inversion | None:
        """The stored inversion for `fields` on `device`, or None (absent, unreadable or another key)."""
        path = self.path(fields)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as stored:
                metadata = stored.metadata() or {}
                if metadata.get("format") != CACHE_FORMAT or metadata.get("key") != json.dumps(
                    fields, sort_keys=True
                ):
                    return None
                tensors = {name: stored.get_tensor(name) for name in stored.keys()}  # noqa: SIM118
        except (OSError, SafetensorError):
            return None
        maps = tensors.get("noise_maps")
        return Inversion(
            tensors["latents"].to(device), tensors["timesteps"], None if maps is None else maps.to(device)
        )

    def save(self, fields: dict[str, Any], inversion: Inversion) -> Path:
        """Write `inversion` under `fields` (atomically); returns the file."""
        tensors = {"latents": inversion.latents, "timesteps": inversion.timesteps}
        if inversion.noise_maps is not None:
            tensors["noise_maps"] = inversion.noise_maps
        tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        metadata = {"format": CACHE_FORMAT, "key": json.dumps(fields, sort_keys=True)}
        self.folder.mkdir(parents=True, exist_ok=True)
        return atomic_save(self.path(fields), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
