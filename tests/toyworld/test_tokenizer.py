"""The world's offline CLIP tokenizer."""

from __future__ import annotations

from transformers import CLIPTokenizer

from toyworld.tokenizer import MODEL_MAX_LENGTH, build_world_tokenizer
from toyworld.world import all_captions, vocabulary


def test_world_words_are_single_tokens():
    tokenizer = build_world_tokenizer()
    for word in vocabulary():
        assert tokenizer.tokenize(word) == [word + "</w>"]


def test_round_trip_and_special_tokens():
    tokenizer = build_world_tokenizer()
    text = "a wide face with big eyes, blue hair and pale skin, smiling"
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    # start/end are the two highest ids, so CLIP's pooling finds the end token either way
    assert {tokenizer.bos_token_id, tokenizer.eos_token_id} == {len(tokenizer) - 2, len(tokenizer) - 1}
    assert tokenizer.decode(ids, skip_special_tokens=True) == text.replace(",", " ,")
    assert tokenizer.model_max_length == MODEL_MAX_LENGTH


def test_unknown_words_fall_back_to_characters():
    tokenizer = build_world_tokenizer()
    pieces = tokenizer.tokenize("a red car")
    assert pieces[:2] == ["a</w>", "red</w>"] and "".join(pieces[2:]) == "car</w>"
    assert tokenizer.unk_token_id not in tokenizer("zebra crossing #42").input_ids[1:-1]


def test_every_caption_fits_the_context():
    tokenizer = build_world_tokenizer()
    assert max(len(tokenizer(c).input_ids) for c in all_captions()) <= MODEL_MAX_LENGTH


def test_deterministic_and_reloadable(tmp_path):
    first, second = build_world_tokenizer(), build_world_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    first.save_pretrained(tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    text = "a narrow face with small eyes, frowning"
    assert loaded(text).input_ids == first(text).input_ids
    padded = loaded(text, padding="max_length", max_length=loaded.model_max_length).input_ids
    assert len(padded) == MODEL_MAX_LENGTH
