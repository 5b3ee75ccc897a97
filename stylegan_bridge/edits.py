"""An edit at unit strength (a style channel, a style-space vector or a w direction) and rendering with it.

`render(G, ws, edit, delta)` draws `G.synthesis(ws)` with the edit scaled by `delta`: style offsets are
added by forward hooks on the affines (ws untouched), w offsets are added to every w, or only to the ws
listed in `w_layers` (0 drives the `input` block, i + 1 drives layer i: GANSpace's layer-wise edits; the
`input` block alone rotates and translates the image in StyleGAN3). delta = 0 renders exactly the
unedited image.
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
    w_layers: tuple[int, ...] | None = None  # the ws that get the w offset; None: every w

    def __post_init__(self) -> None:
        if not self.style and self.w is None:
            raise ValueError(f"edit {self.label!r} changes nothing (no style offsets and no w offset)")
        if self.w_layers is not None and (not self.w_layers or min(self.w_layers) < 0):
            raise ValueError(f"edit {self.label!r}: w_layers must be ws indices >= 0, got {self.w_layers}")


def channel_edit(G: nn.Module, layer: int | str, channel: int, stats: StyleStats, sign: float = 1.0) -> Edit:
    """Channel `channel` of `layer` moved by sign * sigma_c per unit delta (StyleSpace, Wu et al. 2021 sec. 3)."""
    info = resolve_layer(G, layer)
    if not 0 <= channel < info.dim:
        raise ValueError(f"channel {channel}: out of range 0..{info.dim - 1} for layer {info.name}")
    offset = torch.zeros(info.dim)
    offset[channel] = sign * stats.sigma(info.name, channel)
    return Edit(style={info.name: offset}, label=f"{info.name}[{channel}]")


def w_edit(
    vector: torch.Tensor,
    sigma: float = 1.0,
    sign: float = 1.0,
    label: str = "",
    w_layers: tuple[int, ...] | None = None,
) -> Edit:
    """w moved along `vector` (normalised to unit length) by sign * sigma per unit delta, on every w (or `w_layers`)."""
    vector = vector.detach().to(torch.float32).flatten()
    norm = float(vector.norm())
    if norm == 0 or not torch.isfinite(vector).all():
        raise ValueError(f"w direction {label!r} is zero or not finite")
    layers = None if w_layers is None else tuple(int(i) for i in w_layers)
    return Edit(w=vector * (sign * sigma / norm), label=label, w_layers=layers)


def edited_ws(ws: torch.Tensor, edit: Edit | None, delta: float | torch.Tensor) -> torch.Tensor:
    """ws with the edit's w offset (times delta, a float or [B]) added to every w (or its `w_layers`)."""
    if edit is None or edit.w is None:
        return ws
    scale = _per_sample(delta, ws.shape[0], ws.device)  # [B]
    return ws + scale[:, None, None] * w_offsets(edit, ws.shape[1]).to(ws.device, ws.dtype)[None]


def w_offsets(edit: Edit, num_ws: int) -> torch.Tensor:
    """The edit's w offset per w at delta = 1: [num_ws, w_dim] (zero rows for ws outside `w_layers`)."""
    assert edit.w is not None
    if edit.w_layers is not None and max(edit.w_layers) >= num_ws:
        raise ValueError(f"edit {edit.label!r}: w_layers {edit.w_layers} exceed the generator's {num_ws} ws")
    mask = (
        torch.ones(num_ws)
        if edit.w_layers is None
        else torch.zeros(num_ws).index_fill_(0, torch.tensor(edit.w_layers), 1.0)
    )
    return mask[:, None] * edit.w.float().cpu()[None, :]


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
