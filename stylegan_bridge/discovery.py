"""Discovery without names: rank a generator's style channels and w directions by what they do to images.

Candidates are every style channel of the chosen layers, moved by `delta * sigma_c` (StyleSpace, Wu et
al. 2021), and directions of w moved by `w_delta * sigma_k` on every w: the independent components of
GANSpace's principal subspace (`ica`, the default; FastICA whitens with PCA and then rotates) and/or the
principal directions themselves (`pca`, Härkönen et al. 2020). On the toy generator, whose factors are
independent, three of the ten principal directions are mixtures (hair hue with position) whose larger
effect pushed the pure factors out of the top K; the independent components are the factors.
Each candidate is rendered on the seeds `seed .. seed + samples - 1` and judged only by the difference
images d = edited - unedited ([S, C, R, R] in the generator's [-1, 1] units):

    effect         E = mean over seeds of RMS(d) over pixels and colours: how much the image changes.
    concentration  Q = 1 - mean over seeds of PR, PR = mean(m)^2 / mean(m^2), m = |d| per pixel (RMS over
                   colours). PR is the share of pixels that carry the change (a participation ratio): a
                   change of one region, one coloured part or one outline is near 0 (Q near 1), a little
                   change everywhere is near 1 (Q near 0).
    prior          P = 1 for a channel, `w_weight` (0.9) for a w direction: a channel edits one channel of
                   one layer, a w direction every layer, so of two equal effects the sparser edit wins.
    distinctness   D = 1 - max |cos(M, M_j)| over the candidates j picked before it, M = d area-resampled
                   to `map_size` and flattened over seeds (the effect map; signed, so enlarging and
                   shrinking the same part are one concept).
    total          T = E * Q * P * D. Candidates are picked greedily by T (maximal marginal relevance): a
                   candidate whose effect map has |cos| > `threshold` with a picked one is the same concept
                   and is dropped, so no two kept candidates correlate above the threshold.

No probe, no region and no name enters the ranking. The difference images come from
`stylegan_bridge.edit_batches.render_edits` (batched; each layer's unedited prefix is computed once).
`stylegan_bridge.candidates` writes the result (`candidates.json`, the w directions, contact sheets).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stylegan_bridge.direction_file import Direction
from stylegan_bridge.directions import channel_candidates, pca_directions
from stylegan_bridge.edit_batches import RenderedBatch, render_edits
from stylegan_bridge.edits import Edit, channel_edit, render
from stylegan_bridge.style_space import StyleStats, ws_from_seeds
from stylegan_bridge.w_directions import ica_directions, input_directions

KINDS = ("channel", "w_direction")
W_METHODS = ("ica", "pca", "input")


@dataclass(frozen=True)
class DiscoveryConfig:
    """How candidates are found and judged (every field is a `discover` option of the same name)."""

    samples: int = 4
    seed: int = 0
    delta: float = 2.0
    w_delta: float = 2.0
    components: int = 10
    w_methods: tuple[str, ...] = ("ica", "input")
    w_weight: float = 0.9
    w_samples: int = 10_000
    psi: float = 0.7
    layers: tuple[str, ...] | None = None
    top: int = 12
    threshold: float = 0.5
    map_size: int = 32
    batch: int = 16

    def __post_init__(self) -> None:
        for name in ("samples", "top", "map_size", "batch", "w_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.components < 0:
            raise ValueError(f"--components must be >= 0, got {self.components}")
        unknown = sorted(set(self.w_methods) - set(W_METHODS))
        if unknown:
            raise ValueError(f"--w-methods: unknown method(s) {unknown}; choose from {', '.join(W_METHODS)}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        for name in ("delta", "w_delta"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a finite number > 0, got {getattr(self, name)}"
                )
        if not 0 < self.w_weight <= 1:
            raise ValueError(f"--w-weight must be in (0, 1], got {self.w_weight}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"--threshold must be in (0, 1], got {self.threshold}")
        if not math.isfinite(self.psi):
            raise ValueError(f"--truncation must be a finite number, got {self.psi}")

    @property
    def seeds(self) -> list[int]:
        """The seeds every candidate is rendered on."""
        return list(range(self.seed, self.seed + self.samples))


@dataclass(frozen=True)
class Candidate:
    """One discovered direction: what it is, the delta it was judged at, and its scores."""

    name: str
    kind: str
    edit: Edit
    delta: float
    layer: str | None = None
    layer_index: int | None = None
    channel: int | None = None
    direction: Direction | None = None
    effect: float = 0.0
    concentration: float = 0.0
    distinctness: float = 0.0
    total: float = 0.0

    def scores(self) -> dict[str, float]:
        """The four scores, as candidates.json records them."""
        keys = ("effect", "concentration", "distinctness", "total")
        return {key: float(getattr(self, key)) for key in keys}


@dataclass(frozen=True)
class Measurements:
    """Per candidate: effect [N], concentration [N] and unit-norm effect maps [N, D]."""

    effect: torch.Tensor
    concentration: torch.Tensor
    maps: torch.Tensor


def effect_and_concentration(diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, Q) of difference images [B, C, R, R]: RMS change, and 1 - the share of pixels carrying it."""
    assert diff.ndim == 4, tuple(diff.shape)
    magnitude_sq = diff.double().square().mean(dim=1)  # [B, R, R]: squared RMS over colours
    mean_sq = magnitude_sq.mean(dim=(1, 2))
    mean = magnitude_sq.sqrt().mean(dim=(1, 2))
    share = torch.where(mean_sq > 0, mean.square() / mean_sq.clamp_min(1e-30), torch.ones_like(mean))
    return mean_sq.sqrt(), 1.0 - share


