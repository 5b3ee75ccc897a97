"""Slider files: our kohya layout, diffusers' own loader agreeing with ours, metadata, atomic writes, CLI."""

from __future__ import annotations

import json
import os

import pytest
import safetensors.torch
import torch
from safetensors import safe_open
from unet_probe import randomize, unet_output

from sliders.lora import attach_slider, slider_scale
from sliders.slider_file import (
    LoraFactors,
    factors_from_unet,
    load_factors_into_unet,
    load_slider,
    save_slider,
    slider_metadata,
)
from toyworld.tiny_sdxl import build_tiny_unet


def text_metadata(**changes):
    fields = dict(
        targets="full", base_model="tiny-sdxl", steps=10, prompts={"target": "person", "positive": "old"}
    )
    fields.update(changes)
    return slider_metadata("text", "age", **fields)


@pytest.fixture
def unet():
    torch.manual_seed(0)
    return build_tiny_unet()


@pytest.fixture
def slider(unet, tmp_path):
    """A random rank-4, alpha-1 slider saved by our code, and the UNet with that adapter still attached."""
    attach_slider(unet, rank=4, alpha=1.0, targets="full")
    randomize(unet)
    path = save_slider(tmp_path / "age.safetensors", factors_from_unet(unet), text_metadata())
    return path, unet


def mixed_rank_factors(factors, alpha=3.0):
    """Give every third module rank 2 and `alpha`, so rank (and alpha, unless 1) differ per module."""
    mixed = {}
    for i, (name, f) in enumerate(sorted(factors.items())):
        mixed[name] = LoraFactors(f.down[:2].clone(), f.up[:, :2].clone(), alpha) if i % 3 == 0 else f
    return mixed


# Per-module *alphas* are not tested against diffusers: its kohya converter keys them by the old
# attention-processor names, so peft ignores them for attention layers (a diffusers limitation).
@pytest.mark.parametrize("layout", ["uniform", "mixed-rank"])
def test_diffusers_load_lora_weights_matches_our_loader(tiny_pipe, tmp_path, layout):
    """REQUIRED: with alpha != rank, diffusers' loader + set_adapters(w) equals ours at slider scale w."""
    unet = tiny_pipe.unet
    attach_slider(unet, rank=4, alpha=1.0, targets="full")
    randomize(unet)
    factors = factors_from_unet(unet)
    if layout == "mixed-rank":
        factors = mixed_rank_factors(factors, alpha=1.0)
    path = save_slider(tmp_path / "s.safetensors", factors, text_metadata())
    unet.delete_adapters("slider")
    base = unet_output(unet)

    load_factors_into_unet(unet, load_slider(path, unet).factors, adapter_name="ours")
    ours = {}
    for weight in (-2.0, 1.0):
        with slider_scale(unet, weight, "ours"):
            ours[weight] = unet_output(unet)
    unet.delete_adapters("ours")

    tiny_pipe.load_lora_weights(str(path), adapter_name="theirs")
    for weight in (-2.0, 1.0):
        tiny_pipe.set_adapters(["theirs"], [weight])
        theirs = unet_output(unet)
        assert (theirs - base).abs().max() > 0.1, "the slider must change the output"
        torch.testing.assert_close(theirs, ours[weight], atol=1e-5, rtol=0)


def test_round_trip_reproduces_the_trained_adapter(slider):
    path, unet = slider
    expected = {}
    for weight in (-2.0, 0.5):
        with slider_scale(unet, weight):
            expected[weight] = unet_output(unet)
    original = factors_from_unet(unet)
    unet.delete_adapters("slider")

    loaded = load_slider(path, unet)
    assert loaded.rank == 4 and loaded.alpha == 1.0 and loaded.source_format == "concept-transfer"
    assert sorted(loaded.factors) == sorted(original)
    names = load_factors_into_unet(unet, loaded.factors)
    assert sorted(names) == sorted(original)
    for weight, output in expected.items():
        with slider_scale(unet, weight):
            torch.testing.assert_close(unet_output(unet), output, atol=1e-6, rtol=0)


