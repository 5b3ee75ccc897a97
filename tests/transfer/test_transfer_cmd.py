"""`concept-transfer transfer`: GAN → corpus → visual slider → sweep on the tiny fixtures, end to end."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from PIL import Image

from pair_datasets import validate_corpus
from sliders.slider_file import load_slider
from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.loading import export_generator
from stylegan_bridge.networks import Generator
from transfer.cli import main

TINY_GAN = GeneratorConfig(
    z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=16,
    num_layers=4, num_critical=1, margin_size=2, mapping_layers=1,
)  # fmt: skip


@pytest.fixture
def gan_file(tmp_path):
    torch.manual_seed(0)
    return export_generator(Generator(TINY_GAN).eval(), tmp_path / "gan.safetensors")


def _args(gan_file, tiny_sdxl_path, out, *extra):
    return [
        "transfer", "--gan", str(gan_file), "--layer", "1", "--channel", "3", "--model", str(tiny_sdxl_path),
        "--out", str(out), "--pairs", "3", "--steps", "2", "--resolution", "32", "--stats-samples", "64",
        "--scales", "-1,0,1", "--seeds", "0", "--sample-steps", "2", "--device", "cpu", *extra,
    ]  # fmt: skip


def test_transfer_runs_every_stage_and_keeps_outputs(gan_file, tiny_sdxl_path, tmp_path, capsys):
    out = tmp_path / "run"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# sweep prompts\na cat\na car\n")
    assert main(_args(gan_file, tiny_sdxl_path, out, "--prompts", str(prompts))) == 0
    printed = capsys.readouterr().out
    for stage in ("[1/3] mine", "[2/3] train", "[3/3] sweep"):
        assert stage in printed

    assert validate_corpus(out / "corpus") == []
    manifest = (out / "corpus" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 3
    provenance = json.loads((out / "corpus" / "corpus.json").read_text())["provenance"]
    assert provenance["edit"]["channel"] == 3 and provenance["edit"]["layer_index"] == 1
    assert provenance["generator"]["sha256"] == hashlib.sha256(gan_file.read_bytes()).hexdigest()

    slider = load_slider(out / "slider.safetensors")
    assert slider.kind == "gan" and slider.factors
    summary = json.loads((out / "sweep" / "summary.json").read_text())
    assert [img["prompt"] for img in summary["images"]].count("a cat") == 3  # 1 seed x 3 scales
    assert len(summary["grids"]) == 2
    assert Image.open(out / "sweep" / summary["grids"][0]).size[0] > 0

    # A second run keeps every stage's output instead of redoing it.
    slider_bytes = (out / "slider.safetensors").read_bytes()
    assert main(_args(gan_file, tiny_sdxl_path, out, "--prompts", str(prompts))) == 0
    printed = capsys.readouterr().out
    assert "mine: kept" in printed and "train: kept" in printed and "sweep: kept" in printed
    assert (out / "slider.safetensors").read_bytes() == slider_bytes


def test_transfer_needs_channel_or_direction(gan_file, tiny_sdxl_path, tmp_path, capsys):
    args = _args(gan_file, tiny_sdxl_path, tmp_path / "run")
    args.remove("--channel")
    args.remove("3")
    assert main(args) == 2
    assert "give --layer and --channel, or --direction" in capsys.readouterr().err


def test_transfer_refuses_unknown_redo_stage(gan_file, tiny_sdxl_path, tmp_path, capsys):
    assert main(_args(gan_file, tiny_sdxl_path, tmp_path / "run", "--redo", "paint")) == 2
    assert "--redo: unknown stage(s) paint" in capsys.readouterr().err
