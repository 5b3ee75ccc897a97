"""Latent cache: encode once, reuse, re-encode what changed, reference values, scaling conventions."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from pair_datasets import Corpus, CorpusInfo, LatentCache, vae_fingerprint
from pair_datasets.latent_cache import image_to_tensor, scale_latents


def tiny_vae(seed: int = 0, **config):
    """A two-block AutoencoderKL (latent = image / 2), built in milliseconds."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        **config,
    ).eval()


@pytest.fixture
def corpus(tmp_path):
    corpus = Corpus.create(tmp_path / "c", CorpusInfo(name="t", resolution=16))
    for index, (b, a) in enumerate([((10, 10, 10), (250, 10, 10)), ((10, 200, 10), (10, 10, 200))]):
        corpus.append(f"p{index}", Image.new("RGB", (16, 16), b), Image.new("RGB", (16, 16), a), caption=None)
    return corpus


def test_second_run_encodes_nothing_and_keeps_the_file(corpus):
    vae = tiny_vae()
    first = LatentCache(corpus, vae)
    assert first.ensure() == 4
    assert first.path == corpus.root / "cache" / f"{vae_fingerprint(vae)}-16.safetensors"
    stamp = first.path.stat().st_mtime_ns
    second = LatentCache(Corpus.open(corpus.root), vae)
    assert second.ensure() == 0 and second.num_encoded == 0
    assert first.path.stat().st_mtime_ns == stamp
    assert torch.equal(second.latent("after/p1.png"), first.latent("after/p1.png"))
    assert second.latent("before/p0.png").shape == (4, 8, 8)


def test_changed_image_is_reencoded(corpus):
    vae = tiny_vae()
    cache = LatentCache(corpus, vae)
    cache.ensure()
    old = cache.latent("after/p0.png").clone()
    Image.new("RGB", (16, 16), (0, 0, 0)).save(corpus.root / "after" / "p0.png")
    again = LatentCache(corpus, vae)
    assert again.stale() == ["after/p0.png"]
    assert again.ensure() == 1
    assert not torch.allclose(again.latent("after/p0.png"), old)
    assert LatentCache(corpus, vae).ensure() == 0


def test_other_vae_or_resolution_is_another_cache(corpus):
    vae = tiny_vae()
    LatentCache(corpus, vae).ensure()
    other = tiny_vae(seed=1)
    assert vae_fingerprint(other) != vae_fingerprint(vae)
    assert LatentCache(corpus, other).ensure() == 4
    bigger = LatentCache(corpus, vae, resolution=32)
    assert bigger.ensure() == 4 and bigger.latent("before/p0.png").shape == (4, 16, 16)
    assert len(list((corpus.root / "cache").glob("*.safetensors"))) == 3


def test_cached_latent_equals_reference_encode(corpus):
    vae = tiny_vae(latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[2.0, 1.0, 0.5, 4.0], scaling_factor=0.5)
    cache = LatentCache(corpus, vae)
    cache.ensure()
    pixels = image_to_tensor(corpus.root / "before/p1.png", 16)[None]
    with torch.no_grad():
        z = vae.encode(pixels).latent_dist.mean  # the mean: deterministic
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, 4, 1, 1)
    std = torch.tensor([2.0, 1.0, 0.5, 4.0]).view(1, 4, 1, 1)
    torch.testing.assert_close(cache.latent("before/p1.png"), ((z - mean) * 0.5 / std)[0])


def test_scale_latents_plain_and_shifted():
    z = torch.ones(1, 4, 2, 2)
    plain = tiny_vae().config
    assert torch.allclose(scale_latents(z, plain), z * plain.scaling_factor)
    shifted = tiny_vae(shift_factor=0.5, scaling_factor=2.0).config
    assert torch.allclose(scale_latents(z, shifted), torch.ones_like(z))


def test_latent_needs_ensure_and_broken_file_is_rebuilt(corpus):
    vae = tiny_vae()
    cache = LatentCache(corpus, vae)
    with pytest.raises(ValueError, match="no fresh latent for before/p0.png; call ensure"):
        cache.latent("before/p0.png")
    cache.ensure()
    cache.path.write_bytes(b"garbage")
    assert LatentCache(corpus, vae).ensure() == 4


def test_half_precision_vae_is_encoded_in_fp32_and_restored(corpus):
    vae = tiny_vae().half()
    cache = LatentCache(corpus, vae)
    assert cache.ensure() == 4
    assert next(vae.parameters()).dtype == torch.float16
    assert cache.latent("before/p0.png").dtype == torch.float32
