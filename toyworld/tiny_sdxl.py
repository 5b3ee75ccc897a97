"""A tiny SDXL-architecture pipeline built offline, for tests, benchmarks and the interim demo.

It has every part a real SDXL pipeline has (a `text_time` UNet, two CLIP text encoders, two
tokenizers, a VAE, a scheduler) at a size that runs on a CPU in milliseconds, and it is saved with
`save_pretrained` so the code under test loads it through the same `from_pretrained` path as users.
The tokenizer is built from a local character vocabulary, never fetched from a hub.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

TEXT_HIDDEN = 32
TEXT_PROJECTION = 32
TIME_EMBED_DIM = 8
VOCAB_SIZE = 1000
MAX_TOKENS = 77


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes used by CLIP's byte-level BPE, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, shift = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + shift))
            shift += 1
    return chars


def build_char_tokenizer(words: tuple[str, ...] = ()) -> CLIPTokenizer:
    """A CLIP tokenizer over single byte-characters, plus whole-word tokens for `words`."""
    alphabet = byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    for word in words:
        # Merge left to right so the whole word becomes one token ending in </w>.
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            merges.append((pieces[0], pieces[1]))
            if merged not in tokens:
                tokens.append(merged)
            pieces = [merged] + pieces[2:]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    assert len(vocab) <= VOCAB_SIZE, "tokenizer vocabulary exceeds the text encoders' embedding table"
    return CLIPTokenizer(vocab=vocab, merges=list(dict.fromkeys(merges)), model_max_length=MAX_TOKENS)


def _text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=VOCAB_SIZE,
        projection_dim=TEXT_PROJECTION,
        max_position_embeddings=MAX_TOKENS,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )


def build_tiny_unet() -> UNet2DConditionModel:
    """A two-level SDXL-style UNet: self- and cross-attention, resnets with shortcuts, `text_time`."""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 1),
        use_linear_projection=True,
        cross_attention_dim=2 * TEXT_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + TEXT_PROJECTION,
    )


def build_tiny_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """Build the tiny pipeline in memory with weights drawn from `seed`."""
    torch.manual_seed(seed)
    unet = build_tiny_unet()
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    tokenizer = build_char_tokenizer()
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(tokenizer)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer)),
        tokenizer=tokenizer,
        tokenizer_2=build_char_tokenizer(),
        unet=unet,
        scheduler=scheduler,
    )


def build_tiny_sdxl(folder: Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and save it as a diffusers folder; returns the folder."""
    folder = Path(folder)
    build_tiny_pipeline(seed).save_pretrained(folder)
    return folder
