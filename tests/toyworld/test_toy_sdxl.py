"""The toy SDXL: caption indexing, a two-step training run that resumes, and the shipped pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline

from toyworld import assets_dir, toy_sdxl_path
from toyworld.decoder import final_vae_path, train_decoder
from toyworld.train_sdxl import caption_index, train_unet
from toyworld.vae import build_vae, decode_latents, encode_latents, latent_statistics, train_vae
from toyworld.world import all_captions, caption_bins, compose_caption, middle_attributes

SHIPPED = (assets_dir() / "sdxl" / "model_index.json").exists()


def test_caption_index_matches_all_captions():
    captions = all_captions()
    bins = caption_bins(middle_attributes().replace(eye_size=6.0))
    assert captions[caption_index(bins)] == compose_caption(bins)
    assert captions[caption_index({})] == "a face"
    assert captions[caption_index({"eye_size": 0})] == "a face with small eyes"


def test_latent_normalisation_round_trips():
    torch.manual_seed(0)
    vae = build_vae().eval()
    mean, std = latent_statistics(vae, seed=0, n_batches=1, batch_size=4)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        z = encode_latents(vae, images)
        assert z.shape == (2, 4, 16, 16)
        direct = vae.decode(vae.encode(images).latent_dist.mean).sample
        torch.testing.assert_close(decode_latents(vae, z), direct, atol=1e-4, rtol=1e-4)


def test_tiny_training_run_saves_a_loadable_pipeline_and_resumes(tmp_path):
    torch.set_num_threads(1)
    train_vae(tmp_path, steps=2, batch_size=2, ckpt_every=1, stats_images=8)
    report = json.loads((tmp_path / "vae_done.json").read_text())
    assert (
        report["steps"] == 2
        and len(json.loads((tmp_path / "vae" / "config.json").read_text())["latents_mean"]) == 4
    )
    out = train_unet(tmp_path, steps=2, batch_size=2, n_images=4, ckpt_every=1)
    first = {
        k: v.clone() for k, v in StableDiffusionXLPipeline.from_pretrained(out).unet.state_dict().items()
    }
    # An interrupted run resumes from its checkpoint: nothing left to train, same EMA weights saved again.
    (tmp_path / "unet_done.json").unlink()
    train_unet(tmp_path, steps=2, batch_size=2, n_images=4, ckpt_every=1)
    pipe = StableDiffusionXLPipeline.from_pretrained(out)
    for k, v in pipe.unet.state_dict().items():
        torch.testing.assert_close(v, first[k])
    image = pipe("a face with big eyes", num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 64, 64, 3)

    # The decoder fine-tune keeps the latent space: encoder and latent statistics unchanged.
    assert final_vae_path(tmp_path) == tmp_path / "vae"
    train_decoder(tmp_path, steps=1, batch_size=2)
    assert final_vae_path(tmp_path) == tmp_path / "vae_decoder"
    before = AutoencoderKL.from_pretrained(tmp_path / "vae").state_dict()
    tuned = AutoencoderKL.from_pretrained(tmp_path / "vae_decoder")
    after = tuned.state_dict()
    for key in (k for k in before if k.startswith(("encoder.", "quant_conv."))):
        assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert tuned.config.latents_mean == pipe.vae.config.latents_mean


@pytest.mark.skipif(not SHIPPED, reason="no shipped toy SDXL yet (concept-transfer toyworld build)")
def test_shipped_toy_sdxl_loads_and_samples():
    pipe = StableDiffusionXLPipeline.from_pretrained(toy_sdxl_path())
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.dtype == torch.float32
    assert pipe.vae.config.scaling_factor == 1.0 and len(pipe.vae.config.latents_mean) == 4
    out = pipe(
        "a face with big eyes",
        num_inference_steps=4,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all() and out.std() > 0.05
