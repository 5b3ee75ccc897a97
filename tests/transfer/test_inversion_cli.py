"""`concept-transfer apply --invert` on the tiny model: one inversion per photo and settings, cached; errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import transfer.edit.editor as editor_module
from transfer import cli


@pytest.fixture(autouse=True)
def only_apply(monkeypatch):
    """Register only this command, so other commands' state cannot break these tests."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["transfer.commands.apply"])


@pytest.fixture
def count_inversions(monkeypatch):
    """Count the inversions actually computed (not read from memory or the cache)."""
    calls = []
    real = editor_module.invert

    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(editor_module, "invert", counted)
    return calls


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    generator = np.random.default_rng(0)
    Image.fromarray(generator.integers(0, 255, (40, 32, 3), dtype=np.uint8)).save(path)
    return path


def apply_argv(model, photo, out, *extra):
    return ["apply", "--model", str(model), "--device", "cpu", "--image", str(photo), "--steps", "3",
            "--size", "32", "--out", str(out), *extra]  # fmt: skip


def test_a_sweep_inverts_once_and_a_second_run_reads_the_cache(
    tiny_sdxl_path, tiny_pipe, make_slider_file, photo, tmp_path, count_inversions, capsys
):
    slider = make_slider_file(tiny_pipe.unet, "eyes", seed=1)
    cache = tmp_path / "shared-cache"
    argv = apply_argv(tiny_sdxl_path, photo, tmp_path / "first", "--invert", "edit-friendly",
                      "--slider", str(slider), "--scales", "-2,0,2", "--inversion-cache", str(cache))  # fmt: skip
    assert cli.main(argv) == 0
    assert len(count_inversions) == 1  # three scales, one inversion
    assert "photo 32x40, centre square 32x32 kept" in capsys.readouterr().out
    second = [a if a != str(tmp_path / "first") else str(tmp_path / "second") for a in argv]
    assert cli.main(second) == 0
    assert len(count_inversions) == 1  # the second run inverted nothing
    first_summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    second_summary = json.loads((tmp_path / "second" / "summary.json").read_text())
    assert [r["inversion"]["cache"] for r in first_summary["images"]] == ["miss", "miss", "miss"]
    assert [r["inversion"]["cache"] for r in second_summary["images"]] == ["hit", "hit", "hit"]
    assert first_summary["photo"]["original_size"] == [32, 40] and first_summary["invert"] == "edit-friendly"
    assert len(list(cache.glob("*.safetensors"))) == 1
    for record in first_summary["images"]:
        with (
            Image.open(tmp_path / "first" / record["file"]) as a,
            Image.open(tmp_path / "second" / record["file"]) as b,
        ):
            assert np.array_equal(np.asarray(a), np.asarray(b))
            assert a.text["invert"] == "edit-friendly" and "strength" not in a.text


def test_other_settings_invert_again_and_an_empty_prompt_works(
    tiny_sdxl_path, photo, tmp_path, count_inversions
):
    out = tmp_path / "out"
    assert (
        cli.main(apply_argv(tiny_sdxl_path, photo, out, "--invert", "edit-friendly", "--seeds", "0,1")) == 0
    )
    assert len(count_inversions) == 2  # edit-friendly noise depends on the seed
    again = apply_argv(tiny_sdxl_path, photo, out, "--invert", "ddim", "--seeds", "0,1", "--force")
    assert cli.main(again) == 0  # --force: the same --out again (its inversion cache is kept)
    assert len(count_inversions) == 3  # DDIM inversion is deterministic: one for both seeds
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompts"] == [""] and summary["strength"] is None
    assert [r["inversion"]["cache"] for r in summary["images"]] == ["miss", "miss"]  # the same inversion
    assert len(list((out / "inversion-cache").glob("*.safetensors"))) == 3


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        ("text", [], "--image {path}: not an image Pillow can decode"),
        ("bomb", [], "--image {path}: too many pixels: 8200x8200"),
        ("missing", [], "--image {path}: no such file"),
        (
            "photo",
            ["--invert", "null-text"],
            "--invert null-text: unknown method; choose edit-friendly or ddim",
        ),
        ("photo", ["--strength", "0.5"], "--strength: img2img only"),
        ("photo", ["--size", "32x48"], "--size 32x48: --invert edits a square"),
    ],
)
def test_bad_input_is_one_line(tiny_sdxl_path, tmp_path, capsys, make, extra, message):
    path = tmp_path / "in.png"
    if make == "text":
        path.write_text("hello")
    elif make == "bomb":
        Image.new("1", (8200, 8200)).save(path)  # 67 M pixels in a few kB: over the 64 M limit
    elif make == "photo":
        Image.new("RGB", (32, 32)).save(path)
    argv = ["apply", "--model", str(tiny_sdxl_path), "--device", "cpu", "--image", str(path), "--out",
            str(tmp_path / "o"), *(extra if "--invert" in extra else ["--invert", "ddim", *extra])]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(path=path) in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_invert_needs_an_image(tiny_sdxl_path, tmp_path, capsys):
    assert (
        cli.main(["apply", "--model", str(tiny_sdxl_path), "--invert", "ddim", "--out", str(tmp_path)]) == 2
    )
    assert "--invert: needs the photo to edit (--image)" in capsys.readouterr().err
