"""`concept-transfer train visual` end to end on the tiny SDXL, from a corpus made by `pairs ingest`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from PIL import Image

from transfer.cli import main

RES = 32


@pytest.fixture
def corpus(tmp_path):
    """Three before/after pairs drawn with PIL (after = a brighter square), ingested by the CLI."""
    src = tmp_path / "art"
    for folder in ("before", "after"):
        (src / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        base = rng.integers(0, 120, (40, 40, 3)).astype(np.uint8)
        Image.fromarray(base).save(src / "before" / f"img{i}.png")
        base[10:30, 10:30] = 250
        Image.fromarray(base).save(src / "after" / f"img{i}.png")
    out = tmp_path / "corpus"
    assert main(["pairs", "ingest", str(src), "--out", str(out), "--layout", "stems",
                 "--resolution", str(RES)]) == 0  # fmt: skip
    return out


def _train(tiny_sdxl_path, corpus, out, *extra: str) -> int:
    argv = ["train", "visual", "--model", str(tiny_sdxl_path), "--pairs", str(corpus), "--out", str(out),
            "--device", "cpu", "--lr", "1e-2", "--quiet", *extra]  # fmt: skip
    return main(argv)


def test_cli_trains_a_visual_slider_that_diffusers_loads(tiny_sdxl_path, corpus, tmp_path, capsys):
    from diffusers import StableDiffusionXLPipeline

    from sliders.lora import slider_scale
    from sliders.slider_file import load_factors_into_unet, load_slider

    out = tmp_path / "brighter.safetensors"
    assert _train(tiny_sdxl_path, corpus, out, "--steps", "3", "--batch-size", "2", "--augment") == 0
    assert f"slider: {out}" in capsys.readouterr().out
    assert (tmp_path / "brighter.loss.png").is_file()
    with safetensors.safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    assert meta["concept_transfer.kind"] == "visual"
    assert meta["concept_transfer.concept"] == "corpus"  # the corpus name (its folder name)
    summary = json.loads(meta["concept_transfer.corpus"])
    assert summary["name"] == "corpus" and summary["pairs"] == 3 and summary["levels"] == [1.0]
    assert isinstance(json.loads(summary["provenance"]), dict)
    assert meta["concept_transfer.steps"] == "3"

    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_path))
    unet = pipe.unet
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = {"encoder_hidden_states": torch.zeros(1, 77, unet.config.cross_attention_dim),
            "added_cond_kwargs": {"text_embeds": torch.zeros(1, 32), "time_ids": torch.zeros(1, 6)}}  # fmt: skip
    with torch.no_grad():
        base = unet(x, 500, **cond).sample
        pipe.load_lora_weights(str(out), adapter_name="brighter")
        pipe.set_adapters(["brighter"], [3.0])
        slid = unet(x, 500, **cond).sample
    assert (slid - base).abs().max() > 1e-4
    # ... and diffusers' reading agrees with ours, as for text sliders
    ours = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_path)).unet
    load_factors_into_unet(ours, load_slider(out).factors)
    with torch.no_grad(), slider_scale(ours, 3.0):
        torch.testing.assert_close(ours(x, 500, **cond).sample, slid, atol=1e-5, rtol=0)


def test_cli_resume_is_exact(tiny_sdxl_path, corpus, tmp_path):
    straight = tmp_path / "straight.safetensors"
    assert _train(tiny_sdxl_path, corpus, straight, "--steps", "4", "--batch-size", "2") == 0
    resumed = tmp_path / "resumed.safetensors"
    assert _train(tiny_sdxl_path, corpus, resumed, "--steps", "2", "--batch-size", "2",
                  "--checkpoint-every", "2") == 0  # fmt: skip
    assert _train(tiny_sdxl_path, corpus, resumed, "--steps", "4", "--batch-size", "2",
                  "--checkpoint-every", "2", "--resume") == 0  # fmt: skip
    a = safetensors.torch.load_file(straight)
    b = safetensors.torch.load_file(resumed)
    assert a.keys() == b.keys()
    assert any(t.abs().sum() > 0 for k, t in a.items() if "lora_up" in k)  # it trained
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_cli_errors_name_the_input(tiny_sdxl_path, corpus, tmp_path, capsys):
    assert _train(tiny_sdxl_path, tmp_path / "nowhere", tmp_path / "s.safetensors", "--steps", "1") == 2
    assert "nowhere" in capsys.readouterr().err
    assert _train(tiny_sdxl_path, corpus, tmp_path / "s.pt", "--steps", "1") == 2
    assert "--out" in capsys.readouterr().err
    assert _train(tiny_sdxl_path, corpus, tmp_path / "s.safetensors", "--batch-size", "0") == 2
    assert "error: argument --batch-size: must be 1 or more" in capsys.readouterr().err


def test_cli_trains_with_a_paired_crop(tiny_sdxl_path, corpus, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from sliders.slider_file import load_slider

    out = tmp_path / "cropped.safetensors"
    assert _train(tiny_sdxl_path, corpus, out, "--steps", "3", "--batch-size", "2", "--augment",
                  "--crop-scale", "0.5") == 0  # fmt: skip
    slider = load_slider(out)
    assert slider.factors and any(f.up.abs().sum() > 0 for f in slider.factors.values())  # it trained
    meta = slider.metadata
    assert meta["concept_transfer.crop_scale"] == "0.5" and meta["concept_transfer.augment"] == "true"
    assert json.loads(meta["concept_transfer.crop_size"]) == [RES // 2, RES // 2]  # pixels, as trained
    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_path))
    pipe.load_lora_weights(str(out), adapter_name="cropped")  # a UI loads it like any slider


def test_cli_resume_with_a_crop_is_exact_and_refuses_another_crop(tiny_sdxl_path, corpus, tmp_path, capsys):
    crop = ("--batch-size", "2", "--crop-scale", "0.5", "--augment")
    straight = tmp_path / "straight.safetensors"
    assert _train(tiny_sdxl_path, corpus, straight, "--steps", "4", *crop) == 0
    resumed = tmp_path / "resumed.safetensors"
    assert _train(tiny_sdxl_path, corpus, resumed, "--steps", "2", "--checkpoint-every", "2", *crop) == 0
    assert _train(tiny_sdxl_path, corpus, resumed, "--steps", "4", "--checkpoint-every", "2", "--resume",
                  *crop) == 0  # fmt: skip
    a, b = safetensors.torch.load_file(straight), safetensors.torch.load_file(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # the resumed run drew the same crops

    capsys.readouterr()
    assert _train(tiny_sdxl_path, corpus, resumed, "--steps", "6", "--checkpoint-every", "2", "--resume",
                  "--batch-size", "2", "--crop-scale", "0.75", "--augment") == 2  # fmt: skip
    err = capsys.readouterr().err
    assert (
        "--resume: checkpoint was written with other visual settings" in err
        and "crop_scale: 0.5 in the checkpoint" in err
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "must be in (0, 1], got 0.0"), ("1.5", "must be in (0, 1], got 1.5"),
     ("0.05", "0.05: a window of 0.05 x 32 px is smaller than this model's smallest input")],
)  # fmt: skip
def test_cli_refuses_a_bad_crop_scale(tiny_sdxl_path, corpus, tmp_path, capsys, value, message):
    assert (
        _train(tiny_sdxl_path, corpus, tmp_path / "s.safetensors", "--steps", "1", "--crop-scale", value) == 2
    )
    err = capsys.readouterr().err
    assert "error: crop_scale (--crop-scale)" in err and message in err  # one line, no traceback
    assert "Traceback" not in err and not (tmp_path / "s.safetensors").exists()


def test_a_truncated_corpus_image_is_named_without_a_traceback(tiny_sdxl_path, corpus, tmp_path, capsys):
    image = corpus / "after" / "img1.png"
    image.write_bytes(image.read_bytes()[:-80])  # a good header, the pixels cut short
    assert _train(tiny_sdxl_path, corpus, tmp_path / "eyes.safetensors", "--steps", "1") == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the model's loading bars
    assert last.startswith(f"error: corpus {corpus}: image after/img1.png (pair 'img1') cannot be read")
    assert "pairs validate" in last and "Traceback" not in err
