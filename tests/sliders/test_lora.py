"""The slider adapter: target presets, signed scales, per-sample scales, disabling."""

from __future__ import annotations

import pytest
import torch

from sliders.lora import (
    TARGET_PRESETS,
    adapter_disabled,
    attach_slider,
    per_sample_scale,
    slider_parameters,
    slider_scale,
    target_module_names,
)
from toyworld.tiny_sdxl import build_tiny_unet


@pytest.fixture
def unet():
    torch.manual_seed(0)
    return build_tiny_unet().eval()


def _inputs(batch: int = 2):
    g = torch.Generator().manual_seed(1)
    return dict(
        sample=torch.randn(batch, 4, 16, 16, generator=g),
        timestep=torch.full((batch,), 500),
        encoder_hidden_states=torch.randn(batch, 7, 64, generator=g),
        added_cond_kwargs={
            "text_embeds": torch.randn(batch, 32, generator=g),
            "time_ids": torch.zeros(batch, 6),
        },
    )


def _randomise(unet, std: float = 0.1):
    g = torch.Generator().manual_seed(2)
    for p in slider_parameters(unet):
        p.data = torch.randn(p.shape, generator=g) * std


def test_presets_select_the_paper_roles(unet):
    noxattn = target_module_names(unet, "noxattn")
    assert not any(".attn2." in n for n in noxattn)
    assert any(n.endswith("attn1.to_out.0") for n in noxattn)
    assert any(n.endswith("resnets.0.conv_shortcut") for n in noxattn)
    assert any(n.endswith("time_emb_proj") for n in noxattn)
    assert not any(n.startswith(("time_embedding", "add_embedding")) for n in noxattn)
    xattn = target_module_names(unet, "xattn")
    assert xattn and all(".attn2." in n for n in xattn)
    selfattn = target_module_names(unet, "selfattn")
    assert selfattn and all(".attn1." in n for n in selfattn)
    assert set(target_module_names(unet, "full")) == set(noxattn) | set(xattn)
    assert set(TARGET_PRESETS) == {"noxattn", "xattn", "selfattn", "full"}


def test_unknown_preset_is_named(unet):
    with pytest.raises(ValueError, match="targets: unknown preset 'attn'"):
        target_module_names(unet, "attn")


def test_fresh_slider_is_identity_and_only_factors_train(unet):
    names = attach_slider(unet, rank=4, alpha=1.0)
    params = slider_parameters(unet)
    assert len(params) == 2 * len(names)
    assert {p.shape[0] for p in params[::2]} == {4}  # lora_A rows = rank
    x = _inputs()
    with adapter_disabled(unet):
        base = unet(**x).sample
    with slider_scale(unet, 3.0):
        assert torch.allclose(unet(**x).sample, base)  # up starts at zero


def test_signed_scale_is_linear_and_restored(unet):
    attach_slider(unet, rank=4, alpha=2.0)
    _randomise(unet, std=0.03)  # small enough that the UNet responds almost linearly
    x = _inputs()
    with adapter_disabled(unet):
        base = unet(**x).sample
    with slider_scale(unet, 1.0):
        plus = unet(**x).sample
    with slider_scale(unet, -1.0):
        minus = unet(**x).sample
    assert (plus - base).abs().max() > 1e-3
    # First-order symmetric: the midpoint of +1 and -1 stays close to the base, far closer than the effect.
    assert ((plus + minus) / 2 - base).abs().max() < 0.2 * (plus - base).abs().max()
    layer = next(m for m in unet.modules() if hasattr(m, "scaling") and "slider" in m.scaling)
    assert layer.scaling["slider"] == pytest.approx(2.0 / 4)  # restored to alpha / r


def test_per_sample_scale_equals_separate_passes(unet):
    attach_slider(unet)
    _randomise(unet)
    x = _inputs(batch=2)
    with slider_scale(unet, 1.5):
        first = unet(**x).sample[0]
    with slider_scale(unet, -0.5):
        second = unet(**x).sample[1]
    with per_sample_scale(unet, torch.tensor([1.5, -0.5])):
        both = unet(**x).sample
    torch.testing.assert_close(both[0], first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1], second, atol=1e-5, rtol=1e-5)


def test_disabled_matches_model_without_adapter(unet):
    x = _inputs()
    reference = unet(**x).sample
    attach_slider(unet)
    _randomise(unet)
    with adapter_disabled(unet):
        torch.testing.assert_close(unet(**x).sample, reference)
    with slider_scale(unet, 1.0):
        assert not torch.allclose(unet(**x).sample, reference)


def test_bad_rank_and_alpha(unet):
    with pytest.raises(ValueError, match="rank"):
        attach_slider(unet, rank=0)
    with pytest.raises(ValueError, match="alpha"):
        attach_slider(unet, alpha=0)


def test_a_second_slider_targets_the_same_modules_after_the_first_is_deleted(unet):
    """peft keeps its wrappers after delete_adapters; a new slider must still find every target."""
    first = attach_slider(unet, adapter_name="first")
    unet.delete_adapters("first")
    assert target_module_names(unet) == first
    second = attach_slider(unet, adapter_name="second")
    assert second == first
    assert len(slider_parameters(unet, "second")) == 2 * len(first)
