"""Many sliders with independent signed scales, switched by one weight, at a cost that does not grow with them.

Every slider adds `s_i * alpha_i / r_i * up_i @ down_i` to the modules it adapts (DESIGN.md §3). Per
module, all sliders' factors are stacked once: `down = cat(down_i)` ([R, in*k*k]) and `up = cat(up_i)`
([out, R]), with a per-rank coefficient `c = alpha_i / r_i * s_i`, so the sum of all sliders is
`up @ diag(c) @ down`. Three ways to run that sum, one weight `w` (the gate) multiplying all scales:

- `fused` (default): `W1 = W0 + w * up diag(c) down` is computed once per set of scales and the gate
  swaps each module between `W0` and `W1`; sampling then costs exactly the base model's time whatever
  the number of sliders (one rank-R matmul per module when the scales change, never per step).
- `lowrank`: ONE peft adapter of rank R = sum r_i with `c` folded into `up`; the gate sets its scale.
  Cheap to switch at any step, but each UNet call pays for rank R.
- `peft`: the reference path: one peft adapter per slider, `set_adapters(names, w * scales)`.
  Tests compare the others with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sliders.lora import base_layer

if TYPE_CHECKING:
    from sliders.slider_file import LoraFactors

Factors = Mapping[str, "LoraFactors"]
COMPOSED_ADAPTER = "composed_sliders"


@dataclass
class _ModuleStack:
    """All sliders' factors on one module, stacked along the rank: the sum is `up @ diag(coef*s) @ down`."""

    module: nn.Module  # the base Linear/Conv2d (peft's base layer if the module is wrapped)
    down: torch.Tensor  # [R, in*k*k], fp32
    up: torch.Tensor  # [out, R], fp32
    owner: torch.Tensor  # [R], index of the slider each rank belongs to
    coef: torch.Tensor  # [R], alpha_i / r_i of that slider

    def scaled_up(self, scales: torch.Tensor) -> torch.Tensor:
        """`up` with every slider's alpha/r times its signed scale folded into its columns: [out, R]."""
        return self.up * (self.coef * scales[self.owner])

    def delta(self, scales: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The summed weight update of all sliders at `scales`, shaped like the base weight (fp32)."""
        down = self.down.to(device)
        up = self.scaled_up(scales).to(device)
        return (up @ down).view(self.module.weight.shape)


def _base_module(unet: nn.Module, path: str, slider: str) -> nn.Module:
    try:
        module = unet.get_submodule(path)
    except AttributeError as error:
        raise ValueError(
            f"{slider}: module {path!r} is not in this UNet (a slider for another architecture?)"
        ) from error
    module = base_layer(module)  # already wrapped by peft: adapt the layer underneath
    if not isinstance(module, (nn.Linear, nn.Conv2d)):
        raise ValueError(f"{slider}: module {path!r} is a {type(module).__name__}, not a Linear or Conv2d")
    return module


def _check_factors(module: nn.Module, factors: LoraFactors, path: str, slider: str) -> None:
    rank = factors.down.shape[0]
    out_features, in_numel = module.weight.shape[0], module.weight[0].numel()
    if factors.up.shape[0] != out_features or factors.up[0].numel() != rank:
        raise ValueError(
            f"{slider}: {path}.up has shape {tuple(factors.up.shape)}, the UNet needs [{out_features}, {rank}]"
        )
    if factors.down[0].numel() != in_numel:
        raise ValueError(
            f"{slider}: {path}.down has shape {tuple(factors.down.shape)}, which does not fit the UNet "
            f"weight {tuple(module.weight.shape)}"
        )


def stack_sliders(
    unet: nn.Module, sliders: Sequence[Factors], names: Sequence[str]
) -> dict[str, _ModuleStack]:
    """Stack every slider's factors per UNet module (validated against the UNet's shapes)."""
    per_module: dict[str, list[tuple[int, LoraFactors]]] = {}
    for index, factors in enumerate(sliders):
        for path, pair in factors.items():
            per_module.setdefault(path, []).append((index, pair))
    stacks = {}
    for path, entries in per_module.items():
        module = _base_module(unet, path, names[entries[0][0]])
        for index, pair in entries:
            _check_factors(module, pair, path, names[index])
        downs, ups, owner, coef = [], [], [], []
        for index, pair in entries:
            rank = pair.down.shape[0]
            downs.append(pair.down.detach().float().cpu().reshape(rank, -1))  # [r, in*k*k]
            ups.append(pair.up.detach().float().cpu().reshape(pair.up.shape[0], rank))  # [out, r]
            owner += [index] * rank
            coef += [float(pair.alpha) / rank] * rank
        stacks[path] = _ModuleStack(
            module, torch.cat(downs), torch.cat(ups, dim=1), torch.tensor(owner), torch.tensor(coef)
        )
    return stacks


class Composition:
    """Sliders with signed scales on one UNet, all multiplied by one gate weight (0 = base model)."""

    method = "abstract"

    def __init__(
        self,
        unet: nn.Module,
        sliders: Sequence[Factors],
        scales: Sequence[float],
        names: Sequence[str] | None,
    ):
        self.unet = unet
        self.names = list(names) if names is not None else [f"slider{i}" for i in range(len(sliders))]
        if len(self.names) != len(sliders):
            raise ValueError(f"composition: {len(sliders)} sliders but {len(self.names)} names")
        self._scales = self._checked(scales, len(sliders))
        self.weight = 0.0

    @staticmethod
    def _checked(scales: Sequence[float], count: int) -> torch.Tensor:
        if len(scales) != count:
            raise ValueError(f"composition: {count} sliders need {count} scales, got {len(scales)}")
        return torch.tensor([float(s) for s in scales], dtype=torch.float32)

    @property
    def scales(self) -> list[float]:
        """The sliders' signed scales (before the gate weight)."""
        return self._scales.tolist()

    def set_scales(self, scales: Sequence[float]) -> None:
        """Change every slider's signed scale; takes effect at once."""
        new = self._checked(scales, len(self.names))
        if not torch.equal(new, self._scales):
            self._scales = new
            self._update()

    def set_weight(self, weight: float) -> None:
        """Set the gate weight (0 = sliders off, 1 = the user's scales)."""
        if float(weight) != self.weight:
            self.weight = float(weight)
            self._update()

    def _update(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Take the sliders off the UNet, leaving the base model exactly as it was."""
        raise NotImplementedError

    def __enter__(self) -> Composition:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class _ShapeGroup:
    """Modules whose weights share one shape, their factors stacked so that one batched matmul fuses them.

    A module with fewer ranks than the group's widest is padded with zero ranks (coefficient 0).
    """

    paths: list[str]
    down: torch.Tensor  # [G, R, in*k*k], fp32
    up: torch.Tensor  # [G, out, R], fp32
    owner: torch.Tensor  # [G, R], slider index of each rank
    coef: torch.Tensor  # [G, R], alpha_i / r_i of that slider; 0 on padding ranks
    fused: torch.Tensor | None = None  # [G, out, in*k*k] in the weights' dtype: every module's W1

    def to(self, device: torch.device) -> None:
        """Keep the factors where the weights are: moved once, not at every fusing."""
        if self.down.device != device:
            self.down, self.up = self.down.to(device), self.up.to(device)
            self.owner, self.coef = self.owner.to(device), self.coef.to(device)


def shape_groups(stacks: Mapping[str, _ModuleStack]) -> list[_ShapeGroup]:
    """Group the stacked modules by weight shape, padding each to the group's largest total rank."""
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for path, stack in stacks.items():
        by_shape.setdefault(tuple(stack.module.weight.shape), []).append(path)
    groups = []
    for paths in by_shape.values():
        rank = max(stacks[p].down.shape[0] for p in paths)
        groups.append(
            _ShapeGroup(
                paths,
                down=torch.stack([_pad_rank(stacks[p].down, rank, 0) for p in paths]),
                up=torch.stack([_pad_rank(stacks[p].up, rank, 1) for p in paths]),
                owner=torch.stack([_pad_rank(stacks[p].owner, rank, 0) for p in paths]),
                coef=torch.stack([_pad_rank(stacks[p].coef, rank, 0) for p in paths]),
            )
        )
    return groups


def _pad_rank(t: torch.Tensor, rank: int, dim: int) -> torch.Tensor:
    """t with zeros appended along `dim` up to `rank` entries."""
    pad = [0, 0] * (t.ndim - 1 - dim) + [0, rank - t.shape[dim]]
    return torch.nn.functional.pad(t, pad)


# Fusing materialises the fp32 update of this many weight elements at a time (256 MB).
_FUSE_CHUNK_ELEMENTS = 2**26


class FusedComposition(Composition):
    """Sliders fused into the base weights while on; no per-step cost (see the module docstring).

    Each adapted module keeps two weight tensors: its untouched original `W0` and, once computed for
    the current scales, `W1 = W0 + up diag(c) down`. The gate swaps which one the module uses (a
    pointer swap per module, whatever the number of sliders); `W1` is recomputed only when the scales
    change (a sweep column), never per step: one batched matmul per group of equally shaped modules,
    on the weights' device, into buffers allocated once, without a host synchronisation.
    Memory: one extra copy of the adapted weights, and the stacked factors on the weights' device.
    Weights must not be moved (`.to`, offloading) while the sliders are on; between images they may.
    """

    method = "fused"

    def __init__(self, unet, sliders, scales, names=None):
        super().__init__(unet, sliders, scales, names)
        self._stacks = stack_sliders(unet, sliders, self.names)
        self._groups = shape_groups(self._stacks)
        self._off = {path: s.module.weight.data for path, s in self._stacks.items()}
        self._on: dict[str, torch.Tensor] = {}  # W1 for `_on_scales` (views of the groups' buffers)
        self._on_scales: torch.Tensor | None = None
        self._fused_now = False

    @torch.no_grad()
    def _fuse(self, scales: torch.Tensor) -> None:
        """Compute W1 = W0 + the sliders' summed update at `scales` for every module (fp32 sum)."""
        for group in self._groups:
            w0 = [self._off[path] for path in group.paths]
            device, dtype = w0[0].device, w0[0].dtype
            with torch.inference_mode(False):  # kept across calls, also when first made under inference_mode
                group.to(device)
                if group.fused is None or group.fused.device != device or group.fused.dtype != dtype:
                    shape = group.up.shape[:2] + group.down.shape[2:]
                    group.fused = torch.empty(shape, device=device, dtype=dtype)
            c = group.coef * _on_device(scales, device)[group.owner]  # [G, R]
            step = max(1, _FUSE_CHUNK_ELEMENTS // group.fused[0].numel())
            for lo in range(0, len(w0), step):
                out = group.fused[lo : lo + step]
                torch.stack([w.reshape(out.shape[1:]) for w in w0[lo : lo + step]], out=out)
                # In place, W0 (weight dtype) + update (fp32) is summed in fp32 and rounded once.
                out.add_(
                    torch.bmm(group.up[lo : lo + step] * c[lo : lo + step, None], group.down[lo : lo + step])
                )
            for path, fused in zip(group.paths, group.fused):
                self._on[path] = fused.view(self._off[path].shape)
        self._on_scales = scales.clone()

    def _update(self) -> None:
        for path, stack in self._stacks.items():
            current = stack.module.weight
            if not (_same(current, self._off[path]) or _same(current, self._on.get(path))):
                if self._fused_now:
                    self._restore_moved()
                    raise RuntimeError(
                        f"{path}: the UNet's weights were moved or replaced while sliders were on "
                        "(the base weights are restored and the sliders switched off)"
                    )
                # Moved (`.to`, offloading) while the sliders were off: adopt the new W0, rebuild W1 later.
                self._off[path] = current.data
                self._on, self._on_scales = {}, None
        effective = self._scales * self.weight
        if self.weight != 0.0 and (self._on_scales is None or not torch.equal(effective, self._on_scales)):
            self._fuse(effective)
        chosen = self._off if self.weight == 0.0 else self._on
        for path, stack in self._stacks.items():
            stack.module.weight.data = chosen[path]
        self._fused_now = self.weight != 0.0

    @torch.no_grad()
    def _restore_moved(self) -> None:
        """After a move while fused: every module gets W0 back where its weight now lives; sliders off."""
        for path, stack in self._stacks.items():
            current = stack.module.weight
            if not _same(current, self._off[path]):
                self._off[path] = self._off[path].to(device=current.device, dtype=current.dtype)
                current.data = self._off[path]
        self._on, self._on_scales = {}, None
        self._fused_now, self.weight = False, 0.0

    def close(self) -> None:
        """Give every module its original weight back and drop W1."""
        self.set_weight(0.0)
        self._on, self._on_scales, self._stacks, self._groups = {}, None, {}, []


def _on_device(scales: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The scales (a few floats, on the CPU) on `device`; to a GPU through pinned memory, without a sync."""
    if device.type == "cuda":
        return scales.pin_memory().to(device, non_blocking=True)
    return scales.to(device)


def _same(a: torch.Tensor, b: torch.Tensor | None) -> bool:
    """Whether `a` uses exactly the storage of `b` (`.data` gives a new wrapper each time)."""
    return b is not None and a.device == b.device and a.data_ptr() == b.data_ptr() and a.shape == b.shape


def _as_factors(stack: _ModuleStack, up: torch.Tensor, alpha: float) -> LoraFactors:
    """Stacked factors shaped as one LoRA on the stack's module (conv: down carries the kernel)."""
    from sliders.slider_file import LoraFactors

    shape = stack.module.weight.shape
    rank = stack.down.shape[0]
    down = stack.down.reshape(rank, *shape[1:])
    return LoraFactors(
        down=down, up=up.reshape(shape[0], rank, *([1, 1] if len(shape) == 4 else [])), alpha=alpha
    )


def _load_adapter(unet: nn.Module, factors: Factors, adapter_name: str) -> dict[str, nn.Module]:
    """Add a peft adapter through the slider-file loader; returns its layers by module path."""
    from sliders.slider_file import load_factors_into_unet

    with warnings.catch_warnings():
        # peft warns whenever a second adapter is added; several adapters are the point here.
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        paths = load_factors_into_unet(unet, factors, adapter_name)
    return {path: unet.get_submodule(path) for path in paths}


class LowRankComposition(Composition):
    """All sliders as ONE peft adapter of rank sum(r_i) with alpha/r * scale folded into `up`."""

    method = "lowrank"

    def __init__(self, unet, sliders, scales, names=None, adapter_name: str = COMPOSED_ADAPTER):
        super().__init__(unet, sliders, scales, names)
        self.adapter_name = adapter_name
        self._stacks = stack_sliders(unet, sliders, self.names)
        self._layers = {}
        if self._stacks:
            # alpha = rank makes peft's scaling exactly the gate weight.
            factors = {
                path: _as_factors(s, s.scaled_up(self._scales), float(s.down.shape[0]))
                for path, s in self._stacks.items()
            }
            self._layers = _load_adapter(unet, factors, adapter_name)
        self._set_layer_scales()

    def _set_layer_scales(self) -> None:
        for layer in self._layers.values():
            layer.set_scale(self.adapter_name, self.weight)

    @torch.no_grad()
    def _update(self) -> None:
        for path, layer in self._layers.items():
            up = layer.lora_B[self.adapter_name].weight
            up.copy_(self._stacks[path].scaled_up(self._scales).reshape(up.shape))
        self._set_layer_scales()

    def set_weight(self, weight: float) -> None:
        """Set the gate weight: one scale on one adapter, whatever the number of sliders."""
        self.weight = float(weight)
        self._set_layer_scales()

    def close(self) -> None:
        """Delete the composed adapter."""
        if self._layers:
            self.unet.delete_adapters(self.adapter_name)
        self._layers = {}


class PeftComposition(Composition):
    """Reference: one peft adapter per slider, weighted with `set_adapters` (cost grows with sliders)."""

    method = "peft"

    def __init__(self, unet, sliders, scales, names=None):
        super().__init__(unet, sliders, scales, names)
        stack_sliders(unet, sliders, self.names)  # the same validation and errors as the other paths
        self.adapter_names = []
        for index, factors in enumerate(sliders):
            name = f"slider_{index}"
            _load_adapter(unet, factors, name)
            self.adapter_names.append(name)
        self._update()

    def _update(self) -> None:
        if self.adapter_names:
            weights = (self._scales * self.weight).tolist()
            self.unet.set_adapters(self.adapter_names, weights)

    def close(self) -> None:
        """Delete every slider's adapter."""
        if self.adapter_names:
            self.unet.delete_adapters(self.adapter_names)
        self.adapter_names = []


METHODS: dict[str, type[Composition]] = {
    "fused": FusedComposition,
    "lowrank": LowRankComposition,
    "peft": PeftComposition,
}


def compose_sliders(
    unet: nn.Module,
    sliders: Sequence[Factors],
    scales: Sequence[float],
    method: str = "fused",
    names: Sequence[str] | None = None,
) -> Composition:
    """Put `sliders` with signed `scales` on `unet`, switched off (weight 0) until the gate turns them on."""
    if method not in METHODS:
        raise ValueError(f"composition method: unknown {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method](unet, sliders, scales, names)
