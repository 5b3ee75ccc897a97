"""Other layouts through `load_slider`: original Concept Sliders files, diffusers/peft, sgm names; refusals."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import save_file
from unet_probe import randomize, unet_output

from sliders.lora import adaptable_modules, attach_slider, slider_scale
from sliders.slider_file import (
    LoraFactors,
    factors_from_unet,
    kohya_name,
    load_factors_into_unet,
    load_slider,
)
from sliders.unet_names import decode_underscores, kohya_resolver, sgm_prefixes
from toyworld.tiny_sdxl import build_tiny_unet


@pytest.fixture
def trained():
    """A tiny UNet with a random rank-4, alpha-1 slider attached, and its outputs at scales -2 and 1."""
    torch.manual_seed(0)
    unet = build_tiny_unet()
    attach_slider(unet, rank=4, alpha=1.0, targets="noxattn")
    randomize(unet, seed=0)
    expected = {}
    for weight in (-2.0, 1.0):
        with slider_scale(unet, weight):
            expected[weight] = unet_output(unet)
    factors = factors_from_unet(unet)
    unet.delete_adapters("slider")
    return unet, factors, expected


def assert_reproduces(unet, slider, expected):
    load_factors_into_unet(unet, slider.factors, adapter_name="loaded")
    for weight, output in expected.items():
        with slider_scale(unet, weight, "loaded"):
            torch.testing.assert_close(unet_output(unet), output, atol=1e-6, rtol=0)


def kohya_state(factors, alpha=True, rename=kohya_name):
    state = {}
    for name, f in factors.items():
        state[rename(name) + ".lora_down.weight"] = f.down.clone()
        state[rename(name) + ".lora_up.weight"] = f.up.clone()
        if alpha:
            state[rename(name) + ".alpha"] = torch.tensor(f.alpha)
    return state


@pytest.mark.parametrize(
    "file_name, with_alpha",
    [
        ("age_alpha1.0_rank4_noxattn_last.pt", False),
        ("age_alpha1.0_rank4_noxattn_500steps.safetensors", False),
        ("age_alpha1.0_rank4_noxattn_last.pt", True),
    ],
)
def test_original_concept_sliders_files_round_trip(trained, tmp_path, file_name, with_alpha):
    unet, factors, expected = trained
    path = tmp_path / file_name
    state = kohya_state(factors, alpha=with_alpha)
    (torch.save if path.suffix == ".pt" else save_file)(state, path)

    slider = load_slider(path, unet)
    assert slider.source_format == "concept-sliders"
    assert slider.rank == 4 and slider.alpha == 1.0 and slider.metadata == {}
    assert_reproduces(unet, slider, expected)


def test_original_file_without_alpha_anywhere_assumes_rank(trained, tmp_path, caplog):
    unet, factors, _ = trained
    path = tmp_path / "age_last.pt"
    torch.save(kohya_state(factors, alpha=False), path)
    with caplog.at_level(logging.WARNING):
        slider = load_slider(path, unet)
    assert slider.alpha == 4.0
    assert "no .alpha tensors" in caplog.text and "age_last.pt" in caplog.text


def test_diffusers_peft_file_loads_with_alpha_from_metadata(trained, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from peft import get_peft_model_state_dict

    unet, factors, expected = trained
    load_factors_into_unet(unet, factors, adapter_name="tmp")
    StableDiffusionXLPipeline.save_lora_weights(
        tmp_path,
        unet_lora_layers=get_peft_model_state_dict(unet, adapter_name="tmp"),
        unet_lora_adapter_metadata=unet.peft_config["tmp"].to_dict(),
    )
    unet.delete_adapters("tmp")
    path = tmp_path / "pytorch_lora_weights.safetensors"

    slider = load_slider(tmp_path, unet)  # the folder diffusers wrote is accepted too
    assert slider.source_path == path
    assert slider.source_format == "diffusers" and slider.alpha == 1.0 and slider.rank == 4
    assert sorted(slider.factors) == sorted(factors)
    assert_reproduces(unet, slider, expected)


def test_diffusers_file_without_metadata_means_alpha_equals_rank(trained, tmp_path):
    unet, factors, _ = trained
    path = tmp_path / "old_style.safetensors"
    state = {}
    for name, f in factors.items():
        state[f"unet.{name}.lora.down.weight"] = f.down.contiguous()
        state[f"unet.{name}.lora.up.weight"] = f.up.contiguous()
    save_file(state, path)
    slider = load_slider(path, unet)
    assert slider.alpha == 4.0 and sorted(slider.factors) == sorted(factors)


def sgm_namer(config):
    """diffusers path -> kohya key stem in sd-scripts' sgm spelling (the inverse of our table)."""
    to_sgm = {target: prefix for prefix, (target, _) in sgm_prefixes(config).items()}
    leaves = {"conv1": "in_layers_2", "conv2": "out_layers_3", "time_emb_proj": "emb_layers_1"}
    leaves["conv_shortcut"] = "skip_connection"

    def rename(path):
        flat = path.replace(".", "_")
        for target, prefix in sorted(to_sgm.items(), key=lambda item: -len(item[0])):
            if flat.startswith(target + "_"):
                rest = flat[len(target) + 1 :]
                rest = "op" if "downsamplers" in target else leaves.get(rest, rest)
                return f"lora_unet_{prefix}_{rest}"
        raise AssertionError(path)

    return rename


