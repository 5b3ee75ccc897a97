"""x_t schedules with a fake denoiser: grids, reference timestep mapping, pool reuse, jitter, seeding."""

from __future__ import annotations

import pytest
import torch
from unet_probe import randomize, unet_output

from sliders.lora import adapter_disabled, attach_slider, lora_layers, slider_scale
from sliders.sampling import (
    SCHEDULES,
    PartialDenoise,
    TrajectoryPool,
    ddim_scheduler,
    folded_slider,
    make_schedule,
)
from toyworld.tiny_sdxl import build_tiny_unet

CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1,
          "timestep_spacing": "leading", "num_train_timesteps": 1000}  # fmt: skip
SHAPE = (2, 4, 8, 8)


class CountingDenoiser:
    """eps = 0.1 * x; records the timesteps it was called at."""

    def __init__(self) -> None:
        self.timesteps: list[int] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.timesteps.append(int(t))
        return 0.1 * x


def test_reference_partially_denoises_on_the_50_step_grid_and_maps_t():
    schedule = make_schedule("reference", CONFIG)
    assert isinstance(schedule, PartialDenoise) and len(schedule.scheduler.timesteps) == 50
    fine = ddim_scheduler(CONFIG, 1000).timesteps
    generator = torch.Generator().manual_seed(3)
    seen = set()
    for _ in range(20):
        denoiser = CountingDenoiser()
        assert schedule.wants_fresh()
        schedule.refresh(denoiser, SHAPE, generator, "cpu", torch.float32)
        sample = schedule.draw(generator)
        k = len(denoiser.timesteps)
        assert 1 <= k <= 49
        assert denoiser.timesteps == schedule.scheduler.timesteps[:k].tolist()
        assert int(sample.timestep) == int(fine[int(k * 1000 / 50)])  # the original's mapping
        assert sample.latents.shape == SHAPE
        seen.add(k)
    assert len(seen) > 5


def test_pool_samples_one_trajectory_and_reuses_it():
    pool = TrajectoryPool(CONFIG, steps=10, reuse=3)
    generator = torch.Generator().manual_seed(0)
    denoiser = CountingDenoiser()
    assert pool.wants_fresh()
    pool.refresh(denoiser, SHAPE, generator, "cpu", torch.float32)
    assert len(denoiser.timesteps) == 9 and pool.latents.shape == (9, *SHAPE)
    grid = pool.scheduler.timesteps.tolist()
    for _ in range(3):
        assert not pool.wants_fresh()
        sample = pool.draw(generator)
        k = grid.index(int(sample.timestep))
        assert torch.equal(sample.latents, pool.latents[k - 1])  # the latent sitting at grid step k
    assert pool.wants_fresh() and len(denoiser.timesteps) == 9


def test_jitter_renoises_between_grid_steps():
    pool = TrajectoryPool(CONFIG, steps=10, reuse=200, jitter=True)
    generator = torch.Generator().manual_seed(1)
    pool.refresh(CountingDenoiser(), SHAPE, generator, "cpu", torch.float32)
    grid = pool.scheduler.timesteps.tolist()
    drawn = [int(pool.draw(generator).timestep) for _ in range(200)]
    assert min(drawn) >= grid[-1] and max(drawn) < grid[0]
    assert len(set(drawn)) > 50  # far more than the 9 grid points
    # renoising from s to s is the identity; to a larger t it scales x_s by sqrt(a_t / a_s)
    x = torch.randn(SHAPE)
    assert torch.allclose(pool.renoise(x, 500, 500, generator), x)
    ratio = float(pool.alphas_cumprod[700] / pool.alphas_cumprod[500])
    renoised = pool.renoise(torch.ones(64, 4, 8, 8), 500, 700, generator)  # q(x_700 | x_500 = 1)
    assert abs(float(renoised.mean()) - ratio**0.5) < 0.03
    assert abs(float(renoised.std()) - (1 - ratio) ** 0.5) < 0.03


def test_schedules_are_seeded_and_pool_state_round_trips():
    def run(seed: int):
        pool = make_schedule("fast", CONFIG)
        generator = torch.Generator().manual_seed(seed)
        pool.refresh(CountingDenoiser(), SHAPE, generator, "cpu", torch.float32)
        return pool, generator, pool.draw(generator)

    (pool, gen, a), (_, _, b) = run(5), run(5)
    assert torch.equal(a.latents, b.latents) and int(a.timestep) == int(b.timestep)
    copy = make_schedule("fast", CONFIG)
    copy.load_state_dict(pool.state_dict(), "cpu")
    twin = torch.Generator().manual_seed(0)
    twin.set_state(gen.get_state())
    assert torch.equal(pool.draw(gen).latents, copy.draw(twin).latents) and copy.uses == pool.uses


def test_default_schedule_is_cheaper_than_reference():
    fast, reference = SCHEDULES["fast"], SCHEDULES["reference"]
    # sampling passes per iteration: (N-1)/reuse for the pool, (N-1)/2 on average for reference
    assert (fast.sampling_steps - 1) / fast.reuse < (reference.sampling_steps - 1) / 2 / 5
    assert reference.separate_passes and not fast.separate_passes
    with pytest.raises(ValueError, match="schedule: unknown 'slow'"):
        make_schedule("slow", CONFIG)


def test_folded_slider_predicts_as_the_low_rank_branch_and_restores_the_weights():
    """Sampling with the slider folded into the weights: same eps as the adapter at that scale."""
    torch.manual_seed(0)
    unet = build_tiny_unet().eval()
    attach_slider(unet, rank=2, alpha=1.0, targets="full")
    randomize(unet)
    weights = {name: layer.get_base_layer().weight for name, layer in lora_layers(unet)}
    before = {name: w.detach().clone() for name, w in weights.items()}
    with adapter_disabled(unet):
        base = unet_output(unet)
    for scale in (1.0, -2.0):
        with slider_scale(unet, scale):
            expected = unet_output(unet)
        with folded_slider(unet, scale):
            folded = unet_output(unet)
        assert (expected - base).abs().max() > 0.05, "the slider must change the prediction"
        torch.testing.assert_close(folded, expected, atol=1e-5, rtol=1e-5)
    for name, layer in lora_layers(unet):
        assert layer.get_base_layer().weight is weights[name] and torch.equal(weights[name], before[name])
    with adapter_disabled(unet):
        torch.testing.assert_close(unet_output(unet), base, atol=0, rtol=0)
