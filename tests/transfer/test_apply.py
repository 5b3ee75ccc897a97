"""Rendering with sliders: spec parsing, sweeps with labelled grids, PNG metadata, image edits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer.apply import SliderSpec, load_sliders, parse_slider_spec
from transfer.gate import GateSpec
from transfer.sweep import SweepSettings, run_sweep

TINY = {"steps": 3, "width": 32, "height": 32, "guidance": 2.0}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("age.safetensors", SliderSpec(Path("age.safetensors"), 1.0)),
        ("age.safetensors:-2", SliderSpec(Path("age.safetensors"), -2.0)),
        ("age.safetensors:+0.5", SliderSpec(Path("age.safetensors"), 0.5)),
        ("runs:12/age.safetensors:1.5", SliderSpec(Path("runs:12/age.safetensors"), 1.5)),
        ("C:\\sliders\\age.safetensors", SliderSpec(Path("C:\\sliders\\age.safetensors"), 1.0)),
        ("C:\\sliders\\age.safetensors:3", SliderSpec(Path("C:\\sliders\\age.safetensors"), 3.0)),
    ],
)
def test_parse_slider_spec(spec, expected):
    assert parse_slider_spec(spec) == expected


def test_parse_slider_spec_prefers_an_existing_file_named_with_a_colon(tmp_path):
    odd = tmp_path / "slider:2"
    odd.write_bytes(b"")
    assert parse_slider_spec(str(odd)) == SliderSpec(odd, 1.0)
    with pytest.raises(ValueError, match="not a finite number"):
        parse_slider_spec("age.safetensors:nan")
    with pytest.raises(ValueError, match="empty"):
        parse_slider_spec("")


def test_slider_for_another_architecture_is_refused(tiny_pipe, tmp_path, make_factors):
    from sliders.slider_file import save_slider

    factors = make_factors(tiny_pipe.unet, "selfattn")
    factors["down_blocks.5.attentions.0.proj_in"] = next(iter(factors.values()))
    path = save_slider(tmp_path / "foreign.safetensors", factors, {})
    with pytest.raises(ValueError, match="foreign.safetensors"):
        load_sliders([SliderSpec(path, 1.0)], tiny_pipe.unet)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_sweep_writes_grids_images_metadata_and_summary(tiny_pipe, make_slider_file, tmp_path):
    unet = tiny_pipe.unet
    files = [make_slider_file(unet, "age", start_noise=600, seed=1), make_slider_file(unet, "smile", seed=2)]
    sliders = load_sliders([SliderSpec(files[0], 2.0), SliderSpec(files[1], -1.5)], unet)
    settings = SweepSettings(
        prompts=("a red car", "a house"), seeds=(0, 1), sweep_scales=(-2.0, 0.0, 2.0), model="tiny", **TINY
    )
    summary = run_sweep(tiny_pipe, sliders, settings, tmp_path / "out", progress=False)

    out = tmp_path / "out"
    assert summary["grids"] == ["grid_p00.png", "grid_p01.png"]
    with Image.open(out / "grid_p00.png") as grid:
        assert grid.width > 3 * 128 and grid.height > 2 * 128  # 3 columns, 2 rows, enlarged cells
    assert len(summary["images"]) == 2 * 2 * 3
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["gate"]["used"] == "slider 0 metadata"

    record = next(r for r in summary["images"] if r["file"] == "images/p00_seed1_c02.png")
    with Image.open(out / record["file"]) as image:
        text = dict(image.text)
    assert text["prompt"] == "a red car"
    assert text["seed"] == "1"
    assert json.loads(text["scales"]) == [2.0, -1.5]  # swept slider at +2, the other held
    sliders_meta = json.loads(text["sliders"])
    assert [(s["name"], s["scale"]) for s in sliders_meta] == [("age", 2.0), ("smile", -1.5)]
    gate = json.loads(text["gate"])
    assert gate["start_noise"] == 600.0  # from the first slider's metadata
    assert gate["weights"] == [0.0, 1.0, 1.0]  # timesteps 667, 334, 1
    assert json.loads(text["concept_transfer"])["file"] == record["file"]

    # The columns differ.
    c0, c1, c2 = (_pixels(out / f"images/p00_seed0_c0{c}.png") for c in range(3))
    assert np.abs(c0 - c2).max() > 0 and np.abs(c0 - c1).max() > 0


def test_zero_scale_equals_no_slider(tiny_pipe, make_slider_file, tmp_path):
    slider = load_sliders([SliderSpec(make_slider_file(tiny_pipe.unet, "age"), 0.0)], tiny_pipe.unet)
    settings = SweepSettings(prompts=("a cat",), seeds=(3,), **TINY)
    run_sweep(tiny_pipe, slider, settings, tmp_path / "zero", progress=False)
    run_sweep(tiny_pipe, [], settings, tmp_path / "none", progress=False)
    name = "images/p00_seed3_c00.png"
    assert np.array_equal(_pixels(tmp_path / "zero" / name), _pixels(tmp_path / "none" / name))


def test_image_edit_uses_the_same_gate_and_differs_from_generation(tiny_pipe, make_slider_file, tmp_path):
    source = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(source)
    slider = load_sliders([SliderSpec(make_slider_file(tiny_pipe.unet, "age"), 1.0)], tiny_pipe.unet)
    common = {"prompts": ("a cat",), "seeds": (0,), "gate": GateSpec(start_fraction=0.5), **TINY}
    edited = run_sweep(
        tiny_pipe,
        slider,
        SweepSettings(image=source, strength=0.7, **common),
        tmp_path / "edit",
        progress=False,
    )
    plain = run_sweep(tiny_pipe, slider, SweepSettings(**common), tmp_path / "plain", progress=False)

    name = "images/p00_seed0_c00.png"
    assert _pixels(tmp_path / "edit" / name).shape == (32, 32, 3)  # resized to --size
    assert np.abs(_pixels(tmp_path / "edit" / name) - _pixels(tmp_path / "plain" / name)).max() > 0
    edit_gate = edited["images"][0]["gate"]
    assert len(edit_gate["timesteps"]) == 2  # int(3 * 0.7) steps of the edit
    assert edit_gate["weights"] == [0.0, 1.0]  # start_fraction 0.5 of the edit's own steps
    assert plain["images"][0]["gate"]["weights"] == [0.0, 0.0, 1.0]  # round(1.5) = 2 steps off
    with Image.open(tmp_path / "edit" / name) as image:
        assert image.text["image"] == str(source) and image.text["strength"] == "0.7"


def test_settings_are_validated():
    with pytest.raises(ValueError, match="--prompt"):
        SweepSettings(prompts=())
    with pytest.raises(ValueError, match="--size: width must be a multiple of 8"):
        SweepSettings(prompts=("a",), width=30, height=32)
    with pytest.raises(ValueError, match="--strength"):
        SweepSettings(prompts=("a",), strength=0.0)
