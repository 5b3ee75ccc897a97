"""The slider adapter: a peft LoRA on the SDXL UNet, placed by target preset, with signed scales.

Adapter strength is data on the peft layers (`scaling`), changed only inside context managers that
restore the previous value, so a frozen pass and a signed pass can share one UNet and one set of weights.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

DEFAULT_ADAPTER = "slider"

# Module roles, matched against diffusers' dotted UNet module paths.
_SELF_ATTN = re.compile(r"\.attn1\.(to_q|to_k|to_v|to_out\.0)$")
_CROSS_ATTN = re.compile(r"\.attn2\.(to_q|to_k|to_v|to_out\.0)$")
_RESNET = re.compile(r"\.resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)$")
_RESAMPLER = re.compile(r"\.(downsamplers|upsamplers)\.\d+\.conv$")

TARGET_PRESETS: dict[str, tuple[re.Pattern[str], ...]] = {
    # The paper's sliders: everything but cross-attention, so the slider cannot just re-map words.
    "noxattn": (_SELF_ATTN, _RESNET, _RESAMPLER),
    "xattn": (_CROSS_ATTN,),
    "selfattn": (_SELF_ATTN,),
    "full": (_SELF_ATTN, _CROSS_ATTN, _RESNET, _RESAMPLER),
}


# Sub-modules peft adds inside a layer it wraps: never layers of the UNet themselves.
_PEFT_INTERNALS = frozenset(
    {"base_layer", "lora_A", "lora_B", "lora_dropout", "lora_embedding_A", "lora_embedding_B",
     "lora_magnitude_vector"}
)  # fmt: skip


def base_layer(module: nn.Module) -> nn.Module:
    """The layer itself; for a layer peft has wrapped, the original layer inside the wrapper."""
    return module.get_base_layer() if isinstance(module, BaseTunerLayer) else module


def adaptable_modules(unet: nn.Module) -> dict[str, nn.Module]:
    """The UNet's Linear/Conv2d layers by dotted path, seen through peft's wrappers.

    peft keeps its wrapper (and the original layer as `.base_layer`) even after an adapter is deleted,
    so a second slider on the same UNet must see `...to_q` (mapped to the original layer), not
    `...to_q.base_layer` or the adapter's own `lora_A`/`lora_B` layers.
    """
    table: dict[str, nn.Module] = {}
    for name, module in unet.named_modules():
        if _PEFT_INTERNALS.intersection(name.split(".")):
            continue
        layer = base_layer(module)
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            table[name] = layer
    return table


def target_module_names(unet: nn.Module, targets: str = "noxattn") -> list[str]:
    """Dotted paths of the UNet's Linear/Conv2d modules that the preset `targets` adapts."""
    if targets not in TARGET_PRESETS:
        raise ValueError(f"targets: unknown preset {targets!r}; choose one of {', '.join(TARGET_PRESETS)}")
    patterns = TARGET_PRESETS[targets]
    names = [name for name in adaptable_modules(unet) if any(p.search("." + name) for p in patterns)]
    if not names:
        raise ValueError(f"targets: preset {targets!r} matches no module of this UNet")
    return names


def attach_slider(
    unet: nn.Module,
    rank: int = 4,
    alpha: float = 1.0,
    targets: str = "noxattn",
    adapter_name: str = DEFAULT_ADAPTER,
) -> list[str]:
    """Add a trainable LoRA adapter (down: Kaiming, up: zeros) to the UNet; returns the adapted paths."""
    if rank < 1:
        raise ValueError(f"rank: must be a positive integer, got {rank}")
    if not alpha > 0:
        raise ValueError(f"alpha: must be positive, got {alpha}")
    names = target_module_names(unet, targets)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=names, init_lora_weights=True)
    unet.add_adapter(config, adapter_name=adapter_name)
    return names


def lora_layers(unet: nn.Module, adapter_name: str = DEFAULT_ADAPTER) -> Iterator[tuple[str, LoraLayer]]:
    """The UNet's peft LoRA layers that carry `adapter_name`, with their dotted paths."""
    for name, module in unet.named_modules():
        if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
            yield name, module


def slider_parameters(unet: nn.Module, adapter_name: str = DEFAULT_ADAPTER) -> list[nn.Parameter]:
    """The trainable parameters of the slider adapter (the low-rank factors only)."""
    params = []
    for _, layer in lora_layers(unet, adapter_name):
        params += list(layer.lora_A[adapter_name].parameters()) + list(
            layer.lora_B[adapter_name].parameters()
        )
    return params


@contextmanager
def slider_scale(unet: nn.Module, scale: float, adapter_name: str = DEFAULT_ADAPTER) -> Iterator[None]:
    """Run the adapter at signed `scale` (output += scale * alpha/r * up(down(x))); restore afterwards."""
    layers = [layer for _, layer in lora_layers(unet, adapter_name)]
    if not layers:
        raise ValueError(f"no adapter named {adapter_name!r} on this UNet")
    saved = [layer.scaling[adapter_name] for layer in layers]
    try:
        for layer in layers:
            layer.scaling[adapter_name] = scale * layer.lora_alpha[adapter_name] / layer.r[adapter_name]
        yield
    finally:
        for layer, value in zip(layers, saved):
            layer.scaling[adapter_name] = value


@contextmanager
def per_sample_scale(
    unet: nn.Module, scales: torch.Tensor, adapter_name: str = DEFAULT_ADAPTER
) -> Iterator[None]:
    """Run one batched pass where sample i sees the adapter at `scales[i]` (shape [B]).

    The low-rank branch's output (batch first in every SDXL UNet layer) is multiplied per sample by a
    forward hook on `lora_B`. With gradient checkpointing, call `backward()` inside this context:
    the recomputed forward must see the same hooks.
    """
    hooks = []

    def scale_output(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        assert output.shape[0] == scales.shape[0], "per-sample scales must match the batch"
        return output * scales.to(output.dtype).view(-1, *([1] * (output.ndim - 1)))

    with slider_scale(unet, 1.0, adapter_name):
        try:
            for _, layer in lora_layers(unet, adapter_name):
                hooks.append(layer.lora_B[adapter_name].register_forward_hook(scale_output))
            yield
        finally:
            for hook in hooks:
                hook.remove()


@contextmanager
def adapter_disabled(unet: nn.Module) -> Iterator[None]:
    """Run the frozen base UNet: every adapter bypassed (no second copy of the weights)."""
    layers = [m for m in unet.modules() if isinstance(m, LoraLayer)]
    saved = [layer.disable_adapters for layer in layers]
    try:
        for layer in layers:
            layer.enable_adapters(False)
        yield
    finally:
        for layer, was_disabled in zip(layers, saved):
            layer.enable_adapters(not was_disabled)


def lora_config_for(rank: int, alpha: float, module_names: list[str]) -> LoraConfig:
    """The peft config that reproduces a slider with the given rank/alpha on `module_names`."""
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=module_names, init_lora_weights=False)
