"""Read LoRA weight files of every layout a slider may come in, into per-module (down, up, alpha).

Layouts:
* kohya (ours, ai-toolkit, LECO, the original Concept Sliders code, sd-scripts): `lora_unet_<module>`
  with `.lora_down.weight`, `.lora_up.weight` and usually a scalar `.alpha`; module names in diffusers
  spelling or the LDM/sgm spelling, flattened with `_`.
* diffusers/peft: `unet.<dotted module>.lora_A.weight` / `.lora_B.weight` (or `.lora.down/.lora.up`,
  or the old `processor.to_q_lora.down` form); alpha only in the `lora_adapter_metadata` JSON header.

Files of the original Concept Sliders code may lack `.alpha` tensors; their rank/alpha were kept only in
the file name (`<name>_alpha1.0_rank4_noxattn_last.pt`). That name is read here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

log = logging.getLogger(__name__)

PT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"
DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"

_KOHYA = re.compile(r"^lora_unet_(?P<name>[^.]+)\.(?P<part>lora_down\.weight|lora_up\.weight|alpha)$")
_KOHYA_TEXT = re.compile(r"^lora_te\d?_")
_TEXT_PREFIXES = ("text_encoder.", "text_encoder_2.", "te.", "te1.", "te2.")
_PEFT_PREFIXES = ("unet.", "base_model.model.")
_PEFT_PARTS = (
    (re.compile(r"^(?P<name>.+?)\.lora_A(?:\.[^.]+)?\.weight$"), "down"),
    (re.compile(r"^(?P<name>.+?)\.lora_B(?:\.[^.]+)?\.weight$"), "up"),
    (re.compile(r"^(?P<name>.+?)(?:\.lora|\.lora_linear_layer|_lora)\.down\.weight$"), "down"),
    (re.compile(r"^(?P<name>.+?)(?:\.lora|\.lora_linear_layer|_lora)\.up\.weight$"), "up"),
    (re.compile(r"^(?P<name>.+?)\.lora_down\.weight$"), "down"),
    (re.compile(r"^(?P<name>.+?)\.lora_up\.weight$"), "up"),
    (re.compile(r"^(?P<name>.+?)\.alpha$"), "alpha"),
)
_FILENAME_ALPHA = re.compile(r"(?:^|_)alpha(?P<value>\d+(?:\.\d+)?(?:e-?\d+)?)(?=_|$)")
_FILENAME_RANK = re.compile(r"(?:^|_)rank(?P<value>\d+)(?=_|$)")


@dataclass
class RawFactor:
    """One module's LoRA tensors as found in a file, before its name is resolved against a UNet."""

    name: str  # kohya flat name (`down_blocks_1_..._to_q`) or dotted diffusers path
    style: str  # "kohya" or "peft"
    key: str  # the file key of its down weight, for error messages
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None

    @property
    def rank(self) -> int:
        """The LoRA rank r (rows of the down weight)."""
        assert self.down is not None
        return int(self.down.shape[0])


def weights_file(path: Path) -> Path:
    """The file to read: `path` itself, or the weights file inside a diffusers `save_lora_weights` folder."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        if not (path / DIFFUSERS_WEIGHT_NAME).is_file():
            raise ValueError(f"{path}: is a folder without {DIFFUSERS_WEIGHT_NAME}")
        return path / DIFFUSERS_WEIGHT_NAME
    return path


def read_tensor_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string header of a .safetensors file, or tensors of a .pt file (safe unpickling only)."""
    path = weights_file(path)
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                header = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own error type for corrupt/truncated files
            raise ValueError(f"{path}: not a readable .safetensors file ({error})") from error
        return tensors, header
    if path.suffix in PT_SUFFIXES:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated zip, pickle with code, non-tensor objects
            raise ValueError(f"{path}: not a readable weights-only torch file ({error})") from error
        if not isinstance(loaded, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
        ):
            raise ValueError(f"{path}: expected a flat dict of named tensors (a LoRA state dict)")
        return dict(loaded), {}
    raise ValueError(f"{path}: unknown LoRA file type {path.suffix!r}; expected .safetensors or .pt")


