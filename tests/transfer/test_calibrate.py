"""Slider calibration on the tiny fixture: measured, written into the file, read and used by `apply`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sliders.slider_file import load_slider, update_slider_metadata
from sliders.slider_metadata import KEY_CALIBRATION
from transfer import cli
from transfer.calibrate import (
    CalibrationSettings,
    calibrate_slider,
    default_prompts,
    geometric_mean_ratio,
    is_broken,
    latent_distance,
    sample_distance,
    step_directions,
)

# The tiny model is random: its renders are not images, so its own prior cannot judge breaking.
TINY = dict(seeds=(0, 1), raw_scales=(-2.0, -1.0, -0.5, 0.5, 1.0, 2.0), steps=2, width=32, height=32)
NO_BREAKING = dict(break_effect=1e6, break_prior=1e6)


def tensor_bytes(path) -> bytes:
    raw = path.read_bytes()
    return raw[8 + int.from_bytes(raw[:8], "little") :]


def test_distances_on_hand_made_latents():
    reference = torch.zeros(2, 4, 3, 3)
    moved = reference.clone()
    moved[0, :, 0, 0] = 0.9  # 4 of 36 elements change by 0.9 in image 0
    assert latent_distance(moved, reference).tolist() == pytest.approx([0.1, 0.0])
    three = torch.stack([torch.zeros(4, 2, 2), torch.ones(4, 2, 2), 3 * torch.ones(4, 2, 2)])
    assert sample_distance(three) == pytest.approx((1 + 3 + 2) / 3)
    with pytest.raises(ValueError, match="at least two renders"):
        sample_distance(three[:1])
    assert geometric_mean_ratio(torch.tensor([2.0, 8.0]), torch.tensor([1.0, 2.0])) == pytest.approx(8**0.5)


def test_step_directions_on_hand_made_latents():
    zero = torch.zeros(1, 1, 1, 2)
    along = {1.0: [1.0, 0.0], 2.0: [2.0, 0.0], 3.0: [2.0, 1.0], -1.0: [0.0, -1.0], -2.0: [0.0, -1.0]}
    scales = sorted([0.0, *along])
    latents = [zero if s == 0 else torch.tensor(along[s]).view(1, 1, 1, 2) for s in scales]
    directions = dict(zip(scales, step_directions(scales, latents)))
    # +: steps (1,0), (1,0), (0,1) -> cosines 1, 1, 0; -: steps (0,-1), (0,0) -> 1, then no direction (0).
    assert directions == {-2.0: 0.0, -1.0: 1.0, 0.0: 1.0, 1.0: 1.0, 2.0: 1.0, 3.0: 0.0}


@pytest.mark.parametrize(
    ("effect", "prior", "broken"),
    [
        (0.1, 1.5, False),
        (0.6, 1.5, True),
        (0.1, 6.0, True),
        (float("nan"), 1.0, True),
        (0.1, float("nan"), True),
    ],
)
def test_breaking_rules(effect, prior, broken):
    settings = CalibrationSettings(break_effect=1.0, break_prior=5.0)
    assert is_broken(effect, prior, sample_gap=0.5, settings=settings) is broken


def test_default_prompts_come_from_the_slider():
    entries = [{"target": t} for t in ("a face", "a face", "a car", "a dog", "a cat")]
    assert default_prompts({"concept_transfer.prompts": json.dumps({"entries": entries})}) == (
        "a face",
        "a car",
        "a dog",
    )
    assert default_prompts({"concept_transfer.prompt": "a photo"}) == ("a photo",)
    assert default_prompts({}) == ("",)


@pytest.fixture(autouse=True)
def only_our_commands(monkeypatch):
    """Register only the commands under test, so other commands' state cannot break these tests."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["transfer.commands.apply", "transfer.commands.slider"])


@pytest.fixture
def calibrated(tiny_pipe, make_slider_file):
    """A random slider file calibrated on the tiny pipeline, its tensor bytes before, and the result."""
    path = make_slider_file(tiny_pipe.unet, "age", seed=1)
    before = tensor_bytes(path)
    calibration = calibrate_slider(
        tiny_pipe, path, CalibrationSettings(**TINY, **NO_BREAKING), say=lambda _: None
    )
    return path, before, calibration