def effect_map(diff: torch.Tensor, size: int) -> torch.Tensor:
    """Difference images [B, C, R, R] area-resampled to [B, C, size, size] (float32)."""
    if diff.shape[-1] == size:
        return diff.float()
    return F.interpolate(
        diff.float(), size=(size, size), mode="area" if size < diff.shape[-1] else "bilinear"
    )


def unit_rows(maps: torch.Tensor) -> torch.Tensor:
    """Rows of [N, D] scaled to unit length (zero rows stay zero)."""
    return maps / maps.norm(dim=1, keepdim=True).clamp_min(1e-12)


def select_distinct(
    quality: torch.Tensor, maps: torch.Tensor, top: int, threshold: float
) -> list[tuple[int, float, float]]:
    """Greedy picks (index, distinctness, total) by total = quality * (1 - max |cos| with earlier picks).

    `maps` [N, D] are unit rows. A candidate whose |cos| with a pick exceeds `threshold` is dropped;
    ties go to the lower index, so the result is a pure function of the inputs.
    """
    assert quality.ndim == 1 and maps.shape[0] == quality.shape[0], (tuple(quality.shape), tuple(maps.shape))
    quality = quality.double()
    closest = torch.zeros_like(quality)  # max |cos| with the picks so far
    alive = quality > 0
    picks: list[tuple[int, float, float]] = []
    while len(picks) < top and bool(alive.any()):
        total = torch.where(alive, quality * (1 - closest), torch.full_like(quality, -math.inf))
        k = int(torch.argmax(total))  # argmax returns the first maximum
        picks.append((k, float(1 - closest[k]), float(total[k])))
        cos = (maps @ maps[k]).abs().double()
        closest = torch.maximum(closest, cos)
        alive &= closest <= threshold
        alive[k] = False
    return picks


def measure(batches: Iterable[RenderedBatch], base: torch.Tensor, count: int, map_size: int) -> Measurements:
    """Effect, concentration (means over seeds) and unit effect maps of `count` candidates from rendered rows."""
    num_seeds = base.shape[0]
    effect = torch.zeros(count, dtype=torch.float64)
    concentration = torch.zeros(count, dtype=torch.float64)
    maps = torch.zeros(count, num_seeds, base.shape[1], map_size, map_size)
    for rendered in batches:
        diff = rendered.images - base[rendered.seeds]
        e, q = effect_and_concentration(diff)
        effect.index_add_(0, rendered.edits, e.cpu())
        concentration.index_add_(0, rendered.edits, q.cpu())
        maps[rendered.edits, rendered.seeds] = effect_map(diff, map_size).cpu()
    return Measurements(effect / num_seeds, concentration / num_seeds, unit_rows(maps.flatten(1)))


