"""Composition: fused and low-rank paths equal peft's multi-adapter result; signed scales mirror."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer

from sliders.slider_file import LoraFactors
from toyworld.tiny_sdxl import build_tiny_unet
from transfer.compose import compose_sliders

SCALES = [1.5, -2.0, 0.7]


@pytest.fixture
def unet():
    torch.manual_seed(0)
    return build_tiny_unet().eval()


@pytest.fixture
def sliders(unet, make_factors):
    """Three sliders on different module sets, ranks and alphas (so stacks differ per module)."""
    return [
        make_factors(unet, "noxattn", rank=4, alpha=1.0, seed=1, std=0.1),
        make_factors(unet, "xattn", rank=2, alpha=2.0, seed=2, std=0.1),
        make_factors(unet, "full", rank=3, alpha=0.5, seed=3, std=0.1),
    ]


def _forward(unet):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 16, 16, generator=generator)
    context = torch.randn(2, 77, 64, generator=generator)
    added = {
        "text_embeds": torch.randn(2, 32, generator=generator),
        "time_ids": torch.randn(2, 6, generator=generator),
    }
    with torch.no_grad():
        return unet(sample, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample


def _reference(unet, sliders, scales):
    """peft's multi-adapter result: one adapter per slider, `set_adapters(names, scales)`."""
    with compose_sliders(unet, sliders, scales, method="peft") as peft:
        peft.set_weight(1.0)
        return _forward(unet)


@pytest.mark.parametrize("method", ["fused", "lowrank"])
def test_equals_peft_multi_adapter(unet, sliders, method):
    base = _forward(unet)
    expected = _reference(unet, sliders, SCALES)
    assert (expected - base).abs().max() > 0.1, (
        "the sliders must change the output for the test to mean anything"
    )
    composition = compose_sliders(unet, sliders, SCALES, method=method)
    assert torch.equal(_forward(unet), base), "weight 0 (gate closed) is the base model"
    composition.set_weight(1.0)
    torch.testing.assert_close(_forward(unet), expected, atol=1e-4, rtol=1e-4)
    # New signed scales take effect at once, still equal to peft.
    flipped = [-s for s in SCALES[::-1]]
    composition.set_scales(flipped)
    composition.set_weight(1.0)
    torch.testing.assert_close(_forward(unet), _reference_after(unet, composition, sliders, flipped))
    composition.close()
    torch.testing.assert_close(_forward(unet), base, atol=0, rtol=0)


def _reference_after(unet, composition, sliders, scales):
    # Switch ours off while the reference runs on the same UNet.
    composition.set_weight(0.0)
    expected = _reference(unet, sliders, scales)
    composition.set_weight(1.0)
    return expected


def test_fused_leaves_no_per_step_cost(unet, sliders):
    """Fused sliders add no modules or parameters: each UNet call costs what the base model costs."""
    count = sum(p.numel() for p in unet.parameters())
    with compose_sliders(unet, sliders, SCALES) as composition:
        composition.set_weight(1.0)
        assert sum(p.numel() for p in unet.parameters()) == count
        assert not any(isinstance(m, LoraLayer) for m in unet.modules())


def test_signed_scales_mirror_the_weight_update(unet, sliders):
    module = unet.get_submodule("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q")
    base = module.weight.detach().clone()
    with compose_sliders(unet, sliders, SCALES) as composition:
        composition.set_weight(1.0)
        plus = module.weight.detach() - base
        composition.set_scales([-s for s in SCALES])
        minus = module.weight.detach() - base
    assert plus.abs().max() > 1e-3
    torch.testing.assert_close(minus, -plus, atol=1e-6, rtol=0)
    assert torch.equal(module.weight, base)


def test_signed_scales_mirror_layer_outputs_in_peft(unet, sliders):
    """With peft too, -s gives exactly the opposite per-layer update (the UNet itself is not linear)."""
    module = unet.get_submodule("mid_block.resnets.0.conv1")
    x = torch.randn(1, module.in_channels, 4, 4)
    with torch.no_grad():
        base = module(x)
        with compose_sliders(unet, sliders, SCALES, method="peft") as peft:
            wrapped = unet.get_submodule("mid_block.resnets.0.conv1")
            peft.set_weight(1.0)
            plus = wrapped(x) - base
            peft.set_scales([-s for s in SCALES])
            minus = wrapped(x) - base
    torch.testing.assert_close(minus, -plus, atol=1e-5, rtol=0)


