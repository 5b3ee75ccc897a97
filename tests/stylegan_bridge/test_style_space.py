"""Style space: layer addressing, style vectors, edits through affine hooks, cached statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_gan import TINY

from stylegan_bridge.edits import Edit, channel_edit, render, w_edit
from stylegan_bridge.networks import Generator
from stylegan_bridge.style_space import (
    capture_styles,
    compute_style_stats,
    generator_fingerprint,
    resolve_layer,
    stats_cache_path,
    style_layers,
    style_offsets,
    style_stats,
    style_vectors,
    to_pil,
    ws_from_seeds,
    z_from_seeds,
)


def test_layers_start_after_input_and_end_with_torgb(G):
    layers = style_layers(G)
    assert (
        [layer.name for layer in layers]
        == G.synthesis.layer_names
        == ["L0_20_16", "L1_20_16", "L2_20_13", "L3_16_8", "L4_16_3"]
    )
    assert [layer.dim for layer in layers] == [16, 16, 16, 13, 8]  # in_channels of each layer
    assert [layer.index for layer in layers] == [0, 1, 2, 3, 4]
    assert [layer.is_torgb for layer in layers] == [False] * 4 + [True]
    assert layers[3].size == 16


@pytest.mark.parametrize("key", [2, "2", "L2", "L2_20_13", -3])
def test_resolve_layer_accepts_index_short_and_nvlabs_name(G, key):
    assert resolve_layer(G, key).name == "L2_20_13"


@pytest.mark.parametrize(
    "key, message", [(5, "out of range 0..4"), ("L9", "no such style layer"), ("input", "no such")]
)
def test_resolve_layer_errors_name_the_layers(G, key, message):
    with pytest.raises(ValueError, match=message):
        resolve_layer(G, key)


def test_z_from_seeds_is_nvlabs_convention():
    z = z_from_seeds([3, 7], 8)
    assert z.dtype == torch.float32
    np.testing.assert_allclose(z[1].numpy(), np.random.RandomState(7).randn(8).astype(np.float32))


def test_style_vectors_match_the_affines_of_a_real_forward(G):
    ws = ws_from_seeds(G, [0, 1, 2], psi=0.7)
    fast = style_vectors(G, ws)
    with capture_styles(G) as captured, torch.no_grad():
        G.synthesis(ws)
    assert list(fast) == G.synthesis.layer_names
    for layer in style_layers(G):
        assert fast[layer.name].shape == (3, layer.dim)
        torch.testing.assert_close(fast[layer.name], captured[layer.name], rtol=0, atol=0)
    assert all(not layer.affine._forward_hooks for layer in G.synthesis.layers)


def test_zero_edit_renders_exactly_the_original_and_keeps_ws(G):
    stats = compute_style_stats(G, num_samples=64)
    ws = ws_from_seeds(G, [0, 1], psi=0.7)
    ws_copy = ws.clone()
    edit = channel_edit(G, 2, 5, stats)
    assert torch.equal(render(G, ws, edit, 0.0), render(G, ws))
    assert not torch.equal(render(G, ws, edit, 5.0), render(G, ws))
    assert torch.equal(ws, ws_copy)


def test_channel_edit_changes_only_that_channel_and_what_flows_from_its_layer(G):
    stats = compute_style_stats(G, num_samples=64)
    ws = ws_from_seeds(G, [4], psi=0.7)
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in G.synthesis.layer_names}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, name=name: outputs[name].append(o))
        for name, layer in zip(G.synthesis.layer_names, G.synthesis.layers)
    ]
    try:
        with capture_styles(G) as before_styles:
            render(G, ws)
        before = dict(before_styles)
        with capture_styles(G) as after_styles:
            render(G, ws, channel_edit(G, "L2", 5, stats), 3.0)
    finally:
        for hook in hooks:
            hook.remove()
    for name in G.synthesis.layer_names:
        diff = after_styles[name] - before[name]
        if name == "L2_20_13":
            expected = torch.zeros_like(diff)
            expected[0, 5] = 3.0 * stats.sigma(name, 5)
            torch.testing.assert_close(diff, expected)
        else:
            assert torch.equal(diff, torch.zeros_like(diff)), name
    # Layers before L2 see the same input; L2 and everything after it change.
    same = [torch.equal(outputs[name][0], outputs[name][1]) for name in G.synthesis.layer_names]
    assert same == [True, True, False, False, False]


def test_style_offsets_accepts_per_sample_vectors_and_removes_hooks_on_error(G):
    ws = ws_from_seeds(G, [0, 1], psi=0.7)
    offset = torch.zeros(2, 16)
    offset[1, 3] = 2.0
    with style_offsets(G, {"L1": offset}), torch.no_grad():
        both = G.synthesis(ws)
    plain = render(G, ws)
    assert torch.equal(both[0], plain[0]) or (both[0] - plain[0]).abs().max() < 1e-5
    assert (both[1] - plain[1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="expected \\[16\\]"):
        with style_offsets(G, {"L1": torch.zeros(5)}):
            pass
    with pytest.raises(RuntimeError):
        with style_offsets(G, {"L1": torch.zeros(16)}):
            raise RuntimeError("boom")
    assert all(not layer.affine._forward_hooks for layer in G.synthesis.layers)


def test_w_edit_moves_every_w_by_delta_sigma(G):
    ws = ws_from_seeds(G, [0], psi=0.7)
    vector = torch.arange(8, dtype=torch.float32)
    edit = w_edit(vector, sigma=2.0)
    assert torch.allclose(edit.w.norm(), torch.tensor(2.0))
    assert not torch.equal(render(G, ws, edit, 1.0), render(G, ws))
    assert torch.equal(render(G, ws, edit, 0.0), render(G, ws))
    with pytest.raises(ValueError, match="changes nothing"):
        Edit()


def test_stats_match_a_direct_computation_and_scale_with_psi(G):
    stats = compute_style_stats(G, num_samples=300, psi=1.0, seed=1, batch=64)
    z = torch.randn([300, 8], generator=torch.Generator().manual_seed(1))
    direct = style_vectors(G, G.mapping(z, None))
    for name, styles in direct.items():
        torch.testing.assert_close(stats.mean[name], styles.mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stats.std[name], styles.std(0, correction=0), rtol=1e-3, atol=1e-5)
    # The affines are linear in w, so truncation by psi scales every channel's std by psi.
    half = compute_style_stats(G, num_samples=300, psi=0.5, seed=1, batch=64)
    torch.testing.assert_close(half.std["L3_16_8"], 0.5 * stats.std["L3_16_8"], rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="channel 99 out of range"):
        stats.sigma("L3_16_8", 99)


def test_stats_cache_hit_does_not_recompute(G, tmp_path):
    calls = []
    hook = G.mapping.register_forward_hook(lambda *args: calls.append(1))
    try:
        first = style_stats(G, num_samples=100, psi=0.7, cache_dir=tmp_path)
        computed = len(calls)
        second = style_stats(G, num_samples=100, psi=0.7, cache_dir=tmp_path)
        assert computed > 0 and len(calls) == computed  # no mapping forward on a cache hit
        other = style_stats(G, num_samples=120, psi=0.7, cache_dir=tmp_path)
        assert len(calls) > computed  # another N is another key
    finally:
        hook.remove()
    for name in first.std:
        assert torch.equal(first.std[name], second.std[name])
    assert not torch.equal(first.std["L0_20_16"], other.std["L0_20_16"])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(name.endswith(".safetensors") for name in files)
    assert second.fingerprint == generator_fingerprint(G) and second.num_samples == 100 and second.psi == 0.7


def test_corrupt_cache_file_is_recomputed(G, tmp_path):
    first = style_stats(G, num_samples=50, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"garbage")
    again = style_stats(G, num_samples=50, cache_dir=tmp_path)
    assert torch.equal(first.std["L1_20_16"], again.std["L1_20_16"])
    assert path.stat().st_size > 100  # rewritten
    key = {
        "fingerprint": first.fingerprint,
        "num_samples": 50,
        "psi": 1.0,
        "cutoff": None,
        "seed": 0,
        "version": 1,
    }
    assert stats_cache_path(tmp_path, key) == path


def test_cache_dir_from_environment(G, tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_TRANSFER_CACHE", str(tmp_path))
    style_stats(G, num_samples=20)
    assert len(list((tmp_path / "stylestats").glob("*.safetensors"))) == 1


def test_fingerprint_changes_with_weights():
    torch.manual_seed(0)
    a = Generator(TINY)
    b = Generator(TINY)
    b.load_state_dict(a.state_dict())
    assert generator_fingerprint(a) == generator_fingerprint(b)
    with torch.no_grad():
        b.synthesis.layer(1).affine.bias[0] += 1
    assert generator_fingerprint(a) != generator_fingerprint(b)


def test_to_pil_quantises_like_nvlabs():
    images = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 4).expand(1, 3, 1, 4)
    (image,) = to_pil(images)
    assert image.mode == "RGB" and image.size == (4, 1)
    assert [image.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 255]
