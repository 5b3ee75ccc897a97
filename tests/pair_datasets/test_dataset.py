"""PairLatentDataset: items from the cache, levels, captions, paired flips, batching."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pair_datasets import Corpus, CorpusInfo, LatentCache, PairLatentDataset


@pytest.fixture
def cached(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8,
        layers_per_block=1,
    )
    corpus = Corpus.create(tmp_path / "c", CorpusInfo(name="t", resolution=16))
    ramp = Image.linear_gradient("L").resize((16, 16)).rotate(90).convert("RGB")  # varies left to right
    corpus.append("a", ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT), level=1.0)
    corpus.append("b", ramp, ramp, level=2.0, caption="a ramp")
    cache = LatentCache(corpus, vae)
    cache.ensure()
    return corpus, cache


def test_items_and_batches(cached):
    corpus, cache = cached
    dataset = PairLatentDataset(corpus, cache, default_caption="")
    before, after, level, caption = dataset[1]
    assert before.shape == after.shape == (4, 8, 8)
    assert level.dtype == torch.float32 and level.item() == 2.0 and caption == "a ramp"
    assert dataset[0][3] == ""
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert (
        batch[0].shape == (2, 4, 8, 8)
        and batch[2].tolist() == [1.0, 2.0]
        and list(batch[3]) == ["", "a ramp"]
    )


def test_flip_is_shared_by_the_pair(cached):
    corpus, cache = cached
    plain = PairLatentDataset(corpus, cache)[0]
    flipped = PairLatentDataset(corpus, cache, flip_p=1.0)[0]
    assert torch.equal(flipped[0], plain[0].flip(-1)) and torch.equal(flipped[1], plain[1].flip(-1))
    generator = torch.Generator().manual_seed(0)
    some = PairLatentDataset(corpus, cache, flip_p=0.5, generator=generator)
    flips = [torch.equal(some[1][0], plain[0].flip(-1)) for _ in range(20)]
    assert 0 < sum(flips) < 20


def test_stale_cache_is_refused(cached, tmp_path):
    corpus, cache = cached
    corpus.append("c", Image.new("RGB", (16, 16)), Image.new("RGB", (16, 16)))
    with pytest.raises(ValueError, match="no fresh latent for before/c.png"):
        PairLatentDataset(corpus, cache)
    with pytest.raises(ValueError, match="flip_p must be in"):
        PairLatentDataset(corpus, cache, flip_p=2.0)