def is_text_encoder_key(key: str) -> bool:
    """Whether a LoRA file key adapts a text encoder (kohya `lora_te1_*`, diffusers `text_encoder.*`)."""
    return bool(_KOHYA_TEXT.match(key)) or key.startswith(_TEXT_PREFIXES)


def _classify(key: str, path: Path) -> tuple[str, str, str]:
    """(style, module name, part) of one key, where part is down/up/alpha."""
    match = _KOHYA.match(key)
    if match:
        part = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}[match["part"]]
        return "kohya", match["name"], part
    if "lora_magnitude_vector" in key or key.endswith(".dora_scale"):
        raise ValueError(f"{path}: key {key!r} is a DoRA weight; only plain LoRA sliders are supported")
    stripped = key
    for prefix in _PEFT_PREFIXES:
        stripped = stripped.removeprefix(prefix)
    if stripped != key or ".lora" in key or "_lora." in key:
        for pattern, part in _PEFT_PARTS:
            match = pattern.match(stripped)
            if match:
                return "peft", _clean_peft_name(match["name"]), part
    raise ValueError(
        f"{path}: key {key!r} is not a LoRA weight of a UNet module (expected "
        "lora_unet_<module>.lora_down.weight/.lora_up.weight/.alpha or unet.<module>.lora_A/lora_B.weight)"
    )


def _clean_peft_name(name: str) -> str:
    """Undo the old diffusers attention-processor spelling (`attn1.processor.to_out` → `attn1.to_out.0`)."""
    name = name.replace(".processor.", ".")
    if name.endswith(".to_out"):
        name += ".0"
    return name


def group_lora_keys(tensors: Mapping[str, torch.Tensor], path: Path) -> list[RawFactor]:
    """Group a file's keys into one RawFactor per module, in key order; refuse anything else."""
    if not tensors:
        raise ValueError(f"{path}: contains no tensors")
    text_keys = [key for key in tensors if is_text_encoder_key(key)]
    if len(text_keys) == len(tensors):
        raise ValueError(f"{path}: holds only text-encoder LoRA weights; a slider adapts the UNet")
    if text_keys:
        # Community SDXL LoRAs (kohya) usually train the text encoders too; the gate switches the UNet only.
        log.warning("%s: %d text-encoder weights (%s...) skipped; the UNet part is applied", path,
                    len(text_keys), sorted(text_keys)[0].split(".")[0])  # fmt: skip
    groups: dict[tuple[str, str], RawFactor] = {}
    for key in sorted(set(tensors) - set(text_keys)):
        style, name, part = _classify(key, path)
        raw = groups.setdefault((style, name), RawFactor(name=name, style=style, key=key))
        tensor = tensors[key]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{path}: tensor {key!r} holds NaN or infinite values; the file is broken (a training "
                "run that diverged?) and would render black or noisy images"
            )
        if part == "alpha":
            if tensor.numel() != 1:
                raise ValueError(
                    f"{path}: key {key!r} must be a scalar alpha, has shape {tuple(tensor.shape)}"
                )
            raw.alpha = float(tensor.float().item())
        elif getattr(raw, part) is not None:
            raise ValueError(f"{path}: key {key!r} repeats the {part} weight of module {name!r}")
        else:
            setattr(raw, part, tensor)
            if part == "down":
                raw.key = key
    for raw in groups.values():
        for part in ("down", "up"):
            if getattr(raw, part) is None:
                raise ValueError(
                    f"{path}: key {raw.key!r} has no matching {part} weight for module {raw.name!r} "
                    f"(truncated or incomplete file?)"
                )
        if raw.down.ndim not in (2, 4) or raw.up.ndim != raw.down.ndim or raw.up.shape[1] != raw.rank:
            raise ValueError(
                f"{path}: key {raw.key!r}: down {tuple(raw.down.shape)} and up {tuple(raw.up.shape)} "
                "are not the two factors of one LoRA (rank mismatch)"
            )
    return list(groups.values())