def test_calibrate_slider_writes_the_calibration_and_keeps_the_tensors(calibrated):
    path, before, calibration = calibrated
    assert tensor_bytes(path) == before
    assert load_slider(path).calibration == calibration
    assert calibration.curve.raw_scales == (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
    effects = np.array(calibration.curve.effects)
    assert effects[3] == 0 and np.all(effects[[0, 1, 2, 4, 5, 6]] > 0)
    assert calibration.conditions["seeds"] == [0, 1] and calibration.conditions["prompts"] == [""]
    assert calibration.to_raw(0.0) == 0.0 and calibration.to_raw(1.0) > 0 > calibration.to_raw(-1.0)


def test_apply_uses_the_calibration_and_raw_scale_opts_out(tiny_sdxl_path, calibrated, tmp_path, capsys):
    path, _, calibration = calibrated
    raw = calibration.to_raw(1.0)
    common = ["apply", "--model", str(tiny_sdxl_path), "--device", "cpu", "--prompt", "a red car",
              "--steps", "2", "--size", "32", "--start-fraction", "0"]  # fmt: skip
    assert cli.main([*common, "--slider", f"{path}:1", "--out", str(tmp_path / "user")]) == 0
    assert f"age: calibrated; scale -> raw weight +1 -> {raw:+.3g}" in capsys.readouterr().out
    assert (
        cli.main([*common, "--slider", f"{path}:{raw!r}", "--raw-scale", "--out", str(tmp_path / "raw")]) == 0
    )
    assert "age: not calibrated" in capsys.readouterr().out
    user = json.loads((tmp_path / "user" / "summary.json").read_text())["images"][0]
    plain = json.loads((tmp_path / "raw" / "summary.json").read_text())["images"][0]
    assert user["scales"] == [1.0] and user["raw_scales"] == [raw] and user["sliders"][0]["calibrated"]
    assert plain["scales"] == plain["raw_scales"] == [raw] and not plain["sliders"][0]["calibrated"]
    # The image at user scale 1 is the image at the raw weight it maps to.
    pixels = [np.asarray(Image.open(tmp_path / d / "images" / "p00_seed0_c00.png")) for d in ("user", "raw")]
    assert np.array_equal(*pixels)
    with Image.open(tmp_path / "user" / "images" / "p00_seed0_c00.png") as image:
        assert json.loads(image.text["raw_scales"]) == [raw] and json.loads(image.text["scales"]) == [1.0]


def test_a_bad_calibration_header_is_one_line_naming_key_and_file(
    tiny_sdxl_path, tiny_pipe, make_slider_file, tmp_path, capsys
):
    path = make_slider_file(tiny_pipe.unet, "bad", seed=1)
    update_slider_metadata(path, {KEY_CALIBRATION: '{"version": 1, "knots": {}}'})
    common = ["apply", "--model", str(tiny_sdxl_path), "--device", "cpu", "--prompt", "a", "--steps", "1",
              "--size", "32", "--slider", str(path)]  # fmt: skip
    assert cli.main([*common, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: {path}: header {KEY_CALIBRATION} is not a valid calibration: missing field 'user'\n"
    )
    assert cli.main([*common, "--raw-scale", "--out", str(tmp_path / "o")]) == 0  # ignored with --raw-scale


def test_slider_calibrate_command(tiny_sdxl_path, tiny_pipe, make_slider_file, tmp_path, capsys):
    path = make_slider_file(tiny_pipe.unet, "age", seed=1)
    out = tmp_path / "calibrated.safetensors"
    original = path.read_bytes()
    argv = ["slider", "calibrate", str(path), "--model", str(tiny_sdxl_path), "--device", "cpu",
            "--seeds", "0,1", "--scales", "-1,1,2", "--steps", "2", "--size", "32", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "calibration: user scale -> raw weight:" in printed and f"calibration written to {out}" in printed
    assert path.read_bytes() == original and tensor_bytes(out) == tensor_bytes(path)
    assert cli.main(["slider", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert f"calibrated:  yes, on {tiny_sdxl_path} (1 prompt(s) x 2 seed(s), 4 raw scales)" in info
    assert cli.main(["slider", "info", str(path)]) == 0
    assert "calibrated:  no" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scales", "0"], "--scales: give at least one raw scale other than 0"),
        (["--seeds", "x"], "--seeds x: expected comma-separated integers"),
        (["--out", "copy.pt"], "--out copy.pt: a slider file must end in .safetensors"),
        (["--prompt", "a", "--prompts", "p.txt"], "--prompt and --prompts: give one, not both"),
        (["--unit-effect", "0"], "--unit-effect: must be positive"),
    ],
)
def test_slider_calibrate_user_errors(tiny_sdxl_path, tiny_pipe, make_slider_file, capsys, extra, message):
    path = make_slider_file(tiny_pipe.unet, "age", seed=1)
    assert cli.main(["slider", "calibrate", str(path), "--model", str(tiny_sdxl_path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "\n" == err[-1] and err.count("\n") == 1


def test_slider_calibrate_missing_file(tiny_sdxl_path, tmp_path, capsys):
    missing = tmp_path / "missing.safetensors"
    assert cli.main(["slider", "calibrate", str(missing), "--model", str(tiny_sdxl_path)]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such slider file\n"


def test_train_calibrate_calibrates_the_new_slider(tiny_sdxl_path, tmp_path, monkeypatch, capsys):
    from transfer.commands import slider as slider_command

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["transfer.commands.train"])
    settings = CalibrationSettings(**TINY, **NO_BREAKING)
    monkeypatch.setattr(slider_command, "trained_calibration_settings", lambda: settings)
    out = tmp_path / "age.safetensors"
    argv = ["train", "text", "--model", str(tiny_sdxl_path), "--out", str(out), "--resolution", "32", "--quiet",
            "--target", "person", "--positive", "old person", "--negative", "young person", "--steps", "2",
            "--calibrate"]  # fmt: skip
    assert cli.main(argv) == 0
    calibration = load_slider(out).calibration
    assert calibration is not None and calibration.conditions["prompts"] == ["person"]
    assert "calibration: user scale -> raw weight" in capsys.readouterr().out
