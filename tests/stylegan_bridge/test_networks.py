"""Generator: the layer schedule and parameter counts of the official configs, shapes, truncation, names."""

from __future__ import annotations

import pytest
import torch

from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.networks import Generator, layer_schedule

# The 32 px micro configs of the facts sheet (parameter counts measured with NVlabs code).
MICRO_T = GeneratorConfig(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32)
MICRO_R = GeneratorConfig(
    z_dim=32,
    w_dim=32,
    img_resolution=32,
    channel_base=1024,
    channel_max=64,
    conv_kernel=1,
    use_radial_filters=True,
)
FFHQ_T = GeneratorConfig()
FFHQ_R = GeneratorConfig(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True)


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(MICRO_T).eval().requires_grad_(False)


def test_official_1024_schedules_match_nvlabs_names_and_style_dims():
    _, t = layer_schedule(FFHQ_T)
    _, r = layer_schedule(FFHQ_R)
    assert [s.name for s in t] == [
        "L0_36_512", "L1_36_512", "L2_52_512", "L3_52_512", "L4_84_512", "L5_148_512", "L6_148_512", "L7_276_323",
        "L8_276_203", "L9_532_128", "L10_1044_81", "L11_1044_51", "L12_1044_32", "L13_1024_32", "L14_1024_3",
    ]  # fmt: skip
    assert [s.name for s in r][4] == "L4_84_1024"
    assert sum(s.in_channels for s in t) == 4946 and sum(s.in_channels for s in r) == 9890
    assert [s.is_critically_sampled for s in t][-3:] == [True, True, True] and not t[11].is_critically_sampled


def test_fp16_layers_are_the_four_highest_resolutions_as_nvlabs():
    _, t = layer_schedule(FFHQ_T)
    # NVlabs: use_fp16 = sampling_rate * 2**num_fp16_res > img_resolution (rates 128 .. 1024 at 1024 px).
    assert [s.name for s in t if s.use_fp16][0] == "L5_148_512" and sum(s.use_fp16 for s in t) == 10
    _, none = layer_schedule(GeneratorConfig(num_fp16_res=0))
    assert not any(s.use_fp16 for s in none)


def test_fp16_is_cuda_only_so_the_cpu_renders_fp32_either_way(G):
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    assert torch.equal(G(z, force_fp32=False), G(z, force_fp32=True))


def test_official_1024_parameter_counts():
    with torch.device("meta"):  # shapes only: no memory, no random numbers
        gt = Generator(FFHQ_T)
        gr = Generator(FFHQ_R)
    assert sum(p.numel() for p in gt.parameters()) == 22_313_167
    assert sum(p.numel() for p in gt.mapping.parameters()) == 525_312
    assert sum(p.numel() for p in gr.parameters()) == 15_093_151
    assert gr.synthesis.layer(0).down_filter.shape == (12, 12)  # radial in the non-critical layers
    assert gr.synthesis.layer(12).down_filter.shape == (12,)


def test_micro_parameter_counts_and_state_dict_names(G):
    assert sum(p.numel() for p in G.parameters()) == 122_883
    assert sum(p.numel() for p in Generator(MICRO_R).parameters()) == 81_669
    keys = set(G.state_dict())
    assert len(keys) == 114
    for key in [
        "mapping.fc0.weight", "mapping.fc1.bias", "mapping.w_avg", "synthesis.input.freqs", "synthesis.input.phases",
        "synthesis.input.transform", "synthesis.input.affine.weight", "synthesis.L0_36_32.magnitude_ema",
        "synthesis.L0_36_32.up_filter", "synthesis.L0_36_32.down_filter", "synthesis.L4_36_32.affine.weight",
        "synthesis.L14_32_3.weight",
    ]:  # fmt: skip
        assert key in keys, key
    # ToRGB has neither filter (one tap each): no buffer, as in NVlabs' state dicts.
    assert "synthesis.L14_32_3.up_filter" not in keys


def test_render_shapes_and_range(G):
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    img = G(z, None, truncation_psi=0.7, noise_mode="const")
    assert img.shape == (3, 3, 32, 32) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and img.abs().max() < 5
    ws = G.mapping(z, None, truncation_psi=0.7)
    assert ws.shape == (3, G.num_ws, 32) and G.num_ws == 16
    torch.testing.assert_close(G.synthesis(ws), img, rtol=0, atol=0)


