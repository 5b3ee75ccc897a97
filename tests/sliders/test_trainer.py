"""The slider training loop on the tiny SDXL: it learns, resumes exactly, stops cleanly on NaN and signals."""

from __future__ import annotations

import os
import signal
from dataclasses import replace

import pytest
import safetensors
import torch

from sliders.checkpoint import checkpoint_path, load_checkpoint
from sliders.config import PromptEntry, TextSliderConfig, TrainSettings
from sliders.lora import slider_parameters
from sliders.slider_file import load_slider
from sliders.text_slider import TextSliderTask, check_resolution, resolution_buckets, train_text_slider
from sliders.trainer import NonFiniteLoss, RunState, prepare_slider, resume_run, train_step, write_checkpoint

ENTRY = PromptEntry("person", "old person", "young person", guidance_scale=4.0, resolution=32)


def _config(steps: int, schedule: str = "fast", **train) -> TextSliderConfig:
    return TextSliderConfig(prompts=(ENTRY,), concept="age", schedule=schedule,
                            train=TrainSettings(steps=steps, seed=7, lr=1e-3, **train))  # fmt: skip


def _factors(path) -> dict[str, torch.Tensor]:
    with safetensors.safe_open(str(path), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def _train(pipe, config, out, **kwargs):
    return train_text_slider(pipe, config, out, base_model="tiny", show_progress=False, **kwargs)


def test_training_changes_weights_and_writes_file_and_logs(tiny_pipe, tmp_path):
    out = _train(tiny_pipe, _config(4), tmp_path / "age.safetensors")
    tensors = _factors(out)
    assert any(t.abs().sum() > 0 for k, t in tensors.items() if k.endswith("lora_up.weight"))
    slider = load_slider(out)
    assert slider.kind == "text" and slider.concept == "age" and slider.rank == 4 and slider.alpha == 1.0
    assert slider.start_noise == 750 and slider.scale_range == (-3.0, 3.0) and slider.targets == "noxattn"
    assert slider.metadata["concept_transfer.steps"] == "4" and slider.base_model == "tiny"
    assert "old person" in slider.metadata["concept_transfer.prompts"]
    lines = (tmp_path / "age.loss.csv").read_text().splitlines()
    assert lines[0] == "step,loss" and len(lines) == 5
    assert (tmp_path / "age.loss.png").read_bytes()[:4] == b"\x89PNG"


class _Interrupt:
    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self, step: int, loss: float) -> None:
        if step == self.at:
            raise KeyboardInterrupt


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_sdxl_path, tmp_path):
    from transfer.sdxl import load_sdxl

    def pipe():
        return load_sdxl(str(tiny_sdxl_path), device="cpu")

    straight = _train(pipe(), _config(6), tmp_path / "straight.safetensors")
    out = tmp_path / "resumed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _train(pipe(), _config(6), out, on_step_end=_Interrupt(3))  # mid-pool: the pool state must resume too
    assert load_checkpoint(checkpoint_path(out))["step"] == 3 and not out.exists()
    _train(pipe(), _config(6), out, resume=True)
    a, b = _factors(straight), _factors(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "resumed.loss.csv").read_text() == (tmp_path / "straight.loss.csv").read_text()


