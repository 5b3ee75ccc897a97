"""`toyworld build --device`: option checks, and CPU training that stays bit-identical to before."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

import toyworld.vae as vae_module
from toyworld.build import BuildConfig, tf32_matmuls
from toyworld.commands import build as command
from toyworld.training import EMA, load_checkpoint, prefetch, world_batch
from toyworld.vae import build_vae, posterior_sample, train_vae
from transfer.cli import main


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_device_option_reaches_the_config():
    assert command.config_from_args(_parse(["toyworld", "build"])).device == "auto"
    config = command.config_from_args(_parse(["toyworld", "build", "--device", "cpu"]))
    assert config.device == "cpu" and config.resolved_device() == torch.device("cpu")
    auto = BuildConfig(out=Path("o"), work=Path("w")).resolved_device()
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("device", ["banana", "cuda:x"])
def test_bad_device_names_the_option(device):
    with pytest.raises(ValueError, match="--device"):
        BuildConfig(out=Path("o"), work=Path("w"), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_rejects_unavailable_cuda_in_one_line(tmp_path, capsys):
    assert main(["toyworld", "build", "--work", str(tmp_path / "w"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device cuda") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_help_lists_device(capsys):
    with pytest.raises(SystemExit):
        main(["toyworld", "build", "--help"])
    assert "--device" in capsys.readouterr().out


def test_posterior_sample_matches_diffusers_sample_on_cpu():
    torch.manual_seed(0)
    vae = build_vae().eval()
    with torch.no_grad():
        dist = vae.encode(torch.rand(2, 3, 64, 64) * 2 - 1).latent_dist
    assert torch.equal(
        posterior_sample(dist, torch.Generator().manual_seed(3)),
        dist.sample(generator=torch.Generator().manual_seed(3)),
    )
    torch.manual_seed(5)
    ours = posterior_sample(dist)
    torch.manual_seed(5)
    assert torch.equal(ours, dist.sample())


def test_prefetch_keeps_order_and_values():
    def make(step: int) -> torch.Tensor:
        return world_batch(0, step, 2)[0]

    plain = list(prefetch(make, range(3, 8), enabled=False))
    ahead = list(prefetch(make, range(3, 8), enabled=True))
    assert len(ahead) == 5 and all(torch.equal(a, b) for a, b in zip(plain, ahead))
    stopped = prefetch(make, range(100), enabled=True)
    assert torch.equal(next(stopped), make(0))
    stopped.close()  # an early stop cancels what was queued and does not hang


def test_ema_shadow_follows_the_module_device_on_load():
    module = torch.nn.Linear(2, 2)
    ema = EMA(module, 0.9)
    state = {k: v + 1 for k, v in ema.state_dict().items()}
    ema.load_state_dict(state)
    assert all(torch.equal(ema.shadow[k], state[k]) for k in state)
    assert all(v.device == torch.device("cpu") for v in ema.shadow.values())


def test_tf32_is_left_alone_on_cpu():
    before = torch.backends.cuda.matmul.allow_tf32
    with tf32_matmuls(torch.device("cpu")):
        assert torch.backends.cuda.matmul.allow_tf32 == before


def test_cpu_vae_run_is_bit_identical_to_the_pre_device_code(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    kwargs = dict(steps=2, batch_size=2, ckpt_every=1, stats_images=8)
    train_vae(tmp_path / "explicit", device="cpu", **kwargs)
    train_vae(tmp_path / "default", **kwargs)
    # The code before --device drew posterior samples with diffusers' own `sample`.
    monkeypatch.setattr(vae_module, "posterior_sample", lambda dist, generator=None: dist.sample(generator))
    train_vae(tmp_path / "old", **kwargs)
    reference = load_checkpoint(tmp_path / "old" / "vae_ckpt.pt")
    saved = AutoencoderKL.from_pretrained(tmp_path / "old" / "vae").state_dict()
    for run in ("explicit", "default"):
        state = load_checkpoint(tmp_path / run / "vae_ckpt.pt")
        for key, value in reference["model"].items():
            assert torch.equal(state["model"][key], value), (run, key)
        for key, value in AutoencoderKL.from_pretrained(tmp_path / run / "vae").state_dict().items():
            assert torch.equal(value, saved[key]), (run, key)
        report = json.loads((tmp_path / run / "vae_done.json").read_text())
        assert report["device"] == "cpu" and "device_name" not in report
        assert report["threads"] == torch.get_num_threads()  # part of the recipe: threads change the bits
