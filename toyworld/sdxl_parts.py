"""The toy SDXL's components: SDXL architecture (two CLIP encoders, text_time UNet, KL VAE), toy sizes.

Shapes: images [B, 3, 64, 64]; latents [B, 4, 16, 16]; prompt_embeds [B, 32, 128] (two encoders' penultimate
hidden states, 64 + 64); pooled [B, 64]; time_ids [B, 6] -> 6 * 16 + 64 = 160 class-embedding inputs.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from toyworld.tokenizer import MODEL_MAX_LENGTH, build_world_tokenizer

TEXT_HIDDEN = 64
POOLED_DIM = 64
TIME_EMBED_DIM = 16
UNET_CONFIG = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    # Narrower than the feasibility run's (64, 128, 128): a third of the cost per step on a CPU, so the
    # same hour trains on three times the samples, and sliders on it train three times faster in the demo.
    block_out_channels=(32, 64, 96),
    layers_per_block=1,
    attention_head_dim=(2, 4, 4),
    cross_attention_dim=2 * TEXT_HIDDEN,
    transformer_layers_per_block=1,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=TIME_EMBED_DIM,
    projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + POOLED_DIM,
    norm_num_groups=8,
)
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    timestep_spacing="leading",
    steps_offset=1,
)


def text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """A 3-layer, 64-wide CLIP text encoder over the world's vocabulary."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=2 * TEXT_HIDDEN,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MODEL_MAX_LENGTH,
        projection_dim=POOLED_DIM,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_text_encoders(seed: int) -> tuple[CLIPTokenizer, CLIPTextModel, CLIPTextModelWithProjection]:
    """The tokenizer and both frozen, randomly initialised text encoders (seeded).

    Weights are rounded to fp16 once, so embeddings computed now equal those of the shipped (fp16) files.
    """
    tokenizer = build_world_tokenizer()
    config = text_config(tokenizer)
    torch.manual_seed(seed)
    encoder_1 = CLIPTextModel(config)
    torch.manual_seed(seed + 1)
    encoder_2 = CLIPTextModelWithProjection(config)
    for encoder in (encoder_1, encoder_2):
        encoder.half().float().eval().requires_grad_(False)
    return tokenizer, encoder_1, encoder_2


def build_unet(seed: int) -> UNet2DConditionModel:
    """A freshly initialised SDXL-architecture UNet at toy size (about 2.8 M parameters)."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(**UNET_CONFIG)


def assemble_pipeline(
    vae: AutoencoderKL,
    unet: UNet2DConditionModel,
    tokenizer: CLIPTokenizer,
    encoder_1: CLIPTextModel,
    encoder_2: CLIPTextModelWithProjection,
) -> StableDiffusionXLPipeline:
    """Put the parts together as a standard SDXL pipeline (the same tokenizer serves both encoders)."""
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=encoder_1,
        text_encoder_2=encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
        force_zeros_for_empty_prompt=True,
    )


def time_ids(batch_size: int, size: int = 64) -> torch.Tensor:
    """SDXL's micro-conditioning [B, 6]: original size, crop top-left, target size (all the full image)."""
    return torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32).repeat(batch_size, 1)


@torch.no_grad()
def encode_captions(pipe: StableDiffusionXLPipeline, captions: list[str], batch_size: int = 256) -> tuple:
    """Caption embeddings exactly as the pipeline computes them: ([N, 32, 128], [N, 64])."""
    embeds, pooled = [], []
    for i in range(0, len(captions), batch_size):
        e, _, p, _ = pipe.encode_prompt(
            prompt=captions[i : i + batch_size], device="cpu", do_classifier_free_guidance=False
        )
        embeds.append(e)
        pooled.append(p)
    return torch.cat(embeds), torch.cat(pooled)