def test_resume_refuses_other_settings(tiny_pipe, tiny_sdxl_path, tmp_path):
    from transfer.sdxl import load_sdxl

    out = tmp_path / "s.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_pipe, _config(4), out, on_step_end=_Interrupt(1))
    other = _config(4).with_overrides(rank=2)
    with pytest.raises(ValueError, match="other settings"):
        _train(load_sdxl(str(tiny_sdxl_path), device="cpu"), other, out, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        _train(
            load_sdxl(str(tiny_sdxl_path), device="cpu"),
            _config(4),
            tmp_path / "new.safetensors",
            resume=True,
        )


def test_resume_refuses_other_entry_settings(tiny_pipe, tiny_sdxl_path, tmp_path):
    from transfer.sdxl import load_sdxl

    out = tmp_path / "s.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_pipe, _config(4), out, on_step_end=_Interrupt(1))
    stronger = replace(_config(4), prompts=(replace(ENTRY, guidance_scale=2.0),))  # same prompts, other eta
    with pytest.raises(ValueError, match="other text-slider settings"):
        _train(load_sdxl(str(tiny_sdxl_path), device="cpu"), stronger, out, resume=True)


class _TinyTask:
    """A task stand-in for the checkpoint functions: two trainable parameters and a task state."""

    def __init__(self) -> None:
        self.unet = torch.nn.Linear(2, 2)
        self.state = {"position": 1}

    def state_dict(self) -> dict:
        return dict(self.state)

    def load_state_dict(self, state: dict) -> None:
        self.state = dict(state)


def test_checkpoint_keeps_the_fp16_loss_scale_and_refuses_a_step_past_steps(tmp_path):
    task, generator, path = _TinyTask(), torch.Generator().manual_seed(0), tmp_path / "s.ckpt"
    optimizer = torch.optim.AdamW(task.unet.parameters())
    run = RunState(step=4, losses=[1.0] * 4)
    write_checkpoint(path, run, task, optimizer, generator, TrainSettings(steps=9),
                     torch.amp.GradScaler("cpu", init_scale=256.0))  # fmt: skip
    fresh = torch.amp.GradScaler("cpu", init_scale=65536.0)
    resumed = resume_run(path, _TinyTask(), optimizer, generator, TrainSettings(steps=9), fresh)
    assert resumed.step == 4 and fresh.get_scale() == 256.0
    with pytest.raises(ValueError, match=r"s\.ckpt: checkpoint is at step 4, past --steps 3"):
        resume_run(path, _TinyTask(), optimizer, generator, TrainSettings(steps=3))


def test_each_process_keeps_its_own_checkpoint(tmp_path):
    out = tmp_path / "age.safetensors"
    assert checkpoint_path(out) == checkpoint_path(out, 0) == tmp_path / "age.ckpt"
    assert checkpoint_path(out, 2) == tmp_path / "age.rank2.ckpt"


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tiny_pipe, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = TextSliderTask.compute_loss

    def poisoned(self, model, generator, backward):
        calls["n"] += 1
        loss = original(self, model, generator, backward)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(TextSliderTask, "compute_loss", poisoned)
    out = tmp_path / "s.safetensors"
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 3.*s\.ckpt \(step 2\)"):
        _train(tiny_pipe, _config(5, checkpoint_every=2), out)
    assert load_checkpoint(checkpoint_path(out))["step"] == 2 and not out.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_a_checkpoint_and_restores_the_handler(tiny_pipe, tmp_path, signum):
    before = signal.getsignal(signum)
    out = tmp_path / "s.safetensors"

    def send_signal(step: int, loss: float) -> None:
        if step == 2:
            os.kill(os.getpid(), signum)  # our handler only sets a flag; the loop stops after the step

    with pytest.raises(KeyboardInterrupt, match=signal.Signals(signum).name) as raised:
        _train(tiny_pipe, _config(5), out, on_step_end=send_signal)
    assert raised.value.signum == signum  # the CLI exits 128 + signum (130 for Ctrl-C, 143 for SIGTERM)
    assert load_checkpoint(checkpoint_path(out))["step"] == 2
    assert signal.getsignal(signum) is before


def test_a_second_signal_during_a_step_stops_at_once_keeping_the_last_checkpoint(
    tiny_pipe, tmp_path, monkeypatch
):
    # A training step can take minutes on a CPU: the first Ctrl-C waits for it, the second must not.
    import sliders.trainer as trainer

    out = tmp_path / "s.safetensors"
    finished: list[int] = []
    original_step = trainer.train_step

    def step_with_two_signals(*args, **kwargs):
        if len(finished) == 2:  # inside step 3: Ctrl-C, then Ctrl-C again before the step ends
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        loss = original_step(*args, **kwargs)
        finished.append(len(finished) + 1)
        return loss

    monkeypatch.setattr(trainer, "train_step", step_with_two_signals)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_pipe, _config(5, checkpoint_every=1), out)
    assert finished == [1, 2]  # step 3 was abandoned, not finished
    assert load_checkpoint(checkpoint_path(out))["step"] == 2 and not out.exists()


def _grads(unet) -> list[torch.Tensor]:
    return [p.grad.clone() for p in slider_parameters(unet)]


