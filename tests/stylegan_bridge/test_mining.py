"""Mining pairs: corpus validity, determinism, resuming, provenance, levels, `concept-transfer mine`."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pair_datasets import Corpus, validate_corpus
from stylegan_bridge.direction_file import file_sha256
from stylegan_bridge.edits import channel_edit, render
from stylegan_bridge.mining import MiningConfig, mine, pair_id, parse_levels, resolve_gan
from stylegan_bridge.style_space import compute_style_stats, to_pil, ws_from_seeds
from transfer.cli import main

SOURCE = {
    "source": "stylegan3",
    "generator": {"file": "tiny.pkl", "sha256": "0" * 64},
    "edit": {"kind": "channel"},
}


@pytest.fixture(scope="module")
def edit(G):
    return channel_edit(G, 2, 4, compute_style_stats(G, num_samples=100))


def _bytes(root, record):
    return (root / record.before).read_bytes(), (root / record.after).read_bytes()


def test_mine_writes_a_valid_corpus_with_provenance(G, edit, tmp_path):
    config = MiningConfig(pairs=3, levels=(1.0, 2.0), seed=10, resolution=24, batch=2)
    report = mine(G, edit, tmp_path / "c", config, SOURCE, progress=False)
    assert validate_corpus(tmp_path / "c") == []
    corpus = Corpus.open(tmp_path / "c")
    assert [r.id for r in corpus.records()] == [pair_id(s, lv) for s in (10, 11, 12) for lv in (1.0, 2.0)]
    assert [r.level for r in corpus.records()] == [1.0, 2.0] * 3
    assert corpus.records()[3].source == {"seed": 11, "delta_before": 0.0, "delta_after": 10.0}
    prov = corpus.info.provenance
    assert prov["generator"]["sha256"] == "0" * 64 and prov["edit"] == {"kind": "channel"}
    assert (prov["delta"], prov["levels"], prov["truncation_psi"], prov["seed_base"]) == (
        5.0,
        [1.0, 2.0],
        0.7,
        10,
    )
    assert prov["symmetric"] is False and prov["resolution"] == 24 and corpus.info.resolution == 24
    with Image.open(tmp_path / "c" / corpus.records()[0].after) as image:
        assert image.size == (24, 24)
    assert report.written == 6 and report.kept == 0 and report.sheet.is_file()


def test_pairs_are_the_unedited_image_and_the_edit(G, edit, tmp_path):
    for symmetric in (False, True):
        root = tmp_path / f"sym{symmetric}"
        mine(
            G,
            edit,
            root,
            MiningConfig(pairs=2, levels=(1.0, 2.0), batch=2, symmetric=symmetric),
            SOURCE,
            progress=False,
        )
        records = {r.id: r for r in Corpus.open(root).records()}
        ws = ws_from_seeds(G, [0, 1], psi=0.7)
        for level in (1.0, 2.0):
            before = to_pil(render(G, ws, edit, -5.0 * level) if symmetric else render(G, ws))[1]
            after = to_pil(render(G, ws, edit, 5.0 * level))[1]
            record = records[pair_id(1, level)]
            assert list(Image.open(root / record.before).getdata()) == list(before.getdata())
            assert list(Image.open(root / record.after).getdata()) == list(after.getdata())
            assert list(before.getdata()) != list(after.getdata())


def test_same_seed_gives_identical_png_bytes(G, edit, tmp_path):
    config = MiningConfig(pairs=3, batch=2)
    a = Corpus.open(mine(G, edit, tmp_path / "a", config, SOURCE, progress=False).root)
    b = Corpus.open(mine(G, edit, tmp_path / "b", config, SOURCE, progress=False).root)
    assert [_bytes(a.root, r) for r in a.records()] == [_bytes(b.root, r) for r in b.records()]


def test_resume_keeps_written_pairs_and_renders_the_rest_identically(G, edit, tmp_path):
    root = tmp_path / "c"
    mine(G, edit, root, MiningConfig(pairs=3, batch=2), SOURCE, progress=False)
    first = Corpus.open(root).records()
    stamps = {
        r.id: ((root / r.before).stat().st_mtime_ns, (root / r.after).stat().st_mtime_ns) for r in first
    }
    calls = []
    hook = G.synthesis.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    try:
        report = mine(G, edit, root, MiningConfig(pairs=5, batch=2), SOURCE, progress=False)
    finally:
        hook.remove()
    assert (report.written, report.kept) == (2, 3)
    assert calls == [2, 2, 1, 1]  # group [2, 3] (original + edit) and group [4]; group [0, 1] not rendered
    resumed = Corpus.open(root).records()
    assert resumed[:3] == first
    for r in first:
        assert ((root / r.before).stat().st_mtime_ns, (root / r.after).stat().st_mtime_ns) == stamps[r.id]
    fresh = Corpus.open(
        mine(G, edit, tmp_path / "fresh", MiningConfig(pairs=5, batch=2), SOURCE, progress=False).root
    )
    assert [_bytes(root, r) for r in resumed] == [_bytes(fresh.root, r) for r in fresh.records()]
    again = mine(G, edit, root, MiningConfig(pairs=5, batch=2), SOURCE, progress=False)
    assert (again.written, again.kept) == (0, 5)


def test_interrupted_run_resumes_to_the_same_corpus(G, edit, tmp_path, monkeypatch):
    config = MiningConfig(pairs=5, levels=(1.0, 2.0), batch=2)
    real_append = Corpus.append
    calls = []

    def crashing_append(self, *args, **kwargs):
        if len(calls) == 5:  # in the middle of seed group [2, 3]
            raise KeyboardInterrupt
        calls.append(args[0])
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(Corpus, "append", crashing_append)
    with pytest.raises(KeyboardInterrupt):
        mine(G, edit, tmp_path / "c", config, SOURCE, progress=False)
    monkeypatch.setattr(Corpus, "append", real_append)
    assert len(Corpus.open(tmp_path / "c")) == 5
    report = mine(G, edit, tmp_path / "c", config, SOURCE, progress=False)
    assert (report.written, report.kept) == (5, 5)
    resumed = Corpus.open(tmp_path / "c")
    fresh = Corpus.open(mine(G, edit, tmp_path / "fresh", config, SOURCE, progress=False).root)
    assert [r.id for r in resumed.records()] == [r.id for r in fresh.records()]
    assert [_bytes(resumed.root, r) for r in resumed.records()] == [
        _bytes(fresh.root, r) for r in fresh.records()
    ]
    assert validate_corpus(tmp_path / "c") == []


def test_resume_with_other_settings_is_refused(G, edit, tmp_path):
    mine(G, edit, tmp_path / "c", MiningConfig(pairs=1), SOURCE, progress=False)
    with pytest.raises(
        ValueError, match=r"corpus.json: the existing corpus was mined with different settings \(delta\)"
    ):
        mine(G, edit, tmp_path / "c", MiningConfig(pairs=2, delta=3.0), SOURCE, progress=False)
    other = {**SOURCE, "generator": {"file": "x.pkl", "sha256": "1" * 64}}
    with pytest.raises(ValueError, match="different settings \\(generator\\)"):
        mine(G, edit, tmp_path / "c", MiningConfig(pairs=2), other, progress=False)
    renamed = {**SOURCE, "generator": {"file": "renamed.pkl", "sha256": "0" * 64}}
    assert mine(G, edit, tmp_path / "c", MiningConfig(pairs=2), renamed, progress=False).written == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pairs": 0}, "--pairs"),
        ({"pairs": 1, "levels": (1.0, 1.0)}, "--levels"),
        ({"pairs": 1, "delta": 0}, "--delta"),
        ({"pairs": 1, "delta": float("inf")}, "--delta"),
        ({"pairs": 1, "levels": (1.0, float("nan"))}, "--levels"),
        ({"pairs": 1, "psi": float("nan")}, "--truncation must"),
        ({"pairs": 1, "cutoff": -3}, "--truncation-cutoff"),
    ],
)
def test_config_errors_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MiningConfig(**kwargs)


def test_parse_levels_and_resolve_gan(tmp_path):
    assert parse_levels("1,2") == (1.0, 2.0)
    with pytest.raises(ValueError, match="--levels"):
        parse_levels("1,x")
    target = tmp_path / "toy.safetensors"
    assert resolve_gan("toy", {"toy": target}) == target
    with pytest.raises(FileNotFoundError, match="generator file not found \\(known names: toy\\)"):
        resolve_gan(tmp_path / "nope.pkl", {"toy": target})


def test_cli_mine_by_channel_then_validate(gan_file, tmp_path, capsys):
    out = tmp_path / "corpus"
    args = [
        "mine",
        "--gan",
        str(gan_file),
        "--layer",
        "L2_20_13",
        "--channel",
        "4",
        "--pairs",
        "3",
        "--out",
        str(out),
        "--levels",
        "1,2",
        "--batch",
        "2",
        "--device",
        "cpu",
        "--stats-samples",
        "100",
        "--stats-cache",
        str(tmp_path / "cache"),
        "--resolution",
        "32",
        "--symmetric",
    ]
    assert main(args) == 0
    assert "6 pairs written" in capsys.readouterr().out
    prov = json.loads((out / "corpus.json").read_text())["provenance"]
    assert prov["generator"] == {
        "file": "tiny.safetensors",
        "sha256": file_sha256(gan_file),
        "resolution": 16,
    }
    assert (
        prov["edit"]["layer"] == "L2_20_13"
        and prov["edit"]["layer_index"] == 2
        and prov["edit"]["channel"] == 4
    )
    assert prov["edit"]["stats"]["num_samples"] == 100 and prov["symmetric"] is True
    assert (out / "contact_sheet.png").is_file()
    assert main(["pairs", "validate", str(out)]) == 0
    assert main(args[:-1]) == 2  # same folder without --symmetric: other provenance
    assert "different settings (symmetric)" in capsys.readouterr().err


def test_cli_mine_from_a_direction_file(gan_file, tmp_path, capsys):
    directions = tmp_path / "pca.safetensors"
    assert (
        main(
            [
                "directions",
                "pca",
                "--gan",
                str(gan_file),
                "--samples",
                "100",
                "--components",
                "2",
                "--out",
                str(directions),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = tmp_path / "corpus"
    assert (
        main(
            [
                "mine",
                "--gan",
                str(gan_file),
                "--direction",
                str(directions),
                "--index",
                "1",
                "--pairs",
                "2",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    prov = Corpus.open(out).info.provenance
    assert (
        prov["edit"]["kind"] == "direction" and prov["edit"]["index"] == 1 and prov["edit"]["method"] == "pca"
    )
    assert prov["edit"]["sha256"] == file_sha256(directions) and prov["edit"]["direction"]["name"] == "pc1"
    assert validate_corpus(out) == []
    capsys.readouterr()
    code = main(
        [
            "mine",
            "--gan",
            str(gan_file),
            "--direction",
            str(directions),
            "--layer",
            "1",
            "--pairs",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 2 and "either --layer and --channel, or --direction" in capsys.readouterr().err
    code = main(
        [
            "mine",
            "--gan",
            str(gan_file),
            "--direction",
            str(directions),
            "--index",
            "5",
            "--pairs",
            "1",
            "--out",
            str(tmp_path / "other"),
            "--device",
            "cpu",
        ]
    )
    assert code == 2 and "index 5 is out of range" in capsys.readouterr().err


def test_mined_corpus_trains_a_visual_slider(gan_file, tiny_sdxl_path, tmp_path, capsys):
    """`mine` on a tiny generator gives a corpus that `train visual` trains from."""
    import safetensors

    corpus = tmp_path / "corpus"
    assert (
        main(
            [
                "mine",
                "--gan",
                str(gan_file),
                "--layer",
                "3",
                "--channel",
                "2",
                "--pairs",
                "2",
                "--levels",
                "1,2",
                "--out",
                str(corpus),
                "--resolution",
                "32",
                "--device",
                "cpu",
                "--stats-samples",
                "100",
                "--stats-cache",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    out = tmp_path / "slider.safetensors"
    assert (
        main(
            [
                "train",
                "visual",
                "--model",
                str(tiny_sdxl_path),
                "--pairs",
                str(corpus),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--steps",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    with safetensors.safe_open(str(out), "pt") as handle:
        summary = json.loads(handle.metadata()["concept_transfer.corpus"])
    assert summary["pairs"] == 4 and summary["levels"] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "nowhere"], "--device nowhere: not a torch device"),
        (["--stats-samples", "1"], "--stats-samples must be >= 2, got 1"),
        (["--truncation", "nan"], "argument --truncation: must be a finite number"),
        (["--delta", "inf"], "argument --delta: must be a finite number, got 'inf'"),
        (["--truncation-cutoff", "-3"], "argument --truncation-cutoff: must be 0 or more"),
    ],
)
def test_cli_mine_user_errors_are_one_line(gan_file, tmp_path, capsys, extra, message):
    argv = ["mine", "--gan", str(gan_file), "--layer", "1", "--channel", "0", "--pairs", "1"]
    assert main([*argv, "--out", str(tmp_path / "c"), "--stats-cache", str(tmp_path / "cache"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
