"""validate_corpus lists every problem: files, sizes, manifest lines, escaping paths, ids, levels."""

from __future__ import annotations

import json

from PIL import Image

from pair_datasets import Corpus, CorpusInfo, validate_corpus


def make_corpus(tmp_path, pairs=3):
    corpus = Corpus.create(tmp_path / "c", CorpusInfo(name="v", resolution=8))
    for index in range(pairs):
        corpus.append(f"p{index}", Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (9, 9, 9)))
    return corpus


def test_clean_corpus_has_no_problems(tmp_path):
    assert validate_corpus(make_corpus(tmp_path).root) == []


def test_every_problem_is_named(tmp_path):
    corpus = make_corpus(tmp_path)
    root = corpus.root
    (root / "before" / "p0.png").unlink()
    Image.new("RGB", (8, 6)).save(root / "after" / "p1.png")
    (root / "after" / "p2.png").write_text("not png")
    (tmp_path / "outside.png").write_bytes((root / "before" / "p1.png").read_bytes())
    lines = [
        "{oops",
        json.dumps({"id": "p1", "before": "before/p1.png", "after": "after/p1.png", "level": 1}),
        json.dumps({"id": "esc", "before": "../outside.png", "after": "after/p1.png"}),
        json.dumps({"id": "neg", "before": "before/p1.png", "after": "before/p1.png", "level": -2}),
    ]
    with open(root / "manifest.jsonl", "a") as handle:
        handle.write("\n".join(lines) + "\n")

    problems = validate_corpus(root)

    assert problems == [
        "manifest.jsonl line 1 (pair 'p0'): before file before/p0.png is missing",
        "manifest.jsonl line 2 (pair 'p1'): size mismatch, before is 8x8 but after is 8x6",
        "manifest.jsonl line 3 (pair 'p2'): after file after/p2.png is not a readable image "
        f"(cannot identify image file '{root.resolve()}/after/p2.png')",
        "manifest.jsonl line 4: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        "manifest.jsonl line 5: duplicate id 'p1' (first on line 2)",
        "manifest.jsonl line 5 (pair 'p1'): size mismatch, before is 8x8 but after is 8x6",
        "manifest.jsonl line 6: field 'before': path '../outside.png' leaves the corpus folder",
        "manifest.jsonl line 7: field 'level' must be a positive number, got -2",
    ]


def test_missing_folder_and_broken_info(tmp_path):
    assert validate_corpus(tmp_path / "nope") == [f"{tmp_path / 'nope'}: no such corpus folder"]
    corpus = make_corpus(tmp_path, pairs=1)
    (corpus.root / "corpus.json").write_text("{}")
    assert validate_corpus(corpus.root) == [f"{corpus.root / 'corpus.json'}: missing field 'name'"]
