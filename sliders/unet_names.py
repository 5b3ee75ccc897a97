"""Module names of the SDXL UNet in the spellings LoRA files use, mapped to diffusers dotted paths.

Kohya-style files flatten a module path with `_` (`lora_unet_down_blocks_1_..._to_q`), and sd-scripts
files use the original LDM/sgm UNet's names (`input_blocks_4_1_...`). Both are resolved here:

* with a UNet, against that UNet's own module names (exact; unknown names are reported);
* without one, by decoding the underscores with the vocabulary of diffusers' `UNet2DConditionModel`
  and, for sgm names, SDXL base's block layout. That is enough to read and describe a file; applying it
  to a UNet re-checks every name and shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from sliders.lora import adaptable_modules

# Underscore-joined identifiers that are ONE path segment in diffusers' UNet2DConditionModel.
_COMPOUNDS = frozenset(
    {
        "down_blocks",
        "up_blocks",
        "mid_block",
        "transformer_blocks",
        "time_embedding",
        "add_embedding",
        "class_embedding",
        "encoder_hid_proj",
        "linear_1",
        "linear_2",
        "conv_in",
        "conv_out",
        "conv_norm_out",
        "conv_shortcut",
        "time_emb_proj",
        "proj_in",
        "proj_out",
        "to_q",
        "to_k",
        "to_v",
        "to_out",
        "add_q_proj",
        "add_k_proj",
        "add_v_proj",
        "to_add_out",
    }
)
_LONGEST_COMPOUND = max(len(c.split("_")) for c in _COMPOUNDS)

# SDXL base's block layout, for sgm names read without a UNet.
SDXL_BLOCK_LAYOUT: dict[str, Any] = {
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
}

# Inside an sgm ResBlock, the layers LoRA adapts, by their diffusers ResnetBlock2D names.
_SGM_RESNET_LEAVES = {
    "in_layers_2": "conv1",
    "out_layers_3": "conv2",
    "emb_layers_1": "time_emb_proj",
    "skip_connection": "conv_shortcut",
}
# sgm modules outside the block structure (underscore spelling on both sides).
_SGM_TOP_LEVEL = {
    "input_blocks_0_0": "conv_in",
    "out_2": "conv_out",
    "time_embed_0": "time_embedding_linear_1",
    "time_embed_2": "time_embedding_linear_2",
    "label_emb_0_0": "add_embedding_linear_1",
    "label_emb_0_2": "add_embedding_linear_2",
}


def underscore_table(module_paths: list[str] | Mapping[str, Any]) -> dict[str, str]:
    """Map `path.replace('.', '_')` to `path` for every module path."""
    table: dict[str, str] = {}
    for path in module_paths:
        flat = path.replace(".", "_")
        assert flat not in table, f"two UNet modules flatten to the same kohya name {flat!r}"
        table[flat] = path
    return table


def decode_underscores(flat: str) -> str:
    """Dotted diffusers path of a kohya-flattened UNet module name, by the UNet2DConditionModel vocabulary."""
    tokens = flat.split("_")
    segments: list[str] = []
    i = 0
    while i < len(tokens):
        for length in range(min(_LONGEST_COMPOUND, len(tokens) - i), 0, -1):
            candidate = "_".join(tokens[i : i + length])
            if length == 1 or candidate in _COMPOUNDS:
                segments.append(candidate)
                i += length
                break
    return ".".join(segments)


def _has_attention(block_type: str) -> bool:
    return "CrossAttn" in block_type or "Attn" in block_type


def sgm_prefixes(layout: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Map sgm block prefixes (`input_blocks_4_1`) to (diffusers prefix with `_`, role).

    Role is `resnet`, `attention`, `downsampler` or `upsampler`; it says how the rest of the name maps.
    Follows the LDM UNet's construction: input block 0 is conv_in, then per level `layers_per_block`
    [ResBlock, (SpatialTransformer)] entries and a Downsample except on the last level; output blocks
    mirror with one more entry per level and the Upsample appended to the level's last entry.
    """
    per_level = int(layout["layers_per_block"])
    table: dict[str, tuple[str, str]] = {}
    index = 1
    down_types = tuple(layout["down_block_types"])
    for level, block_type in enumerate(down_types):
        for j in range(per_level):
            table[f"input_blocks_{index}_0"] = (f"down_blocks_{level}_resnets_{j}", "resnet")
            if _has_attention(block_type):
                table[f"input_blocks_{index}_1"] = (f"down_blocks_{level}_attentions_{j}", "attention")
            index += 1
        if level < len(down_types) - 1:
            table[f"input_blocks_{index}_0"] = (f"down_blocks_{level}_downsamplers_0", "downsampler")
            index += 1
    table["middle_block_0"] = ("mid_block_resnets_0", "resnet")
    table["middle_block_1"] = ("mid_block_attentions_0", "attention")
    table["middle_block_2"] = ("mid_block_resnets_1", "resnet")
    up_types = tuple(layout["up_block_types"])
    index = 0
    for level, block_type in enumerate(up_types):
        attention = _has_attention(block_type)
        for j in range(per_level + 1):
            table[f"output_blocks_{index}_0"] = (f"up_blocks_{level}_resnets_{j}", "resnet")
            if attention:
                table[f"output_blocks_{index}_1"] = (f"up_blocks_{level}_attentions_{j}", "attention")
            if j == per_level and level < len(up_types) - 1:
                slot = 2 if attention else 1
                table[f"output_blocks_{index}_{slot}"] = (f"up_blocks_{level}_upsamplers_0", "upsampler")
            index += 1
    return table


def sgm_to_diffusers_flat(flat: str, prefixes: Mapping[str, tuple[str, str]]) -> str | None:
    """Translate an sgm-named flat module name into the diffusers flat name; None if it is not sgm."""
    if flat in _SGM_TOP_LEVEL:
        return _SGM_TOP_LEVEL[flat]
    for prefix, (target, role) in prefixes.items():
        if not flat.startswith(prefix + "_"):
            continue
        rest = flat[len(prefix) + 1 :]
        if role == "resnet":
            rest = _SGM_RESNET_LEAVES.get(rest, rest)
        elif role == "downsampler" and rest == "op":
            rest = "conv"
        return f"{target}_{rest}"
    return None


def looks_sgm(flat: str) -> bool:
    """True for names in the LDM/sgm UNet spelling (`input_blocks_…`, `middle_block_…`, `output_blocks_…`)."""
    return flat.startswith(("input_blocks_", "middle_block_", "output_blocks_")) or flat in _SGM_TOP_LEVEL


def kohya_resolver(unet: nn.Module | None) -> Callable[[str], str | None]:
    """A function from a kohya flat module name (either spelling) to a diffusers dotted path or None."""
    if unet is None:
        exact: Callable[[str], str | None] = decode_underscores
        layout: Mapping[str, Any] = SDXL_BLOCK_LAYOUT
    else:
        exact = underscore_table(adaptable_modules(unet)).get
        layout = unet.config
    prefixes = dict(sorted(sgm_prefixes(layout).items(), key=lambda item: -len(item[0])))

    def resolve(flat: str) -> str | None:
        if looks_sgm(flat):
            translated = sgm_to_diffusers_flat(flat, prefixes)
            return None if translated is None else exact(translated)
        return exact(flat)

    return resolve
