"""Prompt conditioning: preservation attributes, one encode per distinct prompt, shapes, time ids."""

from __future__ import annotations

import torch

from sliders.config import PromptEntry, TextSliderConfig, TrainSettings
from sliders.prompts import PromptCache, add_time_ids, crop_time_ids, expand_prompt_sets
from sliders.text_slider import TextSliderTask
from sliders.trainer import prepare_slider, train_step


def test_attributes_prefix_every_prompt_of_every_entry():
    entries = [
        PromptEntry("person", "person, very old", "person, very young"),
        PromptEntry("", "hands", "claws"),
    ]
    sets = expand_prompt_sets(entries, ["male", "female"])
    assert len(sets) == 4
    assert sets[0].texts == ("male person", "male person, very old", "male person, very young", "male person")
    assert sets[3].texts == ("female", "female hands", "female claws", "female")
    assert [s.texts for s in expand_prompt_sets(entries)] == [
        ("person", "person, very old", "person, very young", "person"),
        ("", "hands", "claws", ""),
    ]


def _count_encodes(pipe) -> list[str]:
    calls: list[str] = []
    original = pipe.encode_prompt

    def counting(prompt, *args, **kwargs):
        calls.append(prompt)
        return original(prompt, *args, **kwargs)

    pipe.encode_prompt = counting
    return calls


def test_cache_encodes_each_prompt_once_with_sdxl_shapes(tiny_pipe):
    calls = _count_encodes(tiny_pipe)
    cache = PromptCache(tiny_pipe)
    cache.encode_all(["a", "b", "a", "a"])
    first = cache.encode("a")
    assert calls == ["a", "b"]
    # penultimate states of both encoders concatenated (32 + 32), pooled of encoder 2 (projection 32)
    assert first.embeds.shape == (1, 77, 64) and first.pooled.shape == (1, 32)
    batch = cache.batch(["a", "b"], repeat=2)
    assert batch.embeds.shape == (4, 77, 64)
    assert torch.equal(batch.embeds[1], first.embeds[0]) and torch.equal(
        batch.pooled[2], cache.encode("b").pooled[0]
    )


def test_training_never_re_encodes(tiny_pipe):
    calls = _count_encodes(tiny_pipe)
    entry = PromptEntry("person", "old person", "young person", resolution=32)
    config = TextSliderConfig(prompts=(entry,), preserve=("male", "female"), train=TrainSettings(steps=3))
    task = TextSliderTask(tiny_pipe, config)
    optimizer = torch.optim.AdamW(prepare_slider(task.unet, config.train))
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        train_step(task, task.unet, optimizer, generator, lambda loss: loss.backward())
    distinct = {text for s in task.prompt_sets for text in s.texts}
    assert sorted(calls) == sorted(distinct) and len(distinct) == 6


def test_add_time_ids_are_size_crop_size():
    ids = add_time_ids(1024, 768, 3, "cpu", torch.float32)
    assert ids.shape == (3, 6) and ids[2].tolist() == [1024, 768, 0, 0, 1024, 768]


def test_crop_time_ids_are_original_top_left_target():
    ids = crop_time_ids((1024, 1024), torch.tensor([[0, 0], [64, 200]]), (512, 768), torch.bfloat16)
    assert ids.dtype == torch.bfloat16 and ids.shape == (2, 6)
    assert ids.tolist() == [[1024, 1024, 0, 0, 512, 768], [1024, 1024, 64, 200, 512, 768]]
    uncropped = crop_time_ids((1024, 768), torch.zeros(3, 2, dtype=torch.long), (1024, 768), torch.float32)
    assert torch.equal(uncropped, add_time_ids(1024, 768, 3, "cpu", torch.float32))