def test_slider_for_another_unet_is_refused(unet, make_factors):
    foreign = make_factors(unet, "selfattn")
    foreign["down_blocks.7.attentions.0.proj_in"] = next(iter(foreign.values()))
    with pytest.raises(
        ValueError, match=r"hair: module 'down_blocks.7.attentions.0.proj_in' is not in this UNet"
    ):
        compose_sliders(unet, [foreign], [1.0], names=["hair"])


def test_slider_with_wrong_shapes_is_refused(unet, make_factors):
    factors = make_factors(unet, "selfattn")
    first = next(iter(factors))
    good = factors[first]
    wrong = {**factors, first: LoraFactors(good.down, good.up[:-1], good.alpha)}
    with pytest.raises(ValueError, match=f"eyes: {first}.up has shape"):
        compose_sliders(unet, [wrong], [1.0], names=["eyes"])


def test_argument_errors(unet, sliders):
    with pytest.raises(ValueError, match="3 sliders need 3 scales, got 2"):
        compose_sliders(unet, sliders, [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown 'dense'"):
        compose_sliders(unet, sliders, SCALES, method="dense")


def test_fused_swaps_cached_weights_and_refuses_only_when_scales_change(unet, sliders, monkeypatch):
    composition = compose_sliders(unet, sliders, SCALES)
    fusions = []
    original = composition._fuse
    monkeypatch.setattr(
        composition, "_fuse", lambda scales: (fusions.append(scales.tolist()), original(scales))
    )
    for weight in (1.0, 0.0, 1.0, 0.0, 1.0):  # the gate of three images with the same scales
        composition.set_weight(weight)
    assert len(fusions) == 1
    composition.set_scales([2.0, 0.0, -1.0])
    assert len(fusions) == 2 and fusions[-1] == [2.0, 0.0, -1.0]
    composition.close()


def test_fused_follows_a_unet_moved_between_images(unet, sliders):
    base = _forward(unet)
    expected = _reference(unet, sliders, SCALES)
    composition = compose_sliders(unet, sliders, SCALES)
    composition.set_weight(1.0)
    composition.set_weight(0.0)
    unet.to(torch.float64).to(torch.float32)  # new weight tensors, as offloading or `.to` make
    composition.set_weight(1.0)
    torch.testing.assert_close(_forward(unet), expected, atol=1e-4, rtol=1e-4)
    unet.to(torch.float64)
    with pytest.raises(RuntimeError, match="moved or replaced while sliders were on"):
        composition.set_weight(0.5)
    # The fused weights do not leak: the moved UNet is the base model again, and usable.
    assert composition.weight == 0.0
    unet.to(torch.float32)
    torch.testing.assert_close(_forward(unet), base, atol=0, rtol=0)
    composition.set_weight(1.0)
    torch.testing.assert_close(_forward(unet), expected, atol=1e-4, rtol=1e-4)
    composition.close()
    torch.testing.assert_close(_forward(unet), base, atol=0, rtol=0)


def test_fused_new_scales_reuse_the_fused_weights_memory(unet, sliders):
    """A sweep column re-fuses in place: no new weight memory per set of scales, and the values follow."""
    module = unet.get_submodule("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q")
    base = module.weight.detach().clone()
    with compose_sliders(unet, sliders, SCALES) as composition:
        composition.set_weight(1.0)
        first, plus = module.weight.data_ptr(), module.weight.detach() - base
        composition.set_scales([2 * s for s in SCALES])
        assert module.weight.data_ptr() == first
        torch.testing.assert_close(module.weight.detach() - base, 2 * plus, atol=1e-6, rtol=1e-5)


def test_fused_first_under_inference_mode_then_outside(unet, sliders):
    """Sampling may run under `torch.inference_mode`; new scales set between images must still fuse."""
    with compose_sliders(unet, sliders, SCALES) as composition:
        with torch.inference_mode():
            composition.set_weight(1.0)
            composition.set_weight(0.0)
        composition.set_scales([-s for s in SCALES])
        composition.set_weight(1.0)
        torch.testing.assert_close(
            _forward(unet), _reference_after(unet, composition, sliders, composition.scales)
        )
