"""Contact sheet and summary: what `pairs inspect` shows and the miner reuses."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pair_datasets import Corpus, CorpusInfo, contact_sheet, summarize
from pair_datasets.overview import GAP, LABEL_HEIGHT, SPLIT, THUMB


@pytest.fixture
def corpus(tmp_path):
    corpus = Corpus.create(tmp_path / "c", CorpusInfo(name="sheet", resolution=32))
    for index in range(10):
        level = 1.0 if index < 6 else 2.0
        caption = "x" if index == 0 else None
        corpus.append(
            f"p{index}",
            Image.new("RGB", (32, 32), (255, 0, 0)),
            Image.new("RGB", (32, 32), (0, 0, 255)),
            level,
            caption,
        )
    return corpus


def test_contact_sheet_puts_before_above_after(corpus, tmp_path):
    path = contact_sheet(corpus, tmp_path / "out" / "sheet.png", max_pairs=10)
    sheet = np.asarray(Image.open(path))
    cell_h = LABEL_HEIGHT + 2 * THUMB + SPLIT + GAP
    assert sheet.shape == (2 * cell_h + GAP, 8 * (THUMB + GAP) + GAP, 3)  # 8 columns, 2 rows
    x = GAP + THUMB // 2
    assert tuple(sheet[GAP + LABEL_HEIGHT + 10, x]) == (255, 0, 0)  # before on top
    assert tuple(sheet[GAP + LABEL_HEIGHT + THUMB + SPLIT + 10, x]) == (0, 0, 255)  # after below
    small = Image.open(contact_sheet(corpus.root, tmp_path / "small.png", max_pairs=3))
    assert small.size == (3 * (THUMB + GAP) + GAP, cell_h + GAP)


def test_contact_sheet_of_empty_corpus_is_an_error(tmp_path):
    empty = Corpus.create(tmp_path / "e", CorpusInfo(name="e", resolution=8))
    with pytest.raises(ValueError, match="has no pairs to show"):
        contact_sheet(empty, tmp_path / "s.png")


def test_summarize_counts_levels(corpus):
    info = summarize(corpus)
    assert info["pairs"] == 10 and info["levels"] == {1.0: 6, 2.0: 4} and info["captioned"] == 1
    assert info["name"] == "sheet" and info["resolution"] == 32
