"""Discovery without names: the scores, batched rendering, the ranking, and the candidates folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stylegan_bridge.candidate_sheets import write_sheets
from stylegan_bridge.candidates import generator_record, load_candidates, write_candidates
from stylegan_bridge.direction_file import Direction, load_directions
from stylegan_bridge.discovery import (
    DiscoveryConfig,
    discover,
    effect_and_concentration,
    effect_maps_of,
    select_distinct,
    unit_rows,
)
from stylegan_bridge.edit_batches import render_edits
from stylegan_bridge.edits import channel_edit, render, w_edit
from stylegan_bridge.style_space import compute_style_stats, ws_from_seeds
from stylegan_bridge.w_directions import independent_components, input_directions

TINY_CONFIG = DiscoveryConfig(samples=2, top=6, components=3, w_samples=300, map_size=8, batch=7)


@pytest.fixture(scope="module")
def stats(G):
    return compute_style_stats(G, num_samples=200)


@pytest.fixture(scope="module")
def G_moving_input(G):
    """The tiny generator with a trained-looking input affine (the fixture's is zero, as NVlabs' init)."""
    import copy

    moved = copy.deepcopy(G)
    with torch.no_grad():
        moved.synthesis.input.affine.weight.copy_(
            torch.randn(moved.synthesis.input.affine.weight.shape, generator=torch.Generator().manual_seed(1))
        )
    return moved


def test_effect_is_the_rms_change_and_concentration_the_unchanged_share():
    uniform = torch.full((1, 3, 8, 8), 0.2)
    effect, concentration = effect_and_concentration(uniform)
    assert effect.item() == pytest.approx(0.2) and concentration.item() == pytest.approx(0.0, abs=1e-12)
    spot = torch.zeros(1, 3, 8, 8)
    spot[0, :, 2, 3] = 0.8  # one pixel of 64 changes
    effect, concentration = effect_and_concentration(spot)
    assert effect.item() == pytest.approx(0.1) and concentration.item() == pytest.approx(1 - 1 / 64)
    half = torch.zeros(1, 3, 8, 8)
    half[0, 0, :4] = 1.0  # red changes in half of the image
    assert effect_and_concentration(half)[1].item() == pytest.approx(0.5)
    assert effect_and_concentration(torch.zeros(1, 3, 4, 4))[0].item() == 0.0  # no change: no score


def test_select_distinct_keeps_the_better_of_two_correlated_candidates():
    maps = unit_rows(torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [-1.0, 0.05, 0], [0, 0.4, 1.0]]))
    quality = torch.tensor([0.5, 0.6, 0.3, 0.2, 0.25])
    picks = select_distinct(quality, maps, top=5, threshold=0.5)
    kept = [k for k, _, _ in picks]
    assert kept[0] == 1 and 0 not in kept and 3 not in kept  # 0 and 3 (sign flipped) duplicate 1
    totals = [t for _, _, t in picks]
    assert totals == sorted(totals, reverse=True)
    for i, (a, _, _) in enumerate(picks):
        for b, _, _ in picks[i + 1 :]:
            assert abs(float(maps[a] @ maps[b])) <= 0.5
    k, distinctness, total = picks[-1]
    assert total == pytest.approx(float(quality[k]) * distinctness)
    assert [k for k, _, _ in select_distinct(quality, maps, top=1, threshold=0.5)] == [1]
    # Ties go to the lower index.
    assert select_distinct(torch.tensor([1.0, 1.0]), unit_rows(torch.eye(2)), 1, 0.5)[0][0] == 0


def test_batched_rendering_equals_rendering_each_edit(G, stats):
    ws = ws_from_seeds(G, [3, 4, 5], psi=0.7)
    edits = [
        channel_edit(G, 0, 2, stats),
        channel_edit(G, "L3_16_8", 5, stats),
        channel_edit(G, -1, 1, stats),
        w_edit(torch.linspace(-1, 1, 8), sigma=0.5),
        w_edit(torch.ones(8), sigma=0.3, w_layers=(3, 4)),  # starts at layer 2
    ]
    deltas = [2.0, -3.0, 4.0, 1.5, 2.0]
    seen = set()
    for rendered in render_edits(G, ws, edits, deltas, batch=4, progress=False):
        for row, (k, s) in enumerate(zip(rendered.edits.tolist(), rendered.seeds.tolist())):
            expected = render(G, ws[s : s + 1], edits[k], deltas[k])[0]
            torch.testing.assert_close(rendered.images[row], expected, atol=2e-5, rtol=0)
            seen.add((k, s))
    assert seen == {(k, s) for k in range(5) for s in range(3)}


def test_w_layers_move_only_the_listed_ws(G):
    ws = ws_from_seeds(G, [0], psi=0.7)
    edit = w_edit(torch.ones(8), sigma=1.0, w_layers=(0, 2))
    moved = render(G, ws, edit, 1.0)
    manual = ws.clone()
    manual[:, [0, 2]] += torch.ones(8) / np.sqrt(8)
    torch.testing.assert_close(moved, G.synthesis(manual))
    direction = Direction(kind="w", name="x", w=torch.ones(8), sigma=1.0, ws=[0, 2])
    assert direction.to_edit(G).w_layers == (0, 2)


def test_independent_components_unmix_independent_uniform_sources():
    rng = np.random.default_rng(0)
    sources = rng.uniform(-1, 1, size=(4000, 3))
    mixing = rng.normal(size=(3, 6))
    units, lengths = independent_components(sources @ mixing, 3)
    truth = mixing / np.linalg.norm(mixing, axis=1, keepdims=True)
    matches = np.abs(units @ truth.T)
    assert (matches.max(axis=1) > 0.99).all() and len(set(matches.argmax(axis=1))) == 3
    np.testing.assert_allclose(np.linalg.norm(units, axis=1), 1.0)
    assert list(lengths) == sorted(lengths, reverse=True)


def test_input_directions_move_one_entry_of_the_input_transform(G, G_moving_input):
    assert input_directions(G, num_samples=100) == []  # a zero input affine has nothing to move
    found = {d.name: d for d in input_directions(G_moving_input, num_samples=300)}
    assert set(found) == {"input.rotate", "input.tx", "input.ty"}
    affine = G_moving_input.synthesis.input.affine
    w = ws_from_seeds(G_moving_input, [0], psi=0.7)[:, 0]
    for name, entry in (("input.rotate", 1), ("input.tx", 2), ("input.ty", 3)):
        d = found[name]
        assert d.ws == [0]
        with torch.no_grad():
            change = affine(w + d.w) - affine(w)
        others = [i for i in range(4) if i != entry]
        assert change[0, others].abs().max() < 1e-4 * change[0, entry].abs()


def test_discovery_is_deterministic_and_keeps_distinct_candidates(G_moving_input, stats, tmp_path):
    G = G_moving_input
    first = discover(G, stats, TINY_CONFIG, progress=False)
    second = discover(G, stats, TINY_CONFIG, progress=False)
    assert [c.name for c in first] == [c.name for c in second] and len(first) == 6
    assert [c.scores() for c in first] == [c.scores() for c in second]
    totals = [c.total for c in first]
    assert totals == sorted(totals, reverse=True) and first[0].distinctness == 1.0
    maps = effect_maps_of(G, first, TINY_CONFIG)
    cos = (maps @ maps.T).abs() - torch.eye(len(first))
    assert float(cos.max()) <= TINY_CONFIG.threshold + 1e-6
    assert {c.kind for c in first} <= {"channel", "w_direction"}
    record = generator_record(G, tmp_path / "tiny.safetensors", "ab" * 32)
    one = write_candidates(tmp_path / "a", first, record, {"seed": 0}, G)
    two = write_candidates(tmp_path / "b", second, record, {"seed": 0}, G)
    assert one.read_bytes() == two.read_bytes()


def test_totals_are_effect_times_concentration_times_distinctness(G, stats):
    config = DiscoveryConfig(samples=2, top=40, components=0, map_size=8, threshold=1.0)
    found = discover(G, stats, config, progress=False)
    assert len(found) == 40  # threshold 1: nothing is dropped as a duplicate
    for c in found:
        assert c.total == pytest.approx(c.effect * c.concentration * c.distinctness)
    # The first pick is the channel with the largest effect * concentration of all 69.
    everything = discover(
        G, stats, DiscoveryConfig(samples=2, top=69, components=0, map_size=8), progress=False
    )
    assert found[0].name == max(everything, key=lambda c: c.effect * c.concentration).name


def test_candidates_folder_round_trip_and_refusals(G_moving_input, stats, tmp_path):
    G = G_moving_input
    config = DiscoveryConfig(samples=2, top=5, components=2, w_samples=300, map_size=8)
    found = discover(G, stats, config, progress=False)
    sha = "cd" * 32
    path = write_candidates(tmp_path / "cand", found, generator_record(G, tmp_path / "g.pkl", sha), {}, G)
    ws = ws_from_seeds(G, [0, 1], 0.7)
    sheets = write_sheets(
        G,
        found,
        ws,
        [0, 1],
        tmp_path / "cand" / "sheets",
        tmp_path / "cand" / "overview.png",
        tile=32,
        progress=False,
    )
    loaded = load_candidates(tmp_path / "cand", G_sha256=sha)
    assert [e.name for e in loaded.entries] == [c.name for c in found]
    assert [e.sheet for e in loaded.entries] == sheets and all(p.is_file() for p in sheets)
    w_entries = [e for e in loaded.entries if e.kind == "w_direction"]
    assert [e.direction_index for e in w_entries] == list(range(len(w_entries)))
    directions = load_directions(tmp_path / "cand" / "directions.safetensors").directions
    assert [d.name for d in directions] == [e.name for e in w_entries]
    for entry in loaded.entries:
        edit = entry.to_edit(G, stats)
        candidate = next(c for c in found if c.name == entry.name)
        torch.testing.assert_close(
            render(G, ws, edit, entry.delta), render(G, ws, candidate.edit, candidate.delta)
        )
    with pytest.raises(ValueError, match=r"candidates.json: discovered on another generator \(g.pkl"):
        load_candidates(path, G_sha256="ef" * 32)
    document = json.loads(path.read_text())
    document["candidates"][0]["rank"] = 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"bad.json: candidates\[0\]: 'rank' must be 1"):
        load_candidates(bad)
    bad.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="bad.json: not a candidates file"):
        load_candidates(bad)
    with pytest.raises(FileNotFoundError, match="candidates file not found"):
        load_candidates(tmp_path / "nowhere")


def test_config_refuses_bad_numbers():
    with pytest.raises(ValueError, match="--top must be >= 1, got 0"):
        DiscoveryConfig(top=0)
    with pytest.raises(ValueError, match="--w-methods: unknown method"):
        DiscoveryConfig(w_methods=("svd",))
    with pytest.raises(ValueError, match="--delta must be a finite number > 0"):
        DiscoveryConfig(delta=float("nan"))
