"""Render many edited images in batches: rows (edit k, seed s, delta), the unedited prefix computed once.

An edit of layer l's styles leaves everything before layer l unchanged, so rows are grouped by the first
layer their edit touches: the input of that layer is computed once for every seed, and each row of the
group runs only layers l, l+1, ... (on the 64 px toy generator a channel of L4 costs a third of a full
render). A w offset starts at the first w it changes: the `input` block for every w, layer i - 1 for an
edit whose `w_layers` start at ws[i]. Each batch holds rows of one group; inside it every row has its own
style offsets and w offset, so one forward pass renders different edits side by side.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from stylegan_bridge.edits import Edit, w_offsets
from stylegan_bridge.style_space import resolve_layer, style_offsets


@dataclass(frozen=True)
class RenderedBatch:
    """Images [B, C, R, R] of the rows (edit index, seed index) given by `edits` and `seeds` ([B] each)."""

    edits: torch.Tensor
    seeds: torch.Tensor
    images: torch.Tensor


def first_layer(G: nn.Module, edit: Edit) -> int:
    """Index of the first synthesis layer the edit changes; -1 when it changes the `input` block."""
    firsts = [resolve_layer(G, name).index for name in edit.style]
    if edit.w is not None:
        firsts.append(-1 if edit.w_layers is None else min(edit.w_layers) - 1)  # ws[i + 1] drives layer i
    return min(firsts)


def layer_input(G: nn.Module, ws: torch.Tensor, index: int) -> torch.Tensor:
    """The input of synthesis layer `index` for ws [B, num_ws, w_dim]: `input` block and layers before it."""
    synthesis = G.synthesis
    ws = ws.to(torch.float32)
    with torch.no_grad():
        x = synthesis.input(ws[:, 0])
        for i, name in enumerate(synthesis.layer_names[:index]):
            x = getattr(synthesis, name)(x, ws[:, i + 1])
    return x


def synthesis_from(G: nn.Module, x: torch.Tensor, ws: torch.Tensor, index: int) -> torch.Tensor:
    """Images from the input `x` of layer `index` on: layers index.. and the output scale, as `G.synthesis`."""
    synthesis = G.synthesis
    ws = ws.to(torch.float32)
    with torch.no_grad():
        for i, name in enumerate(synthesis.layer_names[index:], start=index):
            x = getattr(synthesis, name)(x, ws[:, i + 1])
        if synthesis.output_scale != 1:
            x = x * synthesis.output_scale
    return x.to(torch.float32)


def render_rows(
    G: nn.Module,
    ws: torch.Tensor,
    edits: Sequence[Edit],
    deltas: torch.Tensor,
    prefix: tuple[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Row j = ws[j] with edits[j] scaled by deltas[j], in one forward pass (from `prefix` = (layer, input))."""
    assert ws.shape[0] == len(edits) == deltas.shape[0], (tuple(ws.shape), len(edits), tuple(deltas.shape))
    offsets: dict[str, torch.Tensor] = {}
    w_offset = torch.zeros(ws.shape, device=ws.device)
    for j, edit in enumerate(edits):
        for name, vector in edit.style.items():
            if name not in offsets:
                offsets[name] = torch.zeros(len(edits), vector.numel(), device=ws.device)
            offsets[name][j] += float(deltas[j]) * vector.to(ws.device)
        if edit.w is not None:
            w_offset[j] = float(deltas[j]) * w_offsets(edit, ws.shape[1]).to(ws.device)
    ws = ws + w_offset
    with torch.no_grad(), style_offsets(G, offsets):
        if prefix is None:
            return G.synthesis(ws)
        return synthesis_from(G, prefix[1], ws, prefix[0])


def render_edits(
    G: nn.Module,
    ws0: torch.Tensor,
    edits: Sequence[Edit],
    delta: float | Sequence[float],
    batch: int = 16,
    progress: bool = True,
    desc: str = "renders",
) -> Iterator[RenderedBatch]:
    """Every edit (scaled by `delta`, one or one per edit) on every seed of ws0 [S, num_ws, w_dim], in batches.

    Yields batches grouped by the first layer each edit touches (not in edit order); rows of edit k use
    delta[k]. The prefix before a group's layer is computed once per group for all seeds.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    deltas = [float(delta)] * len(edits) if isinstance(delta, (int, float)) else [float(d) for d in delta]
    assert len(deltas) == len(edits), (len(deltas), len(edits))
    starts = [first_layer(G, edit) for edit in edits]
    num_seeds = ws0.shape[0]
    bar = tqdm(total=len(edits) * num_seeds, desc=desc, unit="render", disable=not progress)
    for start in sorted(set(starts)):
        prefix = None if start < 0 else (start, layer_input(G, ws0, start))
        jobs = [(k, s) for k in range(len(edits)) if starts[k] == start for s in range(num_seeds)]
        for first in range(0, len(jobs), batch):
            ks = torch.tensor([k for k, _ in jobs[first : first + batch]])
            ss = torch.tensor([s for _, s in jobs[first : first + batch]])
            images = render_rows(
                G,
                ws0[ss],
                [edits[k] for k in ks.tolist()],
                torch.tensor([deltas[k] for k in ks.tolist()]),
                None if prefix is None else (start, prefix[1][ss]),
            )
            bar.update(len(ks))
            yield RenderedBatch(ks, ss, images)
    bar.close()