def build_candidates(G: nn.Module, stats: StyleStats, config: DiscoveryConfig) -> list[Candidate]:
    """Every candidate before judging: the style channels of `config.layers`, then the w directions."""
    channels = [
        Candidate(
            name=f"{layer.name}.c{c}",
            kind="channel",
            edit=channel_edit(G, layer.name, c, stats),
            delta=config.delta,
            layer=layer.name,
            layer_index=layer.index,
            channel=c,
        )
        for layer, c in channel_candidates(G, config.layers)
    ]
    return channels + w_candidates(G, config)


def w_candidates(G: nn.Module, config: DiscoveryConfig) -> list[Candidate]:
    """The w directions of every method of `config.w_methods`, in that order."""
    found = []
    for method in config.w_methods:
        if config.components or method == "input":
            found += _w_candidates(G, method, config)
    return found


def _w_candidates(G: nn.Module, method: str, config: DiscoveryConfig) -> list[Candidate]:
    """The w directions of one method: ica0, ica1, ... / pca0, ... / input.rotate, input.tx, input.ty."""
    if method == "input":
        found = input_directions(G, config.w_samples, config.seed)
    else:
        finder = {"pca": pca_directions, "ica": ica_directions}[method]
        # With the input block's own directions among the candidates, the others leave ws[0] alone, so
        # that rotation and translation are not mixed into every appearance direction.
        ws = list(range(1, G.synthesis.num_ws)) if "input" in config.w_methods else None
        found = [
            Direction(**{**d.summary(), "name": f"{method}{k}", "ws": ws}, w=d.w)
            for k, d in enumerate(finder(G, config.w_samples, config.components, config.seed))
        ]
    return [Candidate(d.name, "w_direction", d.to_edit(G), config.w_delta, direction=d) for d in found]


def discover(
    G: nn.Module,
    stats: StyleStats,
    config: DiscoveryConfig,
    progress: bool = True,
    candidates: Sequence[Candidate] | None = None,
) -> list[Candidate]:
    """The `config.top` best distinct candidates of `G` (of `candidates`, default all), best first, scored."""
    candidates = build_candidates(G, stats, config) if candidates is None else list(candidates)
    ws0 = ws_from_seeds(G, config.seeds, config.psi)
    base = render(G, ws0)
    batches = render_edits(
        G,
        ws0,
        [c.edit for c in candidates],
        [c.delta for c in candidates],
        config.batch,
        progress,
        "candidates",
    )
    measured = measure(batches, base, len(candidates), min(config.map_size, base.shape[-1]))
    prior = torch.tensor(
        [1.0 if c.kind == "channel" else config.w_weight for c in candidates], dtype=torch.float64
    )
    quality = measured.effect * measured.concentration * prior
    picks = select_distinct(quality, measured.maps, config.top, config.threshold)
    return [_scored(candidates[k], measured, k, distinctness, total) for k, distinctness, total in picks]


def _scored(
    candidate: Candidate, measured: Measurements, k: int, distinctness: float, total: float
) -> Candidate:
    return Candidate(
        **{
            **candidate.__dict__,
            "effect": float(measured.effect[k]),
            "concentration": float(measured.concentration[k]),
            "distinctness": distinctness,
            "total": total,
        }
    )


def effect_maps_of(G: nn.Module, candidates: Sequence[Candidate], config: DiscoveryConfig) -> torch.Tensor:
    """Unit effect maps [K, D] of `candidates` on the config's seeds (what the distinctness test compares)."""
    ws0 = ws_from_seeds(G, config.seeds, config.psi)
    base = render(G, ws0)
    batches = render_edits(
        G, ws0, [c.edit for c in candidates], [c.delta for c in candidates], config.batch, False
    )
    return measure(batches, base, len(candidates), min(config.map_size, base.shape[-1])).maps