def alpha_rank_from_filename(path: Path) -> tuple[float | None, int | None]:
    """(alpha, rank) from an original Concept Sliders file name such as `x_alpha1.0_rank4_noxattn_last.pt`."""
    alpha = _FILENAME_ALPHA.search(path.stem)
    rank = _FILENAME_RANK.search(path.stem)
    return (float(alpha["value"]) if alpha else None, int(rank["value"]) if rank else None)


def fill_kohya_alphas(raws: list[RawFactor], path: Path) -> bool:
    """Give kohya modules without `.alpha` the alpha of the file name, else alpha = rank (warned).

    Returns True when any alpha came from outside the tensors (an original Concept Sliders file).
    """
    missing = [raw for raw in raws if raw.style == "kohya" and raw.alpha is None]
    if not missing:
        return False
    alpha, rank = alpha_rank_from_filename(path)
    if alpha is None:
        log.warning(
            "%s: no .alpha tensors and no `alpha<value>` in the file name; assuming alpha = rank", path
        )
    if rank is not None and any(raw.rank != rank for raw in missing):
        log.warning("%s: file name says rank %d but the tensors have rank %d", path, rank, missing[0].rank)
    for raw in missing:
        raw.alpha = float(raw.rank) if alpha is None else alpha
    return True


def _pattern_value(patterns: Mapping[str, float], name: str) -> float | None:
    """peft's rank/alpha pattern rule: a key matches a module path if it matches a dotted suffix of it."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", name):
            return float(value)
    return None


def fill_peft_alphas(raws: list[RawFactor], header: Mapping[str, str], path: Path) -> None:
    """Alphas of diffusers/peft modules from the `lora_adapter_metadata` header; else alpha = rank."""
    missing = [raw for raw in raws if raw.style == "peft" and raw.alpha is None]
    if not missing:
        return
    config = _peft_config_from_header(header, path)
    if config.get("use_rslora") or config.get("use_dora"):
        raise ValueError(f"{path}: {DIFFUSERS_METADATA_KEY} uses rsLoRA/DoRA, which sliders do not support")
    default = config.get("lora_alpha")
    patterns = config.get("alpha_pattern") or {}
    for raw in missing:
        value = _pattern_value(patterns, raw.name)
        if value is None and default is not None:
            value = float(default)
        raw.alpha = float(raw.rank) if value is None else value


def _peft_config_from_header(header: Mapping[str, str], path: Path) -> dict:
    """The UNet's LoraConfig fields stored by diffusers (keys may carry a `unet.` prefix)."""
    text = header.get(DIFFUSERS_METADATA_KEY)
    if not text:
        return {}
    try:
        stored = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: header {DIFFUSERS_METADATA_KEY} is not valid JSON ({error})") from error
    if not isinstance(stored, dict):
        raise ValueError(f"{path}: header {DIFFUSERS_METADATA_KEY} must be a JSON object")
    if any(key.startswith("unet.") for key in stored):
        return {key.removeprefix("unet."): value for key, value in stored.items() if key.startswith("unet.")}
    return stored


def resolve_name(
    raw: RawFactor,
    resolve_kohya: Callable[[str], str | None],
    modules: Mapping[str, object] | None,
    path: Path,
) -> str:
    """The dotted diffusers path of a module; refuse names the UNet (when given) does not have."""
    dotted = resolve_kohya(raw.name) if raw.style == "kohya" else raw.name
    if dotted is None or (modules is not None and dotted not in modules):
        raise ValueError(
            f"{path}: key {raw.key!r}: this UNet has no module {raw.name!r} "
            "(a LoRA for another model architecture?)"
        )
    return dotted
