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


def test_transfer_runs_every_stage_and_keeps_outputs(gan_file, tiny_sdxl_path, tmp_path, capsys, monkeypatch):
    import transfer.recipe as recipe

    adapters_at_sweep = []
    original_sweep = recipe.sweep_stage

    def spy(plan, pipe):  # the trained adapter must not stay on (it would add the slider at +1 everywhere)
        adapters_at_sweep.append(sorted(getattr(pipe.unet, "peft_config", None) or {}))
        return original_sweep(plan, pipe)

    monkeypatch.setattr(recipe, "sweep_stage", spy)
    out = tmp_path / "run"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# sweep prompts\na cat\na car\n")
    assert main(_args(gan_file, tiny_sdxl_path, out, "--prompts", str(prompts))) == 0
    assert adapters_at_sweep == [[]]
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

    # More pairs: the slider and the sweep are stale, so both run again (the slider from scratch).
    more = _args(gan_file, tiny_sdxl_path, out, "--prompts", str(prompts))
    more[more.index("--pairs") + 1] = "4"
    assert main(more) == 0
    printed = capsys.readouterr().out
    assert "[2/3] train visual slider" in printed and "[3/3] sweep:" in printed
    assert len((out / "corpus" / "manifest.jsonl").read_text().splitlines()) == 4
    assert (
        json.loads(load_slider(out / "slider.safetensors").metadata["concept_transfer.corpus"])["pairs"] == 4
    )

    # Other sweep settings: only the sweep runs again.
    more[more.index("--seeds") + 1] = "0,1"
    assert main(more) == 0
    printed = capsys.readouterr().out
    assert "mine: kept" in printed and "train: kept" in printed and "[3/3] sweep:" in printed
    assert json.loads((out / "sweep" / "summary.json").read_text())["seeds"] == [0, 1]


def test_transfer_needs_channel_or_direction(gan_file, tiny_sdxl_path, tmp_path, capsys):
    args = _args(gan_file, tiny_sdxl_path, tmp_path / "run")
    args.remove("--channel")
    args.remove("3")
    assert main(args) == 2
    assert "give --layer and --channel, or --direction" in capsys.readouterr().err


def test_transfer_refuses_unknown_redo_stage(gan_file, tiny_sdxl_path, tmp_path, capsys):
    assert main(_args(gan_file, tiny_sdxl_path, tmp_path / "run", "--redo", "paint")) == 2
    assert "--redo: unknown stage(s) paint" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "30"], "argument --size: must be a multiple of 8 and at least 16, got 30"),
        (["--sample-steps", "0"], "argument --sample-steps: must be 1 or more, got '0'"),
        (["--stats-samples", "1"], "--stats-samples must be >= 2"),
    ],
)
def test_transfer_checks_sweep_options_before_mining(
    gan_file, tiny_sdxl_path, tmp_path, capsys, extra, message
):
    out = tmp_path / "run"
    assert main(_args(gan_file, tiny_sdxl_path, out, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (out / "corpus").exists()


def test_train_stage_resumes_only_an_interrupted_run(tmp_path, monkeypatch):
    import os

    import transfer.recipe as recipe

    calls = []
    monkeypatch.setattr(recipe.Corpus, "open", staticmethod(lambda root: None))
    monkeypatch.setattr(recipe, "train_visual_slider", lambda *a, resume, **k: calls.append(resume))
    plan = recipe.TransferPlan(gan="g.pkl", model="m", out=tmp_path, layer="1", channel=0)
    ckpt = recipe.checkpoint_path(plan.slider_path)

    recipe.train_stage(plan, None)  # nothing there: a fresh run
    ckpt.write_bytes(b"c")
    recipe.train_stage(plan, None)  # interrupted before the slider was written: resume
    plan.slider_path.write_bytes(b"s")
    os.utime(ckpt, ns=(1, 1))
    recipe.train_stage(plan, None)  # the checkpoint is older than the finished slider: start afresh
    os.utime(plan.slider_path, ns=(1, 1))
    os.utime(ckpt, ns=(2, 2))
    recipe.train_stage(plan, None)  # a re-training interrupted after the old slider: resume it
    assert calls == [False, True, False, True]