def test_batched_passes_match_the_separate_reference_passes(tiny_pipe):
    batched = TextSliderTask(tiny_pipe, _config(1))
    separate = TextSliderTask(tiny_pipe, _config(1, schedule="reference"))
    prepare_slider(tiny_pipe.unet, TrainSettings(steps=1))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in slider_parameters(tiny_pipe.unet):  # non-zero up factors: +1 and -1 differ
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    batched.schedule.refresh(
        batched.guided_denoiser(batched.prompt_sets[0], 2), (2, 4, 16, 16), generator, "cpu", torch.float32
    )
    sample = batched.schedule.draw(generator)
    ps = batched.prompt_sets[0]
    eps_b, eps_s = batched.frozen_predictions(sample, ps), separate.frozen_predictions(sample, ps)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(eps_b, eps_s))
    targets = batched.targets(eps_b, ps)
    assert set(targets) == {1, -1}
    loss_b = batched.slider_loss(tiny_pipe.unet, sample, ps, targets, lambda loss: loss.backward())
    grads_b = _grads(tiny_pipe.unet)
    for p in slider_parameters(tiny_pipe.unet):
        p.grad = None
    loss_s = separate.slider_loss(tiny_pipe.unet, sample, ps, targets, lambda loss: loss.backward())
    assert torch.allclose(loss_b, loss_s, rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(grads_b, _grads(tiny_pipe.unet)))


def test_gradient_checkpointing_trains_the_same_slider(tiny_sdxl_path, tmp_path):
    from transfer.sdxl import load_sdxl

    plain = _train(load_sdxl(str(tiny_sdxl_path), device="cpu"), _config(2), tmp_path / "a.safetensors")
    checkpointed = _train(load_sdxl(str(tiny_sdxl_path), device="cpu"), _config(2, gradient_checkpointing=True),
                          tmp_path / "b.safetensors")  # fmt: skip
    a, b = _factors(plain), _factors(checkpointed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_loss_decreases_on_a_fixed_latent(tiny_pipe):
    task = TextSliderTask(tiny_pipe, _config(1))
    optimizer = torch.optim.AdamW(prepare_slider(tiny_pipe.unet, TrainSettings(steps=1)), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    ps = task.prompt_sets[0]
    task.schedule.refresh(task.guided_denoiser(ps, 1), (1, 4, 16, 16), generator, "cpu", torch.float32)
    sample = task.schedule.draw(generator)
    targets = task.targets(task.frozen_predictions(sample, ps), ps)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        losses.append(
            float(task.slider_loss(tiny_pipe.unet, sample, ps, targets, lambda loss: loss.backward()))
        )
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0]


def test_dynamic_resolution_draws_buckets_per_trajectory(tiny_pipe):
    assert resolution_buckets(512) == [256, 320, 384, 448, 512] and resolution_buckets(32) == [16, 24, 32]
    entry = replace(ENTRY, dynamic_resolution=True, batch_size=2)
    task = TextSliderTask(tiny_pipe, replace(_config(1, schedule="fresh10"), prompts=(entry,)))
    optimizer = torch.optim.AdamW(prepare_slider(tiny_pipe.unet, TrainSettings(steps=1)))
    generator = torch.Generator().manual_seed(0)
    sizes = set()
    for _ in range(6):
        shape = task.latent_shape(task.prompt_sets[0], generator)
        assert shape[:2] == (2, 4) and shape[2] == shape[3]
        sizes.add(shape[2] * task.vae_scale)
    assert sizes <= {16, 24, 32} and len(sizes) > 1
    assert torch.isfinite(
        torch.tensor(train_step(task, task.unet, optimizer, generator, lambda loss: loss.backward()))
    )


def test_resolution_must_fit_the_unet_levels():
    from types import SimpleNamespace

    unet = SimpleNamespace(config=SimpleNamespace(block_out_channels=(320, 640, 1280)))
    sdxl = SimpleNamespace(vae_scale_factor=8, unet=unet)  # SDXL's geometry: latents halved twice
    assert check_resolution(sdxl, 512, "prompts[0]") == 512
    with pytest.raises(
        ValueError, match=r"prompts\[0\]: resolution 520: must be a multiple of 32 for this model"
    ):
        check_resolution(sdxl, 520, "prompts[0]")  # a multiple of 8: the YAML accepts it, SDXL's UNet not
