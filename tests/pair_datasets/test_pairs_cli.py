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
    with pytest.raises(SystemExit) as exit_info:
        transfer.cli.main(["pairs", "ingest", str(tmp_path / "s"), "--out", "x", "--scales", "1,two"])
    assert exit_info.value.code == 2
    assert "--scales: 'two' is not a number" in capsys.readouterr().err


def test_ingest_with_before_after_folders_and_name(tmp_path, image_factory, capsys):
    image_factory(tmp_path / "p" / "x.png")
    image_factory(tmp_path / "q" / "x.png")
    args = ["pairs", "ingest", "--before", str(tmp_path / "p"), "--after", str(tmp_path / "q")]
    args += ["--out", str(tmp_path / "c"), "--resolution", "32", "--name", "mine"]
    assert transfer.cli.main(args) == 0
    assert Corpus.open(tmp_path / "c").info.name == "mine"
