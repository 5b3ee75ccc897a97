"""`concept-transfer pairs ingest|inspect|validate` in-process: exit codes, printed messages, files."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import transfer.cli
from pair_datasets import Corpus


@pytest.fixture(autouse=True)
def only_pairs_command(monkeypatch):
    """Parse with the pairs command alone, so these tests do not depend on other commands' imports."""
    assert "transfer.commands.pairs" in transfer.cli.COMMAND_MODULES
    monkeypatch.setattr(transfer.cli, "COMMAND_MODULES", ["transfer.commands.pairs"])
    monkeypatch.delenv("CONCEPT_TRANSFER_DEBUG", raising=False)


@pytest.fixture
def src(tmp_path, image_factory):
    for stem in ("a", "b"):
        image_factory(tmp_path / "art" / "verylow" / f"{stem}.png", color=(20, 20, 20))
        image_factory(tmp_path / "art" / "veryhigh" / f"{stem}.png", color=(240, 240, 240))
        image_factory(tmp_path / "art" / "low" / f"{stem}.png", color=(90, 90, 90))
        image_factory(tmp_path / "art" / "high" / f"{stem}.png", color=(160, 160, 160))
    return tmp_path / "art"


def test_ingest_inspect_validate(tmp_path, src, capsys):
    out = tmp_path / "corpus"
    code = transfer.cli.main(
        ["pairs", "ingest", str(src), "--out", str(out), "--scales", "-2,-1,1,2", "--resolution", "32"]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert f"ingested 4 pairs (levels layout, 32x32) into {out}" in printed
    assert f"report: {out / 'ingest_report.json'}" in printed
    assert json.loads((out / "ingest_report.json").read_text())["accepted"] == 4

    (out / "contact_sheet.png").unlink()
    assert transfer.cli.main(["pairs", "inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pairs: 4 (0 with captions)" in printed
    assert "levels: 1: 2, 2: 2" in printed
    assert f"contact sheet (before above after): {out / 'contact_sheet.png'}" in printed
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] > sheet.size[1] > 2 * 128  # one row of 4 pairs, each before above after

    assert transfer.cli.main(["pairs", "validate", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "ok: 4 pairs"


def test_validate_reports_problems_with_exit_1(tmp_path, src, capsys):
    out = tmp_path / "corpus"
    transfer.cli.main(["pairs", "ingest", str(src), "--out", str(out), "--resolution", "32"])
    capsys.readouterr()
    (out / "after" / "a-l1.png").unlink()
    with open(out / "manifest.jsonl", "a") as handle:
        handle.write('{"id": "x", "before": "../../etc/passwd", "after": "after/b-l1.png"}\n')
    assert transfer.cli.main(["pairs", "validate", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "manifest.jsonl line 1 (pair 'a-l1'): after file after/a-l1.png is missing" in lines
    assert "manifest.jsonl line 5: field 'before': path '../../etc/passwd' leaves the corpus folder" in lines
    assert lines[-1] == f"2 problem(s) in {out}"


def test_user_errors_exit_2_with_one_line(tmp_path, image_factory, capsys):
    image_factory(tmp_path / "s" / "before" / "a.png")
    image_factory(tmp_path / "s" / "after" / "b.png")
    code = transfer.cli.main(["pairs", "ingest", str(tmp_path / "s"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: no usable pair in") and "Traceback" not in err
    assert transfer.cli.main(["pairs", "inspect", str(tmp_path / "missing")]) == 2
    assert "no such corpus folder" in capsys.readouterr().err
    assert transfer.cli.main(["pairs", "ingest", str(tmp_path / "s"), "--out", "x", "--scales", "1,two"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "error: argument --scales: 'two' is not a number (see concept-transfer pairs ingest --help)\n"
    )


def test_ingest_with_before_after_folders_and_name(tmp_path, image_factory, capsys):
    image_factory(tmp_path / "p" / "x.png")
    image_factory(tmp_path / "q" / "x.png")
    args = ["pairs", "ingest", "--before", str(tmp_path / "p"), "--after", str(tmp_path / "q")]
    args += ["--out", str(tmp_path / "c"), "--resolution", "32", "--name", "mine"]
    assert transfer.cli.main(args) == 0
    assert Corpus.open(tmp_path / "c").info.name == "mine"


def _corpus(tmp_path, src, capsys):
    out = tmp_path / "corpus"
    assert transfer.cli.main(["pairs", "ingest", str(src), "--out", str(out), "--resolution", "32"]) == 0
    capsys.readouterr()
    return out


def test_validate_decodes_every_image_and_finds_a_truncated_one(tmp_path, src, capsys):
    # A truncated PNG keeps a good header: reading only headers said "ok", then training crashed on it.
    out = _corpus(tmp_path, src, capsys)
    image = out / "after" / "b-l2.png"
    image.write_bytes(image.read_bytes()[:-60])
    assert transfer.cli.main(["pairs", "validate", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "(pair 'b-l2'): after file after/b-l2.png is not a readable image" in printed


def test_ingest_refuses_a_resolution_training_would_refuse(tmp_path, src, capsys):
    for value in ("12", "100", "0"):
        assert (
            transfer.cli.main(
                ["pairs", "ingest", str(src), "--out", str(tmp_path / "c"), "--resolution", value]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert "--resolution" in err and "multiple of 8 and at least 16" in err, err
    assert not (tmp_path / "c").exists()


def test_inspect_names_a_bad_max_pairs_and_refuses_to_replace_a_named_sheet(tmp_path, src, capsys):
    out = _corpus(tmp_path, src, capsys)
    assert transfer.cli.main(["pairs", "inspect", str(out), "--max-pairs", "0"]) == 2
    assert "--max-pairs" in capsys.readouterr().err
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(b"my own picture")
    assert transfer.cli.main(["pairs", "inspect", str(out), "--sheet", str(sheet)]) == 2
    assert f"--sheet {sheet}: exists; pass --force" in capsys.readouterr().err
    assert sheet.read_bytes() == b"my own picture"
    assert transfer.cli.main(["pairs", "inspect", str(out), "--sheet", str(sheet), "--force"]) == 0


def test_csv_problems_name_the_line_once(tmp_path, image_factory, capsys):
    image_factory(tmp_path / "art" / "a.png")
    image_factory(tmp_path / "art" / "b.png")
    (tmp_path / "art" / "pairs.csv").write_text("before,after\na.png,b.png\n,b.png\n")
    assert transfer.cli.main(["pairs", "ingest", str(tmp_path / "art" / "pairs.csv"), "--out",
                              str(tmp_path / "c"), "--resolution", "32"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "pairs.csv line 3: 'before' and 'after' must both be given" in printed
    assert printed.count("pairs.csv line 3") == 1, printed


def test_hidden_files_skipped_by_ingest_are_reported(tmp_path, image_factory, capsys):
    for side in ("before", "after"):
        image_factory(tmp_path / "art" / side / "a.png")
        (tmp_path / "art" / side / ".DS_Store").write_bytes(b"finder")
    image_factory(tmp_path / "art" / "after" / ".hidden.png")
    out = tmp_path / "c"
    assert (
        transfer.cli.main(["pairs", "ingest", str(tmp_path / "art"), "--out", str(out), "--resolution", "32"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "after/.hidden.png: hidden file (its name starts with '.'), skipped" in printed
    report = json.loads((out / "ingest_report.json").read_text())
    hidden = sorted(p["paths"][0] for p in report["problems"] if p["kind"] == "hidden")
    assert hidden == ["after/.DS_Store", "after/.hidden.png", "before/.DS_Store"]


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path, src, capsys):
    # `concept-transfer pairs inspect corpus | head -1`: the pipe closes before everything is printed.
    import subprocess
    import sys

    out = _corpus(tmp_path, src, capsys)
    code = f"import sys; from transfer.cli import main; sys.exit(main(['pairs', 'inspect', {str(out)!r}]))"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # the reader is gone before the first line
    err = child.stderr.read().decode()
    assert child.wait(timeout=300) == 2, err
    assert "Traceback" not in err and err.strip() == (
        "error: standard output: the reading end was closed (broken pipe); output cut short"
    )
    assert (out / "contact_sheet.png").is_file()
