"""Corpus format: create, append, reopen, manifest parsing errors, path safety, corpus.json."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from pair_datasets import Corpus, CorpusInfo, PairRecord


def rgb(size=(16, 16), color=(10, 20, 30)):
    return Image.new("RGB", size, color)


@pytest.fixture
def corpus(tmp_path):
    return Corpus.create(tmp_path / "c", CorpusInfo(name="demo", resolution=16, provenance={"kind": "test"}))


def test_create_append_open_roundtrip(corpus):
    record = corpus.append("p0", rgb(), rgb(color=(200, 0, 0)), level=2, caption="a face", source={"seed": 3})
    assert record == PairRecord("p0", "before/p0.png", "after/p0.png", 2.0, "a face", {"seed": 3})
    assert Image.open(corpus.root / "after/p0.png").getpixel((0, 0)) == (200, 0, 0)
    lines = (corpus.root / "manifest.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {
        "id": "p0",
        "before": "before/p0.png",
        "after": "after/p0.png",
        "level": 2.0,
        "caption": "a face",
        "source": {"seed": 3},
    }
    reopened = Corpus.open(corpus.root)
    assert reopened.records() == [record]
    assert reopened.ids() == {"p0"}
    assert reopened.info.name == "demo" and reopened.info.resolution == 16
    assert reopened.info.provenance == {"kind": "test"}
    assert reopened.info.created.endswith("+00:00")


def test_resume_appends_after_existing_pairs(corpus):
    corpus.append("a", rgb(), rgb())
    again = Corpus.open(corpus.root)
    assert "a" in again.ids()
    again.append("b", rgb(), rgb())
    assert [r.id for r in Corpus.open(corpus.root).records()] == ["a", "b"]


def test_create_refuses_existing_corpus(corpus):
    with pytest.raises(FileExistsError, match="already exists"):
        Corpus.create(corpus.root, corpus.info)


def test_append_converts_rgba_to_rgb_on_white(corpus):
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    corpus.append("t", clear, clear)
    image = Image.open(corpus.root / "before/t.png")
    assert image.mode == "RGB" and image.getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pair_id": "../x"}, "must match"),
        ({"pair_id": "a b"}, "must match"),
        ({"level": 0}, "level must be a positive number"),
        ({"level": float("nan")}, "level must be a positive number"),
        ({"after": rgb((16, 8))}, r"before is \(16, 16\) but after is \(16, 8\)"),
    ],
)
def test_append_rejects_bad_input(corpus, kwargs, message):
    args = {"pair_id": "ok", "before": rgb(), "after": rgb(), **kwargs}
    with pytest.raises(ValueError, match=message):
        corpus.append(**args)
    assert corpus.records() == []
    assert (corpus.root / "manifest.jsonl").read_text() == ""


def test_append_png_checks_the_bytes(corpus):
    from pair_datasets.corpus import encode_png

    png = encode_png(rgb())
    with pytest.raises(ValueError, match="pair 'x' after: not readable PNG bytes"):
        corpus.append_png("x", png, b"junk")
    with pytest.raises(ValueError, match=r"before is \(16, 16\) but after is \(8, 8\)"):
        corpus.append_png("x", png, encode_png(rgb((8, 8))))
    record = corpus.append_png("x", png, png, level=3)
    assert record.level == 3.0 and (corpus.root / "after/x.png").read_bytes() == png


def test_non_json_provenance_or_source_is_refused(corpus, tmp_path):
    with pytest.raises(ValueError, match="field 'provenance' must be plain JSON data"):
        Corpus.create(tmp_path / "p", CorpusInfo(name="p", resolution=8, provenance={"pkl": tmp_path}))
    assert not (tmp_path / "p").exists()
    with pytest.raises(ValueError, match="pair 'a': 'source' must be plain JSON data"):
        corpus.append("a", rgb(), rgb(), source={"psi": float("nan")})
    assert corpus.records() == [] and not (corpus.root / "before" / "a.png").exists()


def test_append_rejects_duplicate_id(corpus):
    corpus.append("a", rgb(), rgb())
    with pytest.raises(ValueError, match="'a' is already in"):
        corpus.append("a", rgb(), rgb())


def test_path_of_refuses_paths_leaving_the_corpus(corpus, tmp_path):
    assert corpus.path_of("before/x.png") == (corpus.root / "before/x.png").resolve()
    for bad in ("../outside.png", "/etc/passwd", "before/../../x.png", "C:/x.png", "before\\x.png"):
        with pytest.raises(ValueError, match="corpus"):
            corpus.path_of(bad)
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", corpus.root / "before" / "link.png")
    with pytest.raises(ValueError, match="leaves the corpus folder"):
        corpus.path_of("before/link.png")


GOOD = {"id": "a", "before": "before/a.png", "after": "after/a.png", "level": 1.0, "source": {}}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "after"}), "missing field 'after'"),
        (json.dumps({**GOOD, "level": -1}), "field 'level' must be a positive number, got -1"),
        (json.dumps({**GOOD, "level": "2"}), "field 'level' must be a positive number"),
        (json.dumps({**GOOD, "before": "../a.png"}), "field 'before': path '../a.png' leaves the corpus"),
        (json.dumps({**GOOD, "after": "/abs/a.png"}), "field 'after': path '/abs/a.png' must be relative"),
        (json.dumps({**GOOD, "id": "a/b"}), "field 'id' must match"),
        (json.dumps({**GOOD, "caption": 3}), "field 'caption' must be a string"),
        (json.dumps({**GOOD, "source": []}), "field 'source' must be an object"),
        (json.dumps({**GOOD, "colour": "red"}), r"unknown field\(s\) \['colour'\]"),
    ],
)
def test_open_names_line_and_field_of_a_bad_manifest_line(corpus, line, message):
    corpus.append("first", rgb(), rgb())
    with open(corpus.root / "manifest.jsonl", "a") as handle:
        handle.write(line + "\n")
    with pytest.raises(ValueError, match="manifest.jsonl line 2: " + message):
        Corpus.open(corpus.root)


def test_open_refuses_duplicate_ids(corpus):
    corpus.append("a", rgb(), rgb())
    text = (corpus.root / "manifest.jsonl").read_text()
    (corpus.root / "manifest.jsonl").write_text(text + text)
    with pytest.raises(ValueError, match="line 2: field 'id' 'a' duplicates line 1"):
        Corpus.open(corpus.root)


def test_interrupted_last_line_is_named_and_a_complete_one_is_continued(corpus):
    corpus.append("a", rgb(), rgb())
    manifest = corpus.root / "manifest.jsonl"
    good = manifest.read_text()
    manifest.write_text(good + '{"id": "b", "bef')
    with pytest.raises(ValueError, match="line 2: incomplete last line"):
        Corpus.open(corpus.root)
    manifest.write_text(good.rstrip("\n"))  # a complete line that merely lacks its newline
    reopened = Corpus.open(corpus.root)
    reopened.append("b", rgb(), rgb())
    assert [r.id for r in Corpus.open(corpus.root).records()] == ["a", "b"]


@pytest.mark.parametrize(
    "info, message",
    [
        ({"resolution": 16}, "missing field 'name'"),
        ({"name": "x", "resolution": 0}, "field 'resolution' must be a positive integer"),
        ({"name": "x", "resolution": 16, "shape": 3}, r"unknown field\(s\) \['shape'\]"),
        ({"name": "", "resolution": 16}, "field 'name' must be a non-empty string"),
    ],
)
def test_open_names_bad_corpus_json_field(corpus, info, message):
    (corpus.root / "corpus.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="/corpus.json: " + message):
        Corpus.open(corpus.root)


def test_open_missing_folder_or_info(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such corpus folder"):
        Corpus.open(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="corpus.json: not found"):
        Corpus.open(tmp_path)


def test_to_hf_dataset(corpus):
    pytest.importorskip("datasets")
    corpus.append("a", rgb(), rgb(color=(1, 2, 3)), level=2.0)
    dataset = corpus.to_hf_dataset()
    assert dataset[0]["id"] == "a" and dataset[0]["level"] == 2.0
    assert dataset[0]["after"].getpixel((0, 0)) == (1, 2, 3)


def test_open_errors_name_the_full_manifest_path(corpus):
    corpus.append("a", rgb(), rgb())
    manifest = corpus.root / "manifest.jsonl"
    manifest.write_bytes(manifest.read_bytes() + b'{"id": "caf\xe9"}\n')
    with pytest.raises(ValueError) as error:
        Corpus.open(corpus.root)
    assert str(error.value).startswith(f"{manifest}: not UTF-8 text (invalid continuation byte")
    manifest.write_text(json.dumps({**GOOD, "level": 0}) + "\n")
    with pytest.raises(ValueError) as error:
        Corpus.open(corpus.root)
    assert str(error.value) == f"{manifest} line 1: field 'level' must be a positive number, got 0"