def test_batch_and_single_render_agree(G):
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
    batch = G(z)
    single = torch.cat([G(z[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-5)


def test_truncation_psi_and_cutoff():
    torch.manual_seed(0)
    G = Generator(MICRO_T).eval()
    G.mapping.w_avg.normal_()
    z = torch.randn(2, 32)
    w = G.mapping(z, None)
    ws0 = G.mapping(z, None, truncation_psi=0.0)
    torch.testing.assert_close(ws0, G.mapping.w_avg.expand_as(ws0))
    ws = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=8)
    torch.testing.assert_close(ws[:, :8], G.mapping.w_avg + 0.5 * (w[:, :8] - G.mapping.w_avg))
    torch.testing.assert_close(ws[:, 8:], w[:, 8:])


def test_layer_access_by_index_and_name(G):
    assert G.synthesis.layer(4) is G.synthesis.layer("L4_36_32") is G.synthesis.layers[4]
    assert G.synthesis.layer(-1).is_torgb and G.synthesis.layer(-1) is G.synthesis.L14_32_3
    assert G.synthesis.layer(4).affine.out_features == G.synthesis.layer(4).in_channels
    with pytest.raises(ValueError, match="out of range"):
        G.synthesis.layer(15)
    with pytest.raises(ValueError, match="unknown synthesis layer 'L99'"):
        G.synthesis.layer("L99")


def test_conditional_generator_needs_c():
    G = Generator(
        GeneratorConfig(z_dim=8, w_dim=8, c_dim=3, img_resolution=16, channel_base=64, channel_max=8)
    )
    z, c = torch.randn(2, 8), torch.randn(2, 3)
    assert G(z, c).shape == (2, 3, 16, 16)
    assert set(G.state_dict()) >= {"mapping.embed.weight", "mapping.embed.bias"}
    with pytest.raises(ValueError, match=r"c must be \[2, 3\]"):
        G(z)


def test_bad_inputs_are_value_errors(G):
    with pytest.raises(ValueError, match=r"z must be \[B, 32\]"):
        G(torch.randn(2, 31))
    with pytest.raises(ValueError, match=r"ws must be \[B, 16, 32\]"):
        G.synthesis(torch.randn(2, 15, 32))
    with pytest.raises(ValueError, match="noise_mode"):
        G(torch.randn(1, 32), noise_mode="loud")


def test_update_emas_moves_magnitude_and_w_avg():
    G = Generator(MICRO_T)
    G(torch.randn(2, 32), update_emas=True)
    assert G.synthesis.layer(0).magnitude_ema.item() != 1.0
    assert G.mapping.w_avg.abs().sum() > 0


def test_config_validation_and_init_kwargs_round_trip():
    with pytest.raises(ValueError, match="GeneratorConfig.conv_kernel must be odd"):
        GeneratorConfig(conv_kernel=2)
    with pytest.raises(ValueError, match="unknown generator argument 'bogus'"):
        GeneratorConfig.from_init_kwargs({**MICRO_T.to_init_kwargs(), "bogus": 1})
    with pytest.raises(ValueError, match="unknown mapping_kwargs key 'depth'"):
        GeneratorConfig.from_init_kwargs({**MICRO_T.to_init_kwargs(), "mapping_kwargs": {"depth": 2}})
    for bad in ({"z_dim": "abc"}, {"z_dim": None}, {"channel_base": 2.5}, {"output_scale": [1]}):
        key = next(iter(bad))
        with pytest.raises(ValueError, match=rf"^x\.pkl: G_ema: generator argument '{key}' has an invalid"):
            GeneratorConfig.from_init_kwargs({**MICRO_T.to_init_kwargs(), **bad}, source="x.pkl: G_ema")
    with pytest.raises(ValueError, match="x.pkl: mapping_kwargs must be a dict"):
        GeneratorConfig.from_init_kwargs({**MICRO_T.to_init_kwargs(), "mapping_kwargs": 3}, source="x.pkl")
    assert GeneratorConfig.from_json(MICRO_R.to_json()) == MICRO_R
    kwargs = MICRO_R.to_init_kwargs()
    assert kwargs["mapping_kwargs"] == {"num_layers": 2, "lr_multiplier": 0.01, "w_avg_beta": 0.998}


def test_half_precision_module_renders_close_to_fp32(G):
    half = Generator(MICRO_T).eval().requires_grad_(False)
    half.load_state_dict(G.state_dict())
    half = half.to(torch.bfloat16)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(2))
    full, low = G(z), half(z)
    assert low.dtype == torch.float32  # images always come back in fp32
    assert (full - low).abs().max() < 0.15 * full.abs().max()


def test_init_kwargs_rebuild_the_same_architecture(G):
    again = Generator(GeneratorConfig.from_init_kwargs(G.init_kwargs))
    assert again.config == G.config and list(again.state_dict()) == list(G.state_dict())
