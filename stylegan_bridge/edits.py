"""An edit at unit strength (a style channel, a style-space vector or a w direction) and rendering with it.

`render(G, ws, edit, delta)` draws `G.synthesis(ws)` with the edit scaled by `delta`: style offsets are
added by forward hooks on the affines (ws untouched), w offsets are added to every w. delta = 0 renders
exactly the unedited image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from stylegan_bridge.style_space import StyleStats, resolve_layer, style_offsets


@dataclass(frozen=True)
class Edit:
    """A direction at delta = 1: style offsets {layer name: [dim]} and/or a w offset [w_dim]."""

    style: Mapping[str, torch.Tensor] = field(default_factory=dict)
    w: torch.Tensor | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if not self.style and self.w is None:
            raise ValueError(f"edit {self.label!r} changes nothing (no style offsets and no w offset)")


def channel_edit(G: nn.Module, layer: int | str, channel: int, stats: StyleStats, sign: float = 1.0) -> Edit:
    """Channel `channel` of `layer` moved by sign * sigma_c per unit delta (StyleSpace, Wu et al. 2021 sec. 3)."""
    info = resolve_layer(G, layer)
    if not 0 <= channel < info.dim:
        raise ValueError(f"channel {channel}: out of range 0..{info.dim - 1} for layer {info.name}")
    offset = torch.zeros(info.dim)
    offset[channel] = sign * stats.sigma(info.name, channel)
    return Edit(style={info.name: offset}, label=f"{info.name}[{channel}]")


def w_edit(vector: torch.Tensor, sigma: float = 1.0, sign: float = 1.0, label: str = "") -> Edit:
    """w moved along `vector` (normalised to unit length) by sign * sigma per unit delta, on every w."""
    vector = vector.detach().to(torch.float32).flatten()
    norm = float(vector.norm())
    if norm == 0 or not torch.isfinite(vector).all():
        raise ValueError(f"w direction {label!r} is zero or not finite")
    return Edit(w=vector * (sign * sigma / norm), label=label)


def edited_ws(ws: torch.Tensor, edit: Edit | None, delta: float | torch.Tensor) -> torch.Tensor:
    """ws with the edit's w offset (times delta, a float or [B]) added to every w; unchanged without one."""
    if edit is None or edit.w is None:
        return ws
    scale = _per_sample(delta, ws.shape[0], ws.device)  # [B]
    return ws + scale[:, None, None] * edit.w.to(ws.device, ws.dtype)[None, None, :]


def render(
    G: nn.Module, ws: torch.Tensor, edit: Edit | None = None, delta: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Images [B, C, R, R] of ws [B, num_ws, w_dim] with `edit` scaled by `delta` (a float or one per sample)."""
    with torch.no_grad():
        if edit is None or not edit.style:
            return G.synthesis(edited_ws(ws, edit, delta))
        scale = _per_sample(delta, ws.shape[0], ws.device)
        offsets = {name: scale[:, None] * vec.to(ws.device)[None, :] for name, vec in edit.style.items()}
        with style_offsets(G, offsets):
            return G.synthesis(edited_ws(ws, edit, delta))


def _per_sample(delta: float | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """delta as a [batch] float tensor."""
    scale = torch.as_tensor(delta, dtype=torch.float32, device=device)
    if scale.ndim == 0:
        return scale.expand(batch)
    if scale.shape != (batch,):
        raise ValueError(
            f"delta must be a number or one per sample ({batch}), got shape {tuple(scale.shape)}"
        )
    return scale
