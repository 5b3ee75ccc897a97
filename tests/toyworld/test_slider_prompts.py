"""The toy world's text-slider prompts speak the captions' grammar (the toy SDXL knows no other)."""

import pytest

from toyworld.slider_prompts import eye_size_entries, smile_entries
from toyworld.world import all_captions


@pytest.mark.parametrize("entries", [smile_entries, eye_size_entries])
def test_every_prompt_is_a_world_caption(entries):
    captions = set(all_captions())
    for entry in entries(4.0):
        for prompt in (entry.target, entry.positive, entry.unconditional):
            assert prompt in captions, f"{prompt!r} is not a caption of the toy world"


def test_contrasts_differ_only_in_their_concept():
    for entry in smile_entries(8.0):
        assert (entry.positive, entry.unconditional) == (
            f"{entry.target}, smiling",
            f"{entry.target}, frowning",
        )
    for entry in eye_size_entries(2.0):
        assert entry.positive.replace("big eyes", "small eyes") == entry.unconditional
        assert entry.guidance_scale == 2.0 and entry.resolution == 64
