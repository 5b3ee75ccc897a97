"""Ingest of user artwork: every layout, every bad input with its reported reason, sources untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pair_datasets import Corpus, IngestOptions, ingest, validate_corpus

RED, BLUE, GREEN, GREY = (220, 30, 30), (30, 30, 220), (30, 200, 30), (128, 128, 128)


def options(**kwargs) -> IngestOptions:
    return IngestOptions(**{"resolution": 32, "workers": 1, **kwargs})


def reasons(report) -> dict[str, str]:
    """First reported reason per file path."""
    found: dict[str, str] = {}
    for problem in report.problems:
        for path in problem.paths:
            found.setdefault(path, problem.reason)
    return found


def mean_color(corpus: Corpus, relpath: str) -> np.ndarray:
    return np.asarray(Image.open(corpus.path_of(relpath)), np.float32).reshape(-1, 3).mean(0)


def test_stems_layout_with_unmatched_non_images_and_duplicates(tmp_path, image_factory, hash_tree):
    src = tmp_path / "art"
    for stem in ("a", "b", "c"):
        image_factory(src / "before" / f"{stem}.png", color=RED)
    for stem in ("a", "b", "d"):
        image_factory(src / "after" / f"{stem}.png", color=BLUE)
    image_factory(src / "before" / "e.png", color=RED)
    image_factory(src / "before" / "e.jpg", color=RED, fmt="JPEG")
    image_factory(src / "after" / "e.png", color=BLUE)
    (src / "before" / "notes.txt").write_text("hello")
    (src / "before" / ".DS_Store").write_bytes(b"\0")
    hashes = hash_tree(src)

    report = ingest(src, tmp_path / "corpus", options(), progress=False)

    assert hash_tree(src) == hashes  # byte-for-byte unchanged
    corpus = Corpus.open(tmp_path / "corpus")
    assert [r.id for r in corpus.records()] == ["a", "b"]
    assert validate_corpus(corpus.root) == []
    assert Image.open(corpus.path_of("before/a.png")).size == (32, 32)
    assert mean_color(corpus, "before/a.png")[0] > 120 and mean_color(corpus, "after/a.png")[2] > 120
    found = reasons(report)
    assert found["before/c.png"] == "no file with stem 'c' in after/"
    assert found["after/d.png"] == "no file with stem 'd' in before/"
    assert found["before/notes.txt"] == "not an image (extension '.txt')"
    assert found["before/e.png"].startswith("duplicate stem 'e' in before/ (e.jpg, e.png)")
    assert "before/e.jpg" in found
    assert found["after/e.png"] == "no file with stem 'e' in before/"
    assert found["before/.DS_Store"] == "hidden file (its name starts with '.'), skipped"
    saved = json.loads((corpus.root / "ingest_report.json").read_text())
    assert saved["accepted"] == 2 and saved["layout"] == "stems"
    assert {
        "kind": "unmatched",
        "paths": ["before/c.png"],
        "reason": "no file with stem 'c' in after/",
    } in saved["problems"]
    assert (corpus.root / "contact_sheet.png").is_file()
    record = corpus.records()[0]
    assert record.source["before"] == "before/a.png" and len(record.source["before_sha256"]) == 64
    assert corpus.info.provenance["layout"] == "stems" and corpus.info.resolution == 32
    assert "left out" in report.summary() and "no file with stem 'c'" in report.summary()


def test_stems_layout_from_explicit_folders(tmp_path, image_factory):
    image_factory(tmp_path / "plain" / "x.png", color=RED)
    image_factory(tmp_path / "styled" / "x.jpg", color=BLUE, fmt="JPEG")
    opts = options(before=tmp_path / "plain", after=tmp_path / "styled", name="styled")
    report = ingest(None, tmp_path / "out", opts, progress=False)
    assert report.layout == "stems" and [p["id"] for p in report.pairs] == ["x"]
    assert Corpus.open(tmp_path / "out").info.name == "styled"


def test_levels_layout_of_the_original_repository(tmp_path, image_factory, hash_tree):
    src = tmp_path / "levels"
    colors = {
        "verylow": (20, 20, 20),
        "low": (80, 80, 80),
        "high": (160, 160, 160),
        "veryhigh": (240, 240, 240),
    }
    for folder, color in colors.items():
        for stem in ("p", "q"):
            image_factory(src / folder / f"{stem}.png", color=color)
    image_factory(src / "veryhigh" / "lonely.png")
    hashes = hash_tree(src)

    report = ingest(src, tmp_path / "corpus", options(scales=(-2.0, -1.0, 1.0, 2.0)), progress=False)

    assert hash_tree(src) == hashes
    corpus = Corpus.open(tmp_path / "corpus")
    levels = {r.id: r.level for r in corpus.records()}
    assert levels == {"p-l1": 1.0, "q-l1": 1.0, "p-l2": 2.0, "q-l2": 2.0}
    record = next(r for r in corpus.records() if r.id == "p-l2")
    assert record.source["before"] == "verylow/p.png" and record.source["after"] == "veryhigh/p.png"
    assert mean_color(corpus, record.before)[0] < mean_color(corpus, record.after)[0]
    assert reasons(report)["veryhigh/lonely.png"] == "no file with stem 'lonely' in verylow/"
    # Without --scales the original folder names imply them; auto-detection finds the layout.
    again = ingest(src, tmp_path / "corpus2", options(), progress=False)
    assert again.layout == "levels" and len(again.pairs) == 4


def test_levels_layout_with_custom_folders(tmp_path, image_factory):
    src = tmp_path / "custom"
    image_factory(src / "thin" / "a.png", color=GREY)
    image_factory(src / "thick" / "a.png", color=GREY)
    opts = options(layout="levels", folders=("thin", "thick"), scales=(-1.5, 1.5))
    report = ingest(src, tmp_path / "corpus", opts, progress=False)
    assert report.pairs[0]["id"] == "a-l1.5" and report.pairs[0]["level"] == 1.5
    assert report.pairs[0]["before"] == "thin/a.png"
    auto = ingest(
        src, tmp_path / "auto", options(folders=("thin", "thick"), scales=(-1.0, 1.0)), progress=False
    )
    assert auto.layout == "levels" and auto.pairs[0]["id"] == "a-l1"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scales": (-2.0, -1.0, 1.0)}, "--scales has 3 values but there are 2 level folders"),
        ({"scales": (-1.0, 2.0), "folders": ("thin", "thick")}, "scale -1 has no mirrored scale 1"),
        ({}, r"folders \['thick', 'thin'\] have no known scale; pass --scales"),
    ],
)
def test_levels_layout_bad_scales(tmp_path, image_factory, kwargs, message):
    image_factory(tmp_path / "src" / "thin" / "a.png")
    image_factory(tmp_path / "src" / "thick" / "a.png")
    with pytest.raises(ValueError, match=message):
        ingest(tmp_path / "src", tmp_path / "out", options(layout="levels", **kwargs), progress=False)
    assert not (tmp_path / "out").exists()


def test_side_by_side_layout(tmp_path, hash_tree):
    src = tmp_path / "sbs"
    src.mkdir()
    for name, width in (("even", 96), ("odd", 97)):
        image = Image.new("RGB", (width, 48), RED)
        image.paste(BLUE, (width - 48, 0, width, 48))
        image.save(src / f"{name}.png")
    Image.new("RGB", (20, 10)).save(src / "tiny.png")
    hashes = hash_tree(src)
    report = ingest(src, tmp_path / "corpus", options(), progress=False)
    assert hash_tree(src) == hashes
    corpus = Corpus.open(tmp_path / "corpus")
    assert [r.id for r in corpus.records()] == ["even", "odd"]
    for record in corpus.records():
        assert mean_color(corpus, record.before)[0] > 200 and mean_color(corpus, record.after)[2] > 200
    assert (
        reasons(report)["tiny.png"]
        == "too small: each half is 10x10, the shorter side must be at least 16 pixels"
    )
    assert corpus.records()[0].source["file"] == "even.png"


def test_csv_layout_with_levels_captions_and_bad_rows(tmp_path, image_factory, hash_tree):
    src = tmp_path / "table"
    for name in ("b1", "b2", "b3"):
        image_factory(src / "img" / f"{name}.png", color=RED)
    for name in ("a1", "a2", "a3"):
        image_factory(src / "img" / f"{name}.png", color=BLUE)
    (src / "pairs.csv").write_text(
        "before,after,level,caption\n"
        "img/b1.png,img/a1.png,2,a smiling face\n"
        "img/b2.png,img/a2.png,,\n"
        "img/b3.png,img/a3.png,-1,bad level\n"
        "img/missing.png,img/a1.png,1,\n"
        ",img/a1.png,1,\n"
    )
    hashes = hash_tree(src)
    report = ingest(src, tmp_path / "corpus", options(), progress=False)
    assert hash_tree(src) == hashes and report.layout == "csv"
    records = Corpus.open(tmp_path / "corpus").records()
    assert [(r.id, r.level, r.caption) for r in records] == [("b1", 2.0, "a smiling face"), ("b2", 1.0, None)]
    found = reasons(report)
    assert found["img/b3.png"] == "pairs.csv line 4: level '-1' must be a positive number"
    assert found["img/missing.png"] == "pairs.csv line 5: file not found"
    assert found["pairs.csv line 6"] == "'before' and 'after' must both be given"


def test_csv_that_is_not_utf8(tmp_path):
    (tmp_path / "latin.csv").write_bytes("before,after\ncaf\xe9.png,b.png\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv: not UTF-8 text \(invalid continuation byte"):
        ingest(tmp_path / "latin.csv", tmp_path / "out", options(), progress=False)


def test_single_side_by_side_file_and_stems_without_folders(tmp_path):
    image = Image.new("RGB", (64, 32), RED)
    image.paste(BLUE, (32, 0, 64, 32))
    image.save(tmp_path / "one.png")
    report = ingest(tmp_path / "one.png", tmp_path / "c", options(), progress=False)
    assert report.layout == "side-by-side" and [p["id"] for p in report.pairs] == ["one"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="the stems layout needs before/ and after/ folders"):
        ingest(tmp_path / "empty", tmp_path / "c2", options(layout="stems"), progress=False)


def test_csv_unknown_or_missing_columns(tmp_path, image_factory):
    (tmp_path / "a.csv").write_text("before,after,weight\nx.png,y.png,3\n")
    with pytest.raises(ValueError, match=r"a.csv: unknown column\(s\) \['weight'\]"):
        ingest(tmp_path / "a.csv", tmp_path / "out", options(), progress=False)
    (tmp_path / "a.csv").write_text("before,level\nx.png,3\n")
    with pytest.raises(ValueError, match="a.csv: missing column 'after'"):
        ingest(tmp_path / "a.csv", tmp_path / "out", options(), progress=False)


def test_bad_images_are_reported_with_their_reason(tmp_path, image_factory, hash_tree, png_header):
    src = tmp_path / "art"
    image_factory(src / "before" / "good.png", color=RED)
    image_factory(src / "after" / "good.png", color=BLUE)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    noise.save(src / "before" / "cut.png")
    data = (src / "before" / "cut.png").read_bytes()
    (src / "before" / "cut.png").write_bytes(data[: len(data) // 2])
    image_factory(src / "after" / "cut.png")
    (src / "before" / "fake.png").write_text("just text")
    image_factory(src / "after" / "fake.png")
    image_factory(src / "before" / "small.png", size=(12, 12))
    image_factory(src / "after" / "small.png", size=(12, 12))
    image_factory(src / "before" / "wide.png", size=(96, 48))
    image_factory(src / "after" / "wide.png", size=(48, 48))
    image_factory(src / "before" / "scaled.png", size=(48, 48))
    image_factory(src / "after" / "scaled.png", size=(96, 97))  # same aspect within 5%: resized, kept
    (src / "before" / "huge.png").write_bytes(png_header(3000, 3000))
    image_factory(src / "after" / "huge.png")
    (src / "before" / "bomb.png").write_bytes(png_header(100_000, 100_000))
    image_factory(src / "after" / "bomb.png")
    hashes = hash_tree(src)

    report = ingest(src, tmp_path / "corpus", options(max_pixels=1_000_000), progress=False)

    assert hash_tree(src) == hashes
    assert sorted(p["id"] for p in report.pairs) == ["good", "scaled"]
    found = reasons(report)
    assert found["before/cut.png"].startswith("corrupt or truncated image")
    assert found["after/cut.png"] == "its before image was rejected"
    assert found["before/fake.png"] == "not an image Pillow can decode"
    assert found["before/small.png"] == "too small: 12x12, the shorter side must be at least 16 pixels"
    assert found["before/wide.png"].startswith(
        "aspect ratios differ: before 96x48 (2.000) vs after 48x48 (1.000)"
    )
    assert "after/wide.png" in found
    assert found["before/huge.png"].startswith(
        "too many pixels: 3000x3000 = 9000000 exceeds the limit 1000000"
    )
    assert found["before/bomb.png"].startswith(
        "refused as a decompression bomb: Image size (10000000000 pixels)"
    )
    kinds = {p.kind for p in report.problems}
    assert kinds == {"invalid_image", "pair_rejected"}


def test_pillow_bomb_limit_is_also_caught(tmp_path, image_factory, png_header):
    image_factory(tmp_path / "s" / "before" / "ok.png")
    image_factory(tmp_path / "s" / "after" / "ok.png")
    (tmp_path / "s" / "before" / "bomb.png").write_bytes(png_header(100_000, 100_000))
    image_factory(tmp_path / "s" / "after" / "bomb.png")
    report = ingest(tmp_path / "s", tmp_path / "c", options(max_pixels=10**12), progress=False)
    assert "decompression bomb" in reasons(report)["before/bomb.png"]


def test_exif_palette_cmyk_16bit_and_alpha_sources_become_rgb(tmp_path):
    src = tmp_path / "modes"
    (src / "before").mkdir(parents=True)
    (src / "after").mkdir()
    rotated = Image.new("RGB", (64, 32), RED)
    rotated.paste(BLUE, (32, 0, 64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed portrait with red on top
    rotated.save(src / "before" / "exif.jpg", exif=exif, quality=95)
    Image.new("RGB", (32, 64), GREY).save(
        src / "after" / "exif.png"
    )  # portrait: aspect matches only if applied
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.save(src / "before" / "pal.png", transparency=0)
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(src / "after" / "pal.jpg")
    Image.fromarray(np.full((32, 32), 65535, dtype=np.uint16)).save(src / "before" / "deep.png")
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(src / "after" / "deep.png")

    report = ingest(src, tmp_path / "corpus", options(), progress=False)

    assert report.problems == []
    corpus = Corpus.open(tmp_path / "corpus")
    exif_before = np.asarray(Image.open(corpus.path_of("before/exif.png")))
    assert exif_before[0, 16, 0] > 200 and exif_before[-1, 16, 2] > 200  # top red, bottom blue
    assert Image.open(corpus.path_of("before/pal.png")).getpixel((5, 5)) == (255, 255, 255)
    cmyk = Image.open(corpus.path_of("after/pal.png")).getpixel((5, 5))
    assert cmyk[0] > 240 and cmyk[1] < 15
    assert Image.open(corpus.path_of("before/deep.png")).getpixel((5, 5)) == (255, 255, 255)
    assert Image.open(corpus.path_of("after/deep.png")).getpixel((5, 5)) == (255, 255, 255)


def test_no_usable_pair_is_an_error_and_leaves_nothing(tmp_path, image_factory):
    image_factory(tmp_path / "s" / "before" / "a.png")
    image_factory(tmp_path / "s" / "after" / "b.png")
    with pytest.raises(
        ValueError, match=r"no usable pair in .*before/a.png: no file with stem 'a' in after/"
    ):
        ingest(tmp_path / "s", tmp_path / "out", options(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_output_folder_rules(tmp_path, image_factory):
    image_factory(tmp_path / "s" / "before" / "a.png")
    image_factory(tmp_path / "s" / "after" / "a.png")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(FileExistsError, match="already exists and is not an empty folder"):
        ingest(tmp_path / "s", tmp_path / "full", options(), progress=False)
    with pytest.raises(ValueError, match="must not be the source folder or contain it"):
        ingest(tmp_path / "s", tmp_path, options(), progress=False)
    (tmp_path / "empty").mkdir()
    ingest(tmp_path / "s", tmp_path / "empty", options(), progress=False)
    assert len(Corpus.open(tmp_path / "empty")) == 1


def test_layout_detection(tmp_path, image_factory):
    from pair_datasets.layouts import detect_layout

    image_factory(tmp_path / "st" / "Before" / "a.png")
    image_factory(tmp_path / "st" / "After" / "a.png")
    image_factory(tmp_path / "lv" / "low" / "a.png")
    image_factory(tmp_path / "lv" / "high" / "a.png")
    (tmp_path / "cs").mkdir()
    (tmp_path / "cs" / "pairs.csv").write_text("before,after\n")
    image_factory(tmp_path / "sb" / "a.png")
    (tmp_path / "nothing").mkdir()
    assert detect_layout(tmp_path / "st") == "stems"
    assert detect_layout(tmp_path / "lv") == "levels"
    assert detect_layout(tmp_path / "cs") == "csv"
    assert detect_layout(tmp_path / "cs" / "pairs.csv") == "csv"
    assert detect_layout(tmp_path / "sb") == "side-by-side"
    with pytest.raises(ValueError, match="cannot tell the layout"):
        detect_layout(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        detect_layout(tmp_path / "absent")


def test_options_are_validated():
    with pytest.raises(ValueError, match="layout 'grid' is not one of"):
        IngestOptions(layout="grid")
    with pytest.raises(ValueError, match="resolution: must be a multiple of 8 and at least 16, got 0"):
        IngestOptions(resolution=0)
    with pytest.raises(ValueError, match="resolution: must be an integer"):
        IngestOptions(resolution=32.0)
    assert IngestOptions(resolution=64).smallest_side == 32


def test_worker_threads_keep_manifest_order(tmp_path, image_factory):
    for index in range(12):
        image_factory(tmp_path / "s" / "before" / f"{index:02d}.png", color=(index * 20, 0, 0))
        image_factory(tmp_path / "s" / "after" / f"{index:02d}.png", color=(0, 0, index * 20))
    report = ingest(tmp_path / "s", tmp_path / "c", options(workers=3), progress=False)
    corpus = Corpus.open(tmp_path / "c")
    assert (
        [r.id for r in corpus.records()] == [f"{i:02d}" for i in range(12)] == [p["id"] for p in report.pairs]
    )
    reds = [mean_color(corpus, r.before)[0] for r in corpus.records()]
    assert reds == sorted(reds)
