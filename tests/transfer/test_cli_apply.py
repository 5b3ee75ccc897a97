"""`concept-transfer apply` on the tiny fixture: grids and summary written, errors as one line."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from transfer import cli
from transfer.commands.apply import parse_floats, parse_size


@pytest.fixture(autouse=True)
def only_apply(monkeypatch):
    """Register only this command, so other commands' state cannot break these tests."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["transfer.commands.apply"])


def test_apply_sweep_writes_grid_and_summary(tiny_sdxl_path, tiny_pipe, make_slider_file, tmp_path, capsys):
    age = make_slider_file(tiny_pipe.unet, "age", seed=1)
    smile = make_slider_file(tiny_pipe.unet, "smile", seed=2)
    out = tmp_path / "out"
    code = cli.main(
        ["apply", "--model", str(tiny_sdxl_path), "--device", "cpu",
         "--slider", str(age), "--slider", f"{smile}:-1.5",
         "--prompt", "a red car", "--prompt", "a bowl of fruit", "--negative-prompt", "blurry",
         "--scales", "-2,0,2", "--seeds", "0,1", "--start-fraction", "0.5",
         "--steps", "2", "--size", "32", "--guidance", "3", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out / "summary.json") in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grids"] == ["grid_p00.png", "grid_p01.png"]
    assert summary["scales"] == [-2.0, 0.0, 2.0] and summary["seeds"] == [0, 1]
    assert [s["scale"] for s in summary["sliders"]] == [1.0, -1.5]
    assert summary["gate"]["start_fraction"] == 0.5 and summary["gate"]["used"] == "user"
    assert all(record["gate"]["weights"] == [0.0, 1.0] for record in summary["images"])
    assert len(list((out / "images").glob("*.png"))) == 2 * 2 * 3
    with Image.open(out / "grid_p01.png") as grid:
        assert grid.text["prompt"] == "a bowl of fruit"
    with Image.open(out / "images" / "p00_seed0_c00.png") as image:
        assert image.size == (32, 32) and image.text["negative_prompt"] == "blurry"


def test_apply_edit_of_an_image(tiny_sdxl_path, tmp_path):
    source = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(source)
    out = tmp_path / "edit"
    code = cli.main(
        ["apply", "--model", str(tiny_sdxl_path), "--device", "cpu", "--prompt", "a cat",
         "--image", str(source), "--strength", "0.5", "--steps", "2", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["image"] == str(source) and summary["strength"] == 0.5
    assert len(summary["images"][0]["gate"]["timesteps"]) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--slider", "missing.safetensors:2"], "--slider missing.safetensors: no such file"),
        (["--scales", "-1,1"], "--scales: a sweep needs at least one --slider"),
        (["--strength", "0.5"], "--strength: only meaningful with --image"),
        (["--size", "33"], "--size 33"),
        (["--seeds", "a,b"], "--seeds a,b: expected comma-separated integers"),
        (["--composition", "fused", "--offload"], "--composition fused: cannot be used with --offload"),
        (["--device", "nowhere"], "--device nowhere: not a torch device"),
        (["--image", "missing.png"], "--image missing.png: no such file"),
    ],
)
def test_user_errors_are_one_line(tiny_sdxl_path, tmp_path, capsys, extra, message):
    argv = ["apply", "--model", str(tiny_sdxl_path), "--prompt", "a", "--out", str(tmp_path / "o"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_bad_out_and_image_are_refused_before_loading(tiny_sdxl_path, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    argv = ["apply", "--model", str(tiny_sdxl_path), "--prompt", "a", "--out", str(taken)]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: --out {taken}: is a file, not a folder")
    assert "loading" not in captured.out
    argv = ["apply", "--model", str(tiny_sdxl_path), "--prompt", "a", "--image", str(taken), "--out", "o"]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "not a readable image" in captured.err and "loading" not in captured.out


def test_bad_model_names_are_one_line(tmp_path, capsys):
    # Not a hub id (trailing slash) and not an existing folder: named as a missing path, no hub lookup.
    argv = ["apply", "--model", "no_such_dir/", "--prompt", "a", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    assert "error: --model no_such_dir/: no such file or folder" in capsys.readouterr().err


def test_option_parsers():
    assert parse_floats("-2,-1,0,1,2", "--scales") == (-2.0, -1.0, 0.0, 1.0, 2.0)
    assert parse_size("1024") == (1024, 1024) and parse_size("1024x768") == (1024, 768)
    with pytest.raises(ValueError, match="finite"):
        parse_floats("1,inf", "--scales")
