"""`concept-transfer discover`: the folder it writes, `mine` on its output, bad input, and the toy generator."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from pair_datasets import Corpus
from stylegan_bridge.candidates import load_candidates
from stylegan_bridge.direction_file import file_sha256
from transfer.cli import main


def _args(gan, out, *extra):
    return ["discover", "--gan", str(gan), "--out", str(out), "--device", "cpu", "--stats-samples", "100",
            "--quiet", "--samples", "2", "--top", "4", "--w-samples", "200", "--components", "2", *extra]  # fmt: skip


def test_discover_writes_candidates_sheets_and_an_overview(gan_file, tmp_path, capsys):
    out = tmp_path / "cand"
    assert main(_args(gan_file, out, "--stats-cache", str(tmp_path / "cache"), "--tile", "32")) == 0
    printed = capsys.readouterr().out
    assert "69 channels + 2 w directions, each on 2 seeds" in printed and "candidates:" in printed
    loaded = load_candidates(out, G_sha256=file_sha256(gan_file))
    document = json.loads((out / "candidates.json").read_text())
    assert document["format"] == "concept-transfer.candidates/1"
    assert document["generator"]["file"] == "tiny.safetensors" and document["generator"]["resolution"] == 16
    assert document["settings"]["seeds"] == [0, 1] and document["settings"]["delta"] == 2.0
    assert [e.rank for e in loaded.entries] == [1, 2, 3, 4]
    for entry in loaded.entries:
        with Image.open(entry.sheet) as sheet:  # 3 seeds (the default) x 5 deltas
            assert sheet.size == (110 + 5 * 34, 14 + 3 * 34)
    with Image.open(out / "overview.png") as overview:
        assert overview.size == (110 + 6 * 34, 14 + 4 * 34)
    # Same settings, same file; an existing folder is kept unless --force.
    first = (out / "candidates.json").read_bytes()
    assert main(_args(gan_file, out, "--stats-cache", str(tmp_path / "cache"))) == 2
    assert "already holds candidates.json; pass --force" in capsys.readouterr().err
    assert main(_args(gan_file, out, "--stats-cache", str(tmp_path / "cache"), "--force")) == 0
    assert (out / "candidates.json").read_bytes() == first


def test_mine_takes_a_discovered_w_direction_and_channel(gan_file, tmp_path):
    out = tmp_path / "cand"
    common = ["--device", "cpu", "--stats-samples", "100", "--stats-cache", str(tmp_path / "cache")]
    assert main(_args(gan_file, out, "--stats-cache", str(tmp_path / "cache"), "--top", "20")) == 0
    entries = load_candidates(out).entries
    w_entry = next(e for e in entries if e.kind == "w_direction")
    channel = next(e for e in entries if e.kind == "channel")
    argv = ["mine", "--gan", str(gan_file), *common, "--pairs", "2"]
    assert main([*argv, "--direction", str(w_entry.direction_file), "--index", str(w_entry.direction_index),
                 "--delta", str(w_entry.delta), "--out", str(tmp_path / "w")]) == 0  # fmt: skip
    edit = Corpus.open(tmp_path / "w").info.provenance["edit"]
    assert edit["direction"]["name"] == w_entry.name
    assert main([*argv, "--layer", channel.layer, "--channel", str(channel.channel), "--delta",
                 str(channel.delta), "--out", str(tmp_path / "c")]) == 0  # fmt: skip


def test_command_defaults_are_the_library_defaults():
    from stylegan_bridge.discovery import DiscoveryConfig
    from transfer.cli import build_parser
    from transfer.commands.discover import config_from_args

    args = build_parser().parse_args(["discover", "--gan", "g.pkl", "--out", "o"])
    assert config_from_args(args) == DiscoveryConfig()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--top", "0"], "--top must be >= 1, got 0"),
        (["--layers", "L9"], "--layers 'L9': layer 'L9': no such style layer"),
        (["--layers", "2-1"], "--layers '2-1': range '2-1' runs backwards"),
        (["--samples", "0"], "--samples must be >= 1, got 0"),
        (["--w-methods", "nmf"], "--w-methods: unknown method(s) ['nmf']"),
    ],
)
def test_bad_options_are_one_line_errors(gan_file, tmp_path, capsys, extra, message):
    assert main(_args(gan_file, tmp_path / "cand", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_gan_and_unwritable_out_are_one_line_errors(gan_file, tmp_path, capsys):
    assert main(_args(tmp_path / "missing.pkl", tmp_path / "cand")) == 2
    assert "missing.pkl: generator file not found" in capsys.readouterr().err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(_args(gan_file, a_file)) == 2
    assert "--out " + str(a_file) + ": is a file, not a folder" in capsys.readouterr().err
    assert main(_args(gan_file, a_file / "below")) == 2
    assert f"--out {a_file / 'below'}: {a_file} is a file, not a folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(_args(gan_file, locked)) == 2
        assert f"--out {locked}: cannot create files in {locked}" in capsys.readouterr().err
