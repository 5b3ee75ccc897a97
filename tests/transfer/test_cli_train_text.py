"""`concept-transfer train text` end to end on the tiny SDXL: files written, errors as one line."""

from __future__ import annotations

import json

import pytest
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


PROMPTS = ("--target", "person", "--positive", "old person", "--negative", "young person")


def _metadata(path) -> dict[str, str]:
    with safetensors.safe_open(str(path), "pt") as handle:
        return handle.metadata()


def test_default_resolution_follows_the_model_and_threads_are_recorded(tiny_sdxl_path, tmp_path, monkeypatch):
    # The tiny model's UNet works on 16x16 latents with a 2x VAE: its own size is 32 px, not SDXL's.
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    out = tmp_path / "age.safetensors"
    try:
        torch.set_num_threads(2)
        argv = ["train", "text", "--model", str(tiny_sdxl_path), "--out", str(out), "--quiet", "--steps", "1"]
        assert main([*argv, *PROMPTS]) == 0
        meta = _metadata(out)
        assert json.loads(meta["concept_transfer.prompts"])["entries"][0]["resolution"] == 32
        assert meta["concept_transfer.torch_threads"] == "1"  # a small model on the CPU: one thread
        assert main([*argv, *PROMPTS, "--threads", "2", "--force"]) == 0
        assert _metadata(out)["concept_transfer.torch_threads"] == "2"
    finally:
        torch.set_num_threads(before)


def test_two_identical_runs_write_identical_slider_files(tiny_sdxl_path, tmp_path):
    import hashlib

    digests = set()
    for name in ("a", "b"):
        out = tmp_path / name / "age.safetensors"
        assert _train(tiny_sdxl_path, out, *PROMPTS, "--steps", "2", "--threads", "1") == 0
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_resume_with_other_settings_names_what_differs(tiny_sdxl_path, tmp_path, capsys):
    out = tmp_path / "age.safetensors"
    assert (
        _train(tiny_sdxl_path, out, *PROMPTS, "--steps", "1", "--checkpoint-every", "1", "--lr", "1e-3") == 0
    )
    capsys.readouterr()
    code = _train(tiny_sdxl_path, out, *PROMPTS, "--steps", "2", "--resume", "--lr", "2e-3", "--rank", "2")
    err = capsys.readouterr().err
    assert (
        code == 2
        and "lr: 0.001 in the checkpoint, 0.002 now" in err
        and "rank: 4 in the checkpoint, 2 now" in err
    )
    code = _train(
        tiny_sdxl_path, out, *PROMPTS[:-1], "old person", "--steps", "2", "--resume", "--lr", "1e-3"
    )
    err = capsys.readouterr().err
    assert code == 2 and "unconditional: 'young person' in the checkpoint, 'old person' now" in err


def test_a_full_disk_while_checkpointing_names_the_checkpoint(tiny_sdxl_path, tmp_path):
    # A file-size limit makes every write past 64 KiB fail the way a full disk does (EFBIG instead of ENOSPC).
    import subprocess
    import sys

    resource = pytest.importorskip("resource")
    out = tmp_path / "age.safetensors"
    argv = ["train", "text", "--model", str(tiny_sdxl_path), "--out", str(out), "--resolution", "32", "--quiet",
            *PROMPTS, "--steps", "3", "--checkpoint-every", "1"]  # fmt: skip
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({64 * 1024}, {resource.RLIM_INFINITY}))\n"
        "from transfer.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and lines[-1].startswith(f"error: {tmp_path / 'age.ckpt'}")
    assert "could not write" in lines[-1]
    assert not list(tmp_path.glob(".age*")), "temporary files left behind"
