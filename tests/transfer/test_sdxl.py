"""Loading SDXL: the tiny saved pipeline through the users' path, and clear errors."""

from __future__ import annotations

import pytest
import torch

from transfer.sdxl import choose_placement, load_sdxl


def test_loads_saved_folder_on_cpu_fp32(tiny_sdxl_path):
    pipe = load_sdxl(str(tiny_sdxl_path), device="cpu")
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert pipe.unet.dtype == torch.float32
    assert pipe.tokenizer("a face").input_ids[0] == pipe.tokenizer.bos_token_id
    image = pipe("a face", num_inference_steps=2, height=32, width=32, output_type="np").images
    assert image.shape == (1, 32, 32, 3)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_sdxl(str(tmp_path / "nothere"))


def test_folder_without_model_index(tmp_path):
    with pytest.raises(ValueError, match="model_index.json"):
        load_sdxl(str(tmp_path))


def test_wrong_single_file_suffix(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.safetensors or \.ckpt"):
        load_sdxl(str(bad))


def test_placement_defaults_and_errors():
    assert choose_placement("cpu").dtype == torch.float32
    assert choose_placement("cpu", "bf16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        choose_placement("cpu", "int8")


def test_named_models_resolve_through_the_aliases_given(tiny_sdxl_path, tmp_path):
    pipe = load_sdxl("mine", device="cpu", aliases={"mine": tiny_sdxl_path})
    assert pipe.unet.config.addition_embed_type == "text_time"
    with pytest.raises(FileNotFoundError, match=r"--model gone: the model it names is missing .*absent"):
        load_sdxl("gone", aliases={"gone": tmp_path / "absent"})


def test_the_command_line_names_the_toy_world_model():
    from toyworld import toy_sdxl_path
    from transfer.commands.aliases import model_aliases

    assert model_aliases()["toy"] == toy_sdxl_path()
