"""`concept-transfer train text` end to end on the tiny SDXL: files written, errors as one line."""

from __future__ import annotations

import json

import safetensors

from transfer.cli import main


def _train(tiny_sdxl_path, out, *extra: str) -> int:
    argv = [
        "train",
        "text",
        "--model",
        str(tiny_sdxl_path),
        "--out",
        str(out),
        "--resolution",
        "32",
        "--quiet",
    ]
    return main(argv + list(extra))


def test_cli_trains_a_text_slider(tiny_sdxl_path, tmp_path, capsys):
    out = tmp_path / "age.safetensors"
    code = _train(tiny_sdxl_path, out, "--target", "person", "--positive", "old person", "--negative",
                  "young person", "--preserve", "male, female", "--steps", "3", "--rank", "2", "--alpha", "3",
                  "--seed", "1")  # fmt: skip
    assert code == 0
    with safetensors.safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
        alpha_key = next(k for k in handle.keys() if k.endswith(".alpha"))
        assert float(handle.get_tensor(alpha_key)) == 3.0
    assert meta["ss_network_dim"] == "2" and meta["ss_network_alpha"] == "3"
    assert meta["concept_transfer.kind"] == "text" and meta["concept_transfer.steps"] == "3"
    prompts = json.loads(meta["concept_transfer.prompts"])
    assert prompts["preserve"] == ["male", "female"]
    entry = prompts["entries"][0]
    assert (entry["target"], entry["positive"], entry["unconditional"]) == (
        "person",
        "old person",
        "young person",
    )
    assert entry["neutral"] == "person" and entry["guidance_scale"] == 4.0 and entry["action"] == "enhance"
    assert len((tmp_path / "age.loss.csv").read_text().splitlines()) == 4
    assert (tmp_path / "age.loss.png").stat().st_size > 0
    assert str(out) in capsys.readouterr().out


def test_cli_config_file_and_preset(tiny_sdxl_path, tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(
        "- target: person\n  positive: smiling person\n  unconditional: sad person\n  resolution: 32\n"
    )
    assert _train(tiny_sdxl_path, tmp_path / "a.safetensors", "--config", str(config), "--steps", "1") == 0
    assert _train(tiny_sdxl_path, tmp_path / "b.safetensors", "--preset", "details", "--steps", "1") == 0


def test_cli_user_errors_exit_2_with_one_line(tiny_sdxl_path, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("- target: person\n  guidance: 4\n")
    assert _train(tiny_sdxl_path, tmp_path / "a.safetensors", "--config", str(config)) == 2
    assert "bad.yaml" in capsys.readouterr().err
    assert (
        _train(tiny_sdxl_path, tmp_path / "a.pt", "--target", "a", "--positive", "b", "--negative", "c") == 2
    )
    assert "must end in .safetensors" in capsys.readouterr().err
    assert _train(tiny_sdxl_path, tmp_path / "a.safetensors", "--target", "a", "--positive", "b") == 2
    assert "--target needs --positive and --negative" in capsys.readouterr().err
    assert _train(tiny_sdxl_path, tmp_path / "a.safetensors", "--preset", "faces") == 2
    assert "unknown preset 'faces'" in capsys.readouterr().err


def test_cli_slider_loads_in_diffusers_like_in_our_loader(tiny_sdxl_path, tmp_path):
    import torch
    from diffusers import StableDiffusionXLPipeline

    from sliders.lora import adapter_disabled, slider_scale
    from sliders.slider_file import load_factors_into_unet, load_slider

    out = tmp_path / "s.safetensors"
    argv = ["--target", "person", "--positive", "old person", "--negative", "young person"]
    assert (
        _train(tiny_sdxl_path, out, *argv, "--steps", "2", "--rank", "2", "--alpha", "3", "--lr", "0.05") == 0
    )
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = {"encoder_hidden_states": torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(1)),
            "added_cond_kwargs": {"text_embeds": torch.zeros(1, 32), "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32]])}}  # fmt: skip
    diffusers_pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_path))
    diffusers_pipe.load_lora_weights(str(out), adapter_name="age")
    ours = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_path)).unet
    load_factors_into_unet(ours, load_slider(out).factors)
    with torch.no_grad():
        with adapter_disabled(ours):
            base = ours(x, 500, **cond).sample
        for weight in (-2.0, 1.0):
            diffusers_pipe.set_adapters(["age"], [weight])
            theirs = diffusers_pipe.unet(x, 500, **cond).sample
            with slider_scale(ours, weight):
                mine = ours(x, 500, **cond).sample
            assert (mine - base).abs().max() > 1e-6  # the slider does something
            assert torch.allclose(theirs, mine, atol=1e-5)


def test_cli_sigterm_checkpoints_exits_143_and_resumes(tiny_sdxl_path, tmp_path, monkeypatch, capsys):
    import os
    import signal

    import sliders.trainer as trainer

    real_step, calls = trainer.train_step, []

    def step_then_sigterm(*args, **kwargs):
        calls.append(1)
        loss = real_step(*args, **kwargs)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler stopping the job
        return loss

    monkeypatch.setattr(trainer, "train_step", step_then_sigterm)
    out = tmp_path / "age.safetensors"
    args = ("--target", "person", "--positive", "old person", "--negative", "young person", "--steps", "4")
    assert _train(tiny_sdxl_path, out, *args) == 128 + signal.SIGTERM
    assert "interrupted" in capsys.readouterr().err and not out.exists()
    assert _train(tiny_sdxl_path, out, *args, "--resume") == 0
    assert out.exists() and len(calls) == 4  # 2 before the signal, 2 after resuming