def test_file_layout_is_kohya_with_real_alpha(slider):
    path, unet = slider
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        alpha = handle.get_tensor("lora_unet_down_blocks_0_resnets_0_conv1.alpha")
        down = handle.get_tensor(
            "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_down.weight"
        )
        header = handle.metadata()
    assert alpha.ndim == 0 and alpha.item() == 1.0 and alpha.dtype == torch.float32
    assert down.shape == (4, 32) and down.is_contiguous()
    assert all(
        k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha"))
        for k in keys
    )
    assert len(keys) == 3 * len(factors_from_unet(unet))
    assert header["ss_network_dim"] == "4" and header["ss_network_alpha"] == "1"
    assert header["ss_network_module"] == "networks.lora"
    assert header["ss_base_model_version"] == "sdxl_base_v1-0"
    assert header["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert header["modelspec.title"] == "age"


def test_metadata_round_trip(slider):
    path, _ = slider
    loaded = load_slider(path)
    assert loaded.metadata == {**text_metadata(), "ss_network_dim": "4", "ss_network_alpha": "1"}
    assert (loaded.kind, loaded.concept, loaded.targets, loaded.base_model) == (
        "text",
        "age",
        "full",
        "tiny-sdxl",
    )
    assert loaded.start_noise == 750 and loaded.scale_range == (-3.0, 3.0)
    assert json.loads(loaded.metadata["concept_transfer.prompts"]) == {"target": "person", "positive": "old"}
    assert loaded.metadata["concept_transfer.steps"] == "10"


def test_metadata_helper_validates_fields():
    with pytest.raises(ValueError, match="kind: must be one of"):
        slider_metadata("sound", "age", targets="full", base_model="m", steps=1)
    with pytest.raises(ValueError, match="prompts: a text slider"):
        slider_metadata("text", "age", targets="full", base_model="m", steps=1)
    with pytest.raises(ValueError, match="targets: unknown preset 'all'"):
        text_metadata(targets="all")
    with pytest.raises(ValueError, match="scale_range"):
        text_metadata(scale_range=(2, -2))
    visual = slider_metadata(
        "visual", "eyes", targets="noxattn", base_model="m", steps=5, corpus={"pairs": 6}
    )
    assert json.loads(visual["concept_transfer.corpus"]) == {"pairs": 6}


def test_save_dtype_option_and_mixed_ranks(slider, tmp_path):
    path, unet = slider
    factors = mixed_rank_factors(factors_from_unet(unet))
    half = save_slider(tmp_path / "half.safetensors", factors, text_metadata(), dtype=torch.float16)
    with safe_open(str(half), framework="pt") as handle:
        first = sorted(factors)[0].replace(".", "_")
        assert handle.get_tensor(f"lora_unet_{first}.lora_up.weight").dtype == torch.float16
        assert handle.get_tensor(f"lora_unet_{first}.alpha").item() == 3.0
        assert handle.metadata()["ss_network_dim"] == "Dynamic"
    loaded = load_slider(half, unet)
    assert loaded.rank == 4 and loaded.alpha is None
    assert {f.rank for f in loaded.factors.values()} == {2, 4}


def test_atomic_write_leaves_no_temporary_files(slider, tmp_path, monkeypatch):
    path, unet = slider
    assert sorted(p.name for p in tmp_path.iterdir()) == ["age.safetensors"]
    target = tmp_path / "out" / "new.safetensors"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_slider(target, factors_from_unet(unet), text_metadata())
    assert list(target.parent.iterdir()) == []


def test_equal_sliders_are_equal_files(slider, tmp_path):
    # safetensors writes its header's metadata in hash-map order: without care, two saves of the same
    # slider differ in their bytes (and sha256), which breaks reproducibility checks and caches.
    path, unet = slider
    factors = factors_from_unet(unet)
    copies = [save_slider(tmp_path / f"copy{i}.safetensors", factors, text_metadata()) for i in range(4)]
    assert len({copy.read_bytes() for copy in copies}) == 1
    assert load_slider(copies[0]).metadata == load_slider(path).metadata


def test_non_finite_weights_are_refused_naming_the_first_bad_tensor(slider, tmp_path):
    path, _ = slider
    tensors, header = {}, None
    with safe_open(str(path), "pt") as handle:
        header = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    keys = sorted(k for k in tensors if k.endswith("lora_up.weight"))
    tensors[keys[3]][0, 0] = float("nan")
    tensors[keys[5]][0, 0] = float("inf")
    broken = tmp_path / "broken.safetensors"
    safetensors.torch.save_file(tensors, str(broken), metadata=header)
    with pytest.raises(ValueError, match=rf"broken\.safetensors: tensor '{keys[3]}' holds NaN or infinite"):
        load_slider(broken)


def test_save_refuses_bad_input(slider, tmp_path):
    _, unet = slider
    with pytest.raises(ValueError, match=r"x\.pt: a slider file must end in \.safetensors"):
        save_slider(tmp_path / "x.pt", factors_from_unet(unet), {})
    with pytest.raises(ValueError, match="metadata: 'steps' must map a string to a string"):
        save_slider(tmp_path / "x.safetensors", factors_from_unet(unet), {"steps": 3})
    with pytest.raises(ValueError, match="alpha must be a positive number"):
        LoraFactors(torch.zeros(4, 8), torch.zeros(8, 4), 0.0)


def test_slider_info_prints_description(slider, capsys, monkeypatch):
    path, _ = slider
    from transfer import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["transfer.commands.slider"])
    assert cli.main(["slider", "info", str(path)]) == 0
    out = capsys.readouterr().out
    for line in (
        "kind:        text",
        "concept:     age",
        "rank:        4",
        "alpha:       1",
        "targets:     full",
        "base model:  tiny-sdxl",
        "modules:     63",
        "start_noise: 750",
        "format:      concept-transfer",
        "  ss_network_alpha = 1",
        "  concept_transfer.steps = 10",
    ):
        assert line in out.splitlines(), line
    metadata_lines = out.split("metadata:\n")[1].splitlines()
    assert metadata_lines == sorted(metadata_lines)

    assert cli.main(["slider", "info", str(path.with_name("missing.safetensors"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.safetensors: no such file" in err


def test_slider_info_names_the_file_of_a_broken_header_value(slider, tmp_path, capsys, monkeypatch):
    path, unet = slider
    from transfer import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["transfer.commands.slider"])
    broken = tmp_path / "broken.safetensors"
    save_slider(broken, factors_from_unet(unet), text_metadata() | {"concept_transfer.scale_range": "wide"})
    assert cli.main(["slider", "info", str(broken)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"error: {broken}: header concept_transfer.scale_range must be a JSON pair [low, high], got 'wide'\n"
    )
    save_slider(broken, factors_from_unet(unet), text_metadata() | {"concept_transfer.start_noise": "late"})
    with pytest.raises(
        ValueError, match=r"broken\.safetensors: header concept_transfer\.start_noise is not a number"
    ):
        _ = load_slider(broken).start_noise
