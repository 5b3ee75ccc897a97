"""The studio's engine on the toy world: results as apply makes them, caches, cancel, bad files."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from transfer.apply import RenderRequest, render
from transfer.compose import compose_sliders
from transfer.gate import GateSpec
from transfer.studio.engine import Cancelled
from transfer.studio.job import Job, SliderSetting

STEPS = 4


def job(demo_sliders, scales=(0.0, 0.0), **changes) -> Job:
    sliders = tuple(
        SliderSetting(demo_sliders[name], name, scale) for name, scale in zip(("eye-size", "smile"), scales)
    )
    settings = {"kind": "generate", "prompt": "a face with red hair", "seed": 3, "sliders": sliders}
    return Job(**{**settings, "steps": STEPS, "width": 64, "height": 64, **changes})


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_a_result_carries_apply_metadata_and_its_command_renders_the_same_pixels(
    engine, demo_sliders, tmp_path
):
    from transfer.cli import main

    result = engine.run(job(demo_sliders, (2.0, -1.0), negative_prompt="blurry"), "tab", tmp_path / "tab", 1)
    text = Image.open(result.shown).text
    record = json.loads(text["concept_transfer"])
    assert record["seed"] == 3 and record["scales"] == [2.0, -1.0] and record["negative_prompt"] == "blurry"
    assert [s["name"] for s in record["sliders"]] == ["eye-size", "smile"] and record["model"] == "toy"
    assert record["gate"]["start_noise"] == 750.0 and text["prompt"] == "a face with red hair"
    argv = shlex.split(result.command)
    assert argv[:2] == ["concept-transfer", "apply"]
    out = tmp_path / "again"
    argv[-1] = f"--out={out}"
    assert main(argv[1:]) == 0
    (again,) = (out / "images").glob("*.png")
    assert np.array_equal(pixels(again), pixels(result.shown))


def test_a_comparison_sweeps_the_first_slider_and_holds_the_others(engine, demo_sliders, tmp_path):
    result = engine.run(
        job(demo_sliders, (0.0, 1.0), kind="compare", sweep_scales=(-2.0, 2.0)), "tab", tmp_path, 2
    )
    assert result.shown.name == "0002-compare-grid.png" and len(result.files) == 3
    assert [r["scales"] for r in result.records] == [[-2.0, 1.0], [2.0, 1.0]]
    assert "--scales=-2,2" in result.command
    left, right = (pixels(path) for path in result.files[1:])
    assert np.abs(left - right).mean() > 1.0


def test_a_changed_scale_reloads_nothing_and_rebuilds_no_composition(engine, demo_sliders, tmp_path):
    engine.run(job(demo_sliders, (0.0, 0.0)), "tab", tmp_path, 1)
    before = dict(engine.stats)
    for number, scale in enumerate((1.0, 2.0, -2.0), start=2):
        engine.run(job(demo_sliders, (scale, 0.5)), "tab", tmp_path, number)
    assert engine.stats == before  # same files, same prompt, same set of sliders: nothing rebuilt
    engine.run(job(demo_sliders, (1.0, 0.0), prompt="a wide face"), "tab", tmp_path, 9)
    assert engine.stats["prompt_encodes"] == before["prompt_encodes"] + 1


def test_cached_prompt_embeddings_render_exactly_what_the_pipeline_encodes(engine, toy_pipe, demo_sliders):
    request = RenderRequest(
        "a wide face", seed=1, scales=(), steps=STEPS, guidance=5.0, width=64, height=64, negative_prompt="x"
    )
    with compose_sliders(toy_pipe.unet, [], []) as composition:
        plain, _ = render(toy_pipe, composition, request)
        cached, _ = render(
            toy_pipe, composition, request, conditioning=engine.conditioning("a wide face", "x")
        )
    assert np.array_equal(np.asarray(plain), np.asarray(cached))


def test_start_noise_zero_gives_exactly_the_image_without_sliders(engine, demo_sliders, tmp_path):
    gated = engine.run(job(demo_sliders, (2.0, 2.0), gate=GateSpec(start_noise=0.0)), "tab", tmp_path, 1)
    bare = engine.run(job(demo_sliders, sliders=()), "tab", tmp_path, 2)
    on = engine.run(job(demo_sliders, (2.0, 2.0)), "tab", tmp_path, 3)
    assert np.array_equal(pixels(gated.shown), pixels(bare.shown))
    assert not np.array_equal(pixels(on.shown), pixels(bare.shown))


def test_an_edit_renders_the_saved_picture_with_apply_s_img2img(engine, demo_sliders, tmp_path):
    picture = tmp_path / "in.png"
    Image.new("RGB", (80, 72), (200, 120, 90)).save(picture)
    result = engine.run(
        job(demo_sliders, (2.0, 0.0), kind="edit", image=picture, strength=0.5), "tab", tmp_path, 1
    )
    record = result.records[0]
    assert record["image"] == str(picture) and record["strength"] == 0.5
    assert f"--image={picture}" in result.command and Image.open(result.shown).size == (64, 64)


def test_cancel_stops_the_running_job_of_its_own_tab_only(engine, demo_sliders, tmp_path, monkeypatch):
    unet = engine.pipe.unet
    weights = {name: p.detach().clone() for name, p in unet.named_parameters()}
    progress = []

    def on_progress(fraction: float, text: str) -> None:
        progress.append(fraction)
        assert not engine.cancel("another tab")
        assert engine.cancel("tab")

    with pytest.raises(Cancelled):
        engine.run(job(demo_sliders, (2.0, 2.0), steps=8), "tab", tmp_path, 1, on_progress)
    assert len(progress) == 1  # stopped after the first step
    assert all(torch.equal(p, weights[name]) for name, p in unet.named_parameters())  # sliders off
    assert not engine.cancel("tab")  # nothing runs any more
    assert engine.run(job(demo_sliders, (1.0, 0.0)), "tab", tmp_path, 2).shown.is_file()


@pytest.mark.parametrize(
    "name, words",
    [
        ("truncated", "not a readable .safetensors"),
        ("text", "not a readable .safetensors"),
        ("foreign", "does not fit UNet module"),
    ],
)
def test_a_bad_slider_file_is_refused_with_its_name(engine, bad_sliders, name, words):
    with pytest.raises(ValueError, match=words) as error:
        engine.card(bad_sliders[name])
    assert str(bad_sliders[name]) in str(error.value) or bad_sliders[name].name in str(error.value)


def test_a_calibrated_slider_takes_user_scales_as_apply_does(
    engine, demo_sliders, calibrated_slider, tmp_path
):
    from transfer.cli import main

    card = engine.card(calibrated_slider)
    loaded = engine.slider(calibrated_slider)
    assert card.calibrated and card.scale_range == loaded.calibration.user_range
    sliders = (SliderSetting(calibrated_slider, "eye size", 1.0),)
    result = engine.run(job(demo_sliders, sliders=sliders), "tab", tmp_path / "tab", 1)
    record = result.records[0]
    assert record["scales"] == [1.0] and record["raw_scales"] == [pytest.approx(loaded.raw_scale(1.0))]
    assert record["raw_scales"] != [1.0] and record["sliders"][0]["calibrated"] is True
    argv = shlex.split(result.command)
    argv[-1] = f"--out={tmp_path / 'again'}"
    assert main(argv[1:]) == 0
    (again,) = (tmp_path / "again" / "images").glob("*.png")
    assert np.array_equal(pixels(again), pixels(result.shown))
