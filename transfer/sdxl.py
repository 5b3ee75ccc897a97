"""Load an SDXL pipeline from a hub id, a local diffusers folder or a single checkpoint file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline
from safetensors import safe_open

from stylegan_bridge.loading import resolve_device

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


@dataclass(frozen=True)
class Placement:
    """Where and in which precision the pipeline runs; the VAE stays fp32 on half-precision devices."""

    device: torch.device
    dtype: torch.dtype


def choose_placement(device: str | None = None, dtype: str | None = None) -> Placement:
    """CUDA → bf16 (fp16 if bf16 is unsupported), MPS → fp16, CPU → fp32; explicit choices win."""
    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    resolved = resolve_device(device)
    if dtype is not None:
        names = {
            "fp32": torch.float32,
            "float32": torch.float32,
            "fp16": torch.float16,
            "float16": torch.float16,
            "bf16": torch.bfloat16,
            "bfloat16": torch.bfloat16,
        }
        if dtype not in names:
            raise ValueError(f"dtype: unknown precision {dtype!r}; choose fp32, fp16 or bf16")
        if resolved.type == "cpu" and names[dtype] == torch.float16:
            # diffusers warns that fp16 pipelines fail on the CPU; they do, after the model has loaded.
            raise ValueError(f"--dtype {dtype}: half precision does not run on the CPU; use fp32 (or bf16)")
        return Placement(resolved, names[dtype])
    if resolved.type == "cuda":
        return Placement(resolved, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if resolved.type == "mps":
        return Placement(resolved, torch.float16)
    return Placement(resolved, torch.float32)


def resolve_model(model: str, aliases: Mapping[str, Path] | None = None) -> str:
    """The folder or file a named model (`aliases`, e.g. the CLI's `toy`) stands for; else `model`."""
    if not aliases or model not in aliases:
        return model
    path = Path(aliases[model])
    if not path.exists():
        raise FileNotFoundError(f"--model {model}: the model it names is missing ({path})")
    return str(path)


def _looks_like_path(model: str) -> bool:
    # A hub id is `owner/name`: anything with a trailing slash or more than one '/' is a path.
    return (
        model.startswith((".", "/", "~"))
        or model.endswith((*SINGLE_FILE_SUFFIXES, "/"))
        or model.count("/") > 1
        or Path(model).exists()
    )


def is_lora_file(path: Path) -> bool:
    """Whether a .safetensors file holds only LoRA weights (a slider), not a model."""
    if path.suffix != ".safetensors":
        return False
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception:  # not readable as safetensors: the pipeline loader says what is wrong
        return False
    return bool(keys) and all("lora" in key.lower() or key.endswith(".alpha") for key in keys)


def hub_unreachable(error: BaseException) -> bool:
    """Whether loading failed because the model is not cached and the hub cannot be asked (offline)."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return True
        seen = seen.__cause__ or seen.__context__
    # diffusers re-raises the hub's error as its own OSError, keeping only the text.
    return "not fully cached locally" in str(error) or "outgoing traffic has been disabled" in str(error)


def load_sdxl(
    model: str,
    device: str | None = None,
    dtype: str | None = None,
    offload: bool = False,
    aliases: Mapping[str, Path] | None = None,
) -> StableDiffusionXLPipeline:
    """Load SDXL from `model` (hub id, diffusers folder or single .safetensors/.ckpt file) and place it.

    `offload=True` uses accelerate's model CPU offload on CUDA, for GPUs with little memory; `aliases`
    maps names (the command line's `toy`) to folders.
    """
    model = resolve_model(model, aliases)
    placement = choose_placement(device, dtype)
    path = Path(model).expanduser()
    if _looks_like_path(model) and not path.exists():
        raise FileNotFoundError(f"--model {model}: no such file or folder")
    if path.is_file() and path.suffix not in SINGLE_FILE_SUFFIXES:
        raise ValueError(f"--model {model}: a single-file checkpoint must be .safetensors or .ckpt")
    if path.is_dir() and not (path / "model_index.json").exists():
        raise ValueError(f"--model {model}: folder has no model_index.json (not a diffusers pipeline)")
    if path.is_file() and is_lora_file(path):
        raise ValueError(
            f"--model {model}: is a LoRA / slider file, not an SDXL checkpoint; pass it as --slider"
        )
    try:
        if path.is_file():
            pipe = StableDiffusionXLPipeline.from_single_file(str(path), torch_dtype=placement.dtype)
        elif path.is_dir():
            pipe = StableDiffusionXLPipeline.from_pretrained(str(path), torch_dtype=placement.dtype)
        else:
            pipe = StableDiffusionXLPipeline.from_pretrained(model, torch_dtype=placement.dtype)
    except (OSError, ValueError) as error:  # huggingface_hub's bad-repo-id error is a ValueError
        if hub_unreachable(error):
            raise ValueError(
                f"--model {model}: not in the local Hugging Face cache, and the hub cannot be reached "
                f"({'HF_HUB_OFFLINE is set' if os.environ.get('HF_HUB_OFFLINE') else 'no connection'}); "
                f"download it where the hub is reachable (huggingface-cli download {model}), or pass a local "
                "diffusers folder or single .safetensors file"
            ) from error
        raise ValueError(f"--model {model}: could not load an SDXL pipeline ({error})") from error
    if placement.dtype != torch.float32:
        # The SDXL VAE overflows in fp16; keep it in fp32 (the pipeline upcasts its input itself).
        pipe.vae.to(dtype=torch.float32)
    if offload and placement.device.type == "cuda":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(placement.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
