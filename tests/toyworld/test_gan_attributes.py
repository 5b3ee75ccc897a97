"""What the shipped toy GAN varies, measured with the probe; and discover finding its eye channel unaided."""

from __future__ import annotations

import pytest

from stylegan_bridge.discovery import DiscoveryConfig, discover
from stylegan_bridge.edits import channel_edit
from stylegan_bridge.style_space import compute_style_stats
from stylegan_bridge.w_directions import input_directions
from toyworld.gan_attributes import Probed, best_per_attribute, coverage, recovers, sweep_quality
from toyworld.probe import load_probe
from toyworld.toy_gan import EYE_CHANNEL, EYE_LAYER, load_toy_gan


@pytest.fixture(scope="module")
def G():
    return load_toy_gan()


@pytest.fixture(scope="module")
def stats(G):
    return compute_style_stats(G, num_samples=4096)


@pytest.fixture(scope="module")
def probe():
    return load_probe()


def test_the_eye_channel_recovers_eye_size_and_nothing_else(G, stats, probe):
    eye = Probed("eye", channel_edit(G, EYE_LAYER, EYE_CHANNEL, stats), 2.0)
    measured = sweep_quality(G, probe, eye, seeds=range(6))
    assert recovers(measured["eye_size"]) and measured["eye_size"]["effect_std"] > 2.0
    assert not any(recovers(measured[a]) for a in measured if a != "eye_size")


def test_the_input_block_translates_the_face(G, probe):
    """input.tx / input.ty (ws[0] alone) are the toy GAN's x and y shift, each nearly pure."""
    found = {d.name: Probed(d.name, d.to_edit(G), 2.0) for d in input_directions(G, num_samples=2000)}
    best = best_per_attribute(G, probe, list(found.values()), seeds=range(6))
    assert best["x_shift"]["candidate"] == "input.tx" and best["x_shift"]["recovered"]
    assert best["y_shift"]["candidate"] == "input.ty" and best["y_shift"]["recovered"]
    assert not best["eye_size"]["recovered"]


@pytest.mark.slow  # ~15 s of one CPU thread: 397 candidates x 2 seeds
def test_discover_finds_the_eye_channel_without_a_box(G, stats, probe):
    config = DiscoveryConfig(samples=2, top=6)
    found = discover(G, stats, config, progress=False)
    names = [c.name for c in found]
    assert f"L{EYE_LAYER}_72_64.c{EYE_CHANNEL}" in names[:4], names
    covered = coverage(G, [Probed(c.name, c.edit, c.delta) for c in found[:4]], probe, ["eye_size"], range(4))
    assert covered["recovered"] == covered["of"] == 1
