"""Which world attributes the toy GAN can vary, and which of them a set of discovered candidates recovers.

A measurement, scored with the attribute probe (which discovery never sees). A direction is swept over
`SWEEP` x its delta on `seeds`; the probe reads every render, and `slider_eval.quality` gives, per
attribute, the per-seed Spearman of the reading against the delta, the effect from -delta to +delta in
world stds, and the off-target ratio (mean |change| of the other attributes / |effect|). A direction
*recovers* an attribute when Spearman >= 0.9 in the direction of its effect (an unnamed direction may
lower what it moves), |effect| >= 1 world std and off-target <= 0.25 (the library goals).

`gan_varies` asks whether ANY direction of the GAN does it. Its pool: the style channels (all screened at
+-2 stds on four seeds, the best three per attribute swept in full at 2 and at 3 stds), GANSpace's
principal directions and their independent components (on every w, and on ws[1:] as discover uses them),
the input block's rotation and translation, and per attribute a w direction fitted to the world's truth
(the toy GAN's latent carries the attributes, `toy_gan.attributes_from_z`): the regression normal of the
attribute on w made orthogonal to the other attributes' normals (InterFaceGAN's conditional edit, Shen
et al. 2020 sec. 2.3), on every w and on ws[1:]. `coverage` asks the same of discover's top K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stylegan_bridge.directions import channel_candidates
from stylegan_bridge.discovery import DiscoveryConfig, w_candidates
from stylegan_bridge.edit_batches import render_edits
from stylegan_bridge.edits import Edit, channel_edit, render, w_edit
from stylegan_bridge.style_space import StyleStats, ws_from_seeds
from toyworld.slider_eval import quality
from toyworld.toy_gan import attributes_from_z
from toyworld.world import ATTRIBUTE_NAMES, WORLD_STD

SWEEP = (-1.0, -0.5, 0.0, 0.5, 1.0)  # fractions of a direction's delta
SPEARMAN_MIN = 0.9
EFFECT_MIN = 1.0  # world stds from -delta to +delta
OFF_TARGET_MAX = 0.25


@dataclass(frozen=True)
class Probed:
    """A direction to measure: its name, its edit at delta = 1 and the delta it is swept to."""

    name: str
    edit: Edit
    delta: float


def sweep_quality(
    G: nn.Module, probe, direction: Probed, seeds: Sequence[int], psi: float = 0.7
) -> dict[str, dict]:
    """{attribute: slider_eval.quality(...)} of one direction swept over SWEEP x delta on `seeds`."""
    ws = ws_from_seeds(G, list(seeds), psi)
    steps = torch.tensor(SWEEP) * direction.delta
    rows = ws.repeat(len(SWEEP), 1, 1)  # scale-major: scale i, then every seed
    values = probe.measure(render(G, rows, direction.edit, steps.repeat_interleave(len(seeds))))
    shaped = {name: v.reshape(1, len(SWEEP), len(seeds)) for name, v in values.items()}
    return {name: quality(shaped, list(steps.tolist()), name) for name in ATTRIBUTE_NAMES}


def monotonicity(measured: dict) -> float:
    """Per-seed Spearman in the direction of the mean effect (an unnamed direction's sign is arbitrary)."""
    return measured["spearman"] * (1.0 if measured["effect_std"] >= 0 else -1.0)


def recovers(measured: dict) -> bool:
    """Monotone (per-seed Spearman, either way), large enough, and mostly this attribute."""
    return (
        monotonicity(measured) >= SPEARMAN_MIN
        and abs(measured["effect_std"]) >= EFFECT_MIN
        and measured["off_target"] <= OFF_TARGET_MAX
    )


def best_per_attribute(
    G: nn.Module, probe, directions: Sequence[Probed], seeds: Sequence[int], psi: float = 0.7
) -> dict[str, dict]:
    """Per attribute: the direction that recovers it with the lowest off-target (else the most monotone one)."""
    table = {d.name: sweep_quality(G, probe, d, seeds, psi) for d in directions}
    best = {}
    for attribute in ATTRIBUTE_NAMES:
        name = min(table, key=lambda n, a=attribute: _preference(table[n][a]))
        m = table[name][attribute]
        best[attribute] = {
            "candidate": name,
            "spearman": m["spearman"],
            "effect_std": m["effect_std"],
            "off_target": m["off_target"],
            "recovered": recovers(m),
        }
    return best


def _preference(measured: dict) -> tuple:
    """Sort key: recovering directions first, by off-target; then the rest by monotone effect."""
    if recovers(measured):
        return (0, measured["off_target"])
    return (1, -monotonicity(measured) * abs(measured["effect_std"]))


def truth_directions(G: nn.Module, samples: int = 4096, seed: int = 0) -> list[Probed]:
    """Per attribute, its regression normal on w made orthogonal to the others', on every w and on ws[1:]."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn([samples, G.z_dim], generator=generator)
    with torch.no_grad():
        w = G.mapping(z.to(next(G.parameters()).device), None)[:, 0].double().cpu().numpy()
    attributes = attributes_from_z(z.numpy()) / np.array([WORLD_STD[a] for a in ATTRIBUTE_NAMES])
    centred = w - w.mean(axis=0)
    normals = np.linalg.lstsq(centred, attributes - attributes.mean(axis=0), rcond=None)[0].T  # [A, w_dim]
    out = []
    for a, attribute in enumerate(ATTRIBUTE_NAMES):
        others = np.delete(normals, a, axis=0).T  # [w_dim, A-1]
        residual = normals[a] - others @ np.linalg.lstsq(others, normals[a], rcond=None)[0]
        unit = torch.from_numpy(residual / np.linalg.norm(residual)).float()
        sigma = float(np.std(centred @ unit.double().numpy()))
        for suffix, layers in (("", None), ("@layers", tuple(range(1, G.synthesis.num_ws)))):
            edit = w_edit(unit, sigma, label=attribute, w_layers=layers)
            out.append(Probed(f"truth_{attribute}{suffix}", edit, 2.0))
    return out


def screen_channels(
    G: nn.Module, stats: StyleStats, probe, delta: float = 2.0, seeds: Sequence[int] = range(4),
    keep: int = 3, psi: float = 0.7, batch: int = 32,
) -> list[Probed]:  # fmt: skip
    """The `keep` channels per attribute whose +-delta moves it most purely (|change| / other changes)."""
    candidates = channel_candidates(G)
    edits = [channel_edit(G, layer.name, c, stats) for layer, c in candidates]
    ws = ws_from_seeds(G, list(seeds), psi)
    change = np.zeros((len(edits), len(seeds), len(ATTRIBUTE_NAMES)))
    for sign in (-1.0, 1.0):
        for rendered in render_edits(G, ws, edits, sign * delta, batch, progress=False):
            values = probe.measure(rendered.images)
            reading = np.stack([values[a] / WORLD_STD[a] for a in ATTRIBUTE_NAMES], axis=1)
            change[rendered.edits.numpy(), rendered.seeds.numpy()] += sign * reading
    effect = np.abs(change.mean(axis=1))  # [N, A]
    spread = np.abs(change).mean(axis=1)
    picked: set[int] = set()
    for a in range(len(ATTRIBUTE_NAMES)):
        purity = effect[:, a] / (np.delete(spread, a, axis=1).mean(axis=1) + 1e-3)
        picked.update(
            np.argsort(-purity * np.minimum(effect[:, a], EFFECT_MIN), kind="stable")[:keep].tolist()
        )
    return [Probed(f"{candidates[k][0].name}.c{candidates[k][1]}", edits[k], delta) for k in sorted(picked)]


def w_directions(G: nn.Module, components: int = 10, delta: float = 2.0) -> list[Probed]:
    """GANSpace's principal and independent directions on every w, and as discover uses them: on ws[1:]
    (`@layers`) beside the input block's rotation and translation."""
    found = []
    for method in ("pca", "ica"):
        plain = DiscoveryConfig(components=components, w_methods=(method,))
        found += [Probed(c.name, c.edit, delta) for c in w_candidates(G, plain)]
    scoped = DiscoveryConfig(components=components, w_methods=("input", "pca", "ica"))
    for c in w_candidates(G, scoped):
        found.append(Probed(c.name if c.name.startswith("input.") else f"{c.name}@layers", c.edit, delta))
    return found


def gan_varies(
    G: nn.Module, stats: StyleStats, probe, seeds: Sequence[int] = range(8), psi: float = 0.7
) -> dict:
    """{"varies": [attributes some direction recovers], "attributes": {attribute: best direction's figures}}."""
    shortlist = screen_channels(G, stats, probe, psi=psi)
    stronger = [Probed(f"{d.name}@3", d.edit, 3.0) for d in shortlist]  # some channels move little at 2 stds
    pool = shortlist + stronger + w_directions(G) + truth_directions(G)
    best = best_per_attribute(G, probe, pool, seeds, psi)
    return {"varies": [a for a in ATTRIBUTE_NAMES if best[a]["recovered"]], "attributes": best}


def coverage(
    G: nn.Module, directions: Sequence[Probed], probe, varies: Sequence[str],
    seeds: Sequence[int] = range(8), psi: float = 0.7,
) -> dict:  # fmt: skip
    """How many attributes of `varies` some of `directions` (e.g. discover's top K) recovers, and by which."""
    best = best_per_attribute(G, probe, directions, seeds, psi)
    attributes = {a: best[a] for a in varies}
    return {
        "recovered": sum(m["recovered"] for m in attributes.values()),
        "of": len(varies),
        "attributes": attributes,
    }


def probed_candidates(G: nn.Module, stats: StyleStats, candidates: Sequence) -> list[Probed]:
    """discover's output (`Candidate`s, or the `CandidateEntry`s of a loaded candidates.json) as directions."""
    return [
        Probed(c.name, c.edit if hasattr(c, "edit") else c.to_edit(G, stats), float(c.delta))
        for c in candidates
    ]


def discovery_report(
    G: nn.Module, stats: StyleStats, probe, config=None, seeds: Sequence[int] = range(8)
) -> dict:
    """What the toy GAN varies and what discover's top K (default settings) recovers of it, with the names."""
    from stylegan_bridge.discovery import DiscoveryConfig, discover

    found = discover(G, stats, config or DiscoveryConfig(), progress=False)
    varies = gan_varies(G, stats, probe, seeds)
    covered = coverage(G, probed_candidates(G, stats, found), probe, varies["varies"], seeds)
    return {
        "gan_varies": varies["varies"],
        "gan_attributes": varies["attributes"],
        "recovered": covered["recovered"],
        "of": covered["of"],
        "attributes": covered["attributes"],
        "top": [c.name for c in found],
    }