def test_sgm_named_kohya_file_loads(trained, tmp_path):
    unet, factors, expected = trained
    path = tmp_path / "sgm.safetensors"
    save_file(kohya_state(factors, rename=sgm_namer(unet.config)), path)
    slider = load_slider(path, unet)
    assert slider.source_format == "kohya-sgm" and sorted(slider.factors) == sorted(factors)
    assert_reproduces(unet, slider, expected)


def test_sgm_mapping_agrees_with_diffusers(tiny_pipe, tmp_path):
    """diffusers' own sgm conversion (an independent implementation) gives the same UNet outputs."""
    unet = tiny_pipe.unet
    attach_slider(unet, rank=4, alpha=1.0, targets="full")
    randomize(unet, seed=3)
    factors = factors_from_unet(unet)
    unet.delete_adapters("slider")
    path = tmp_path / "sgm.safetensors"
    save_file(kohya_state(factors, rename=sgm_namer(unet.config)), path)

    load_factors_into_unet(unet, load_slider(path, unet).factors, adapter_name="ours")
    with slider_scale(unet, -2.0, "ours"):
        ours = unet_output(unet)
    unet.delete_adapters("ours")
    tiny_pipe.load_lora_weights(str(path), adapter_name="theirs")
    tiny_pipe.set_adapters(["theirs"], [-2.0])
    torch.testing.assert_close(unet_output(unet), ours, atol=1e-5, rtol=0)


def test_sgm_names_of_sdxl_base_without_a_unet():
    resolve = kohya_resolver(None)
    assert resolve("input_blocks_4_1_transformer_blocks_0_attn2_to_k") == (
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    )
    assert resolve("input_blocks_3_0_op") == "down_blocks.0.downsamplers.0.conv"
    assert resolve("input_blocks_1_0_in_layers_2") == "down_blocks.0.resnets.0.conv1"
    assert resolve("middle_block_2_emb_layers_1") == "mid_block.resnets.1.time_emb_proj"
    assert resolve("output_blocks_2_2_conv") == "up_blocks.0.upsamplers.0.conv"
    assert resolve("output_blocks_8_0_skip_connection") == "up_blocks.2.resnets.2.conv_shortcut"
    assert resolve("input_blocks_7_1_transformer_blocks_9_ff_net_0_proj") == (
        "down_blocks.2.attentions.0.transformer_blocks.9.ff.net.0.proj"
    )
    assert resolve("time_embed_0") == "time_embedding.linear_1"


def test_underscore_decoding_matches_every_module_of_the_unet():
    unet = build_tiny_unet()
    names = list(adaptable_modules(unet))
    assert len(names) > 50
    assert [decode_underscores(n.replace(".", "_")) for n in names] == names


def test_loading_without_unet_gives_the_same_module_paths(trained, tmp_path):
    unet, factors, _ = trained
    path = tmp_path / "s_alpha1_rank4.pt"
    torch.save(kohya_state(factors), path)
    assert sorted(load_slider(path).factors) == sorted(load_slider(path, unet).factors) == sorted(factors)


# --- refusals: each names the file and the first offending key ------------------------------------


def save_state(tmp_path, state, name="bad.safetensors"):
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def test_wrong_shape_names_the_key(trained, tmp_path):
    unet, factors, _ = trained
    state = kohya_state(factors)
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k.lora_down.weight"
    state[key] = torch.randn(4, 768)
    path = save_state(tmp_path, state)
    with pytest.raises(ValueError) as error:
        load_slider(path, unet)
    message = str(error.value)
    assert str(path) in message and repr(key) in message
    assert "(4, 768)" in message and "needs (4, 32)" in message


def test_lora_for_another_architecture_is_refused(trained, tmp_path):
    unet, factors, _ = trained
    # An SD1.5 LoRA adapts attentions in down_blocks.0, which this SDXL-style UNet does not have.
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    state = {key: torch.randn(4, 768), key.replace(".lora_down.", ".lora_up."): torch.randn(320, 4)}
    path = save_state(tmp_path, state)
    with pytest.raises(ValueError, match=rf"bad\.safetensors: key '{key}': this UNet has no module"):
        load_slider(path, unet)


def test_unknown_key_is_refused(trained, tmp_path):
    unet, factors, _ = trained
    state = {**kohya_state(factors), "model.diffusion_model.out.2.weight": torch.zeros(4)}
    with pytest.raises(
        ValueError, match=r"key 'model\.diffusion_model\.out\.2\.weight' is not a LoRA weight"
    ):
        load_slider(save_state(tmp_path, state), unet)


def test_text_encoder_only_file_is_refused(tmp_path):
    key = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"
    path = save_state(tmp_path, {key: torch.zeros(4, 32)})
    with pytest.raises(ValueError, match="holds only text-encoder LoRA weights"):
        load_slider(path)


def test_community_kohya_lora_with_text_encoder_weights_loads_its_unet_part(trained, tmp_path, caplog):
    # Most community SDXL LoRAs (kohya sd-scripts) train both text encoders as well: lora_te1_*, lora_te2_*.
    unet, factors, expected = trained
    text = {}
    for encoder, width in (("lora_te1", 32), ("lora_te2", 32)):
        for layer in range(2):
            stem = f"{encoder}_text_model_encoder_layers_{layer}_self_attn_q_proj"
            text[stem + ".lora_down.weight"] = torch.randn(4, width)
            text[stem + ".lora_up.weight"] = torch.randn(width, 4)
            text[stem + ".alpha"] = torch.tensor(4.0)
    path = save_state(tmp_path, {**kohya_state(factors), **text}, name="community.safetensors")
    with caplog.at_level("WARNING", logger="sliders.lora_formats"):
        slider = load_slider(path, unet)
    assert set(slider.factors) == set(factors) and slider.source_format == "kohya"
    assert_reproduces(unet, slider, expected)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "12 text-encoder weights" in warnings[0] and "skipped" in warnings[0]


def test_missing_half_is_refused(trained, tmp_path):
    unet, factors, _ = trained
    state = kohya_state(factors)
    up_key = "lora_unet_mid_block_resnets_0_conv1.lora_up.weight"
    del state[up_key]
    with pytest.raises(
        ValueError, match=r"lora_unet_mid_block_resnets_0_conv1\.lora_down\.weight' has no matching up"
    ):
        load_slider(save_state(tmp_path, state), unet)


@pytest.mark.parametrize("name", ["cut.safetensors", "cut.pt"])
def test_truncated_file_is_refused(trained, tmp_path, name):
    _, factors, _ = trained
    path = tmp_path / name
    state = kohya_state(factors)
    (torch.save if path.suffix == ".pt" else save_file)(state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{name}: not a readable"):
        load_slider(path)


def test_diffusers_metadata_alpha_pattern(trained, tmp_path):
    unet, factors, _ = trained
    name = sorted(factors)[0]
    state = {}
    for module, f in factors.items():
        state[f"unet.{module}.lora_A.weight"] = f.down.contiguous()
        state[f"unet.{module}.lora_B.weight"] = f.up.contiguous()
    header = {
        "lora_adapter_metadata": json.dumps(
            {"unet.r": 4, "unet.lora_alpha": 2.0, "unet.alpha_pattern": {name: 0.5}}
        )
    }
    path = tmp_path / "pattern.safetensors"
    save_file(state, path, metadata=header)
    slider = load_slider(path, unet)
    assert slider.factors[name].alpha == 0.5
    assert {f.alpha for n, f in slider.factors.items() if n != name} == {2.0}


def test_load_factors_into_unet_refuses_mismatches(trained):
    unet, factors, _ = trained
    name = sorted(factors)[0]
    wrong = {name: LoraFactors(torch.zeros(4, 7), torch.zeros(5, 4), 1.0)}
    with pytest.raises(ValueError, match=rf"module '{name}': down weight has shape \(4, 7\)"):
        load_factors_into_unet(unet, wrong)
    with pytest.raises(ValueError, match="module 'down_blocks.9.conv': not in this UNet"):
        load_factors_into_unet(unet, {"down_blocks.9.conv": factors[name]})
    load_factors_into_unet(unet, factors)
    with pytest.raises(ValueError, match="adapter 'slider' is already attached"):
        load_factors_into_unet(unet, factors)


def test_slider_info_on_an_original_file(trained, tmp_path, capsys):
    from transfer.commands.slider import describe

    _, factors, _ = trained
    path = tmp_path / "eyes_alpha1.0_rank4_noxattn_last.pt"
    torch.save(kohya_state(factors, alpha=False), path)
    lines = describe(load_slider(path))
    assert "format:      concept-sliders" in lines and "kind:        -" in lines
    assert "alpha:       1" in lines and "metadata:    (none)" in lines
    assert f"modules:     {len(factors)}" in lines
