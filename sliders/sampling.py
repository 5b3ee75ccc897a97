"""Where the text slider's training latents x_t come from (DESIGN §3): partial denoising with the slider.

A schedule is a small object with three methods:
    wants_fresh() -> bool                       # must the next draw start a new trajectory?
    refresh(denoise, shape, generator, device)  # denoise fresh noise with the current slider
    draw(generator) -> NoisyLatent              # the latent x_t and the timestep t of the loss
`denoise(x, t) -> eps` is the guided (CFG) noise prediction the caller makes with the slider at +1.

- `reference` reproduces the original procedure: every iteration, k ~ U{1..49} steps of a 50-step DDIM
  grid from fresh noise; the loss timestep is then read from the 1000-step grid at index k*1000/50
  (the original's mapping, which tells the UNet a timestep ~19 steps above the latent's).
- `fresh10`: the same with a 10-step grid and the latent's own timestep.
- `pool50` / `fast`: one whole trajectory is sampled and its intermediate latents are reused for
  `reuse` iterations, each draw taking a random step of it. `fast` (the default) uses a 10-step grid and
  *jitters* t: the latent at grid step t_k is re-noised forward to a t drawn uniformly between t_k and
  the previous grid step, so every timestep is trained, not only the 9 grid points. Its x_t follow the
  model's own sampling trajectories like the original's; they are up to `reuse`-1 optimizer steps stale,
  and their correlation within a trajectory is broken by the different t and noise of each draw.

Our schedules (all but `reference`) sample with the slider folded into the base weights
(`folded_slider`): a sampling step then costs a base-model call instead of running the low-rank branch
in every adapted layer, as the original does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler
from peft.tuners.lora import LoraLayer
from torch import Tensor, nn

from sliders.lora import DEFAULT_ADAPTER, adapter_disabled, lora_layers

# Re-exported: the schedule table lives in a torch-free module for the command line.
from sliders.schedules import DEFAULT_SCHEDULE, SCHEDULES, ScheduleSpec  # noqa: F401

Denoise = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class NoisyLatent:
    """A training latent x_t [B, 4, h, w] and the timestep (0-dim long tensor) the UNet is told."""

    latents: Tensor
    timestep: Tensor


def ddim_scheduler(scheduler_config: dict, steps: int) -> DDIMScheduler:
    """A DDIM scheduler from the model's scheduler config, set to `steps` steps; latents never clipped."""
    scheduler = DDIMScheduler.from_config(dict(scheduler_config), clip_sample=False)
    scheduler.set_timesteps(steps)
    return scheduler


def denoise_steps(scheduler: DDIMScheduler, denoise: Denoise, x: Tensor, count: int) -> list[Tensor]:
    """Run the first `count` DDIM steps (eta 0) from x; returns the latent after each step."""
    latents = []
    for t in scheduler.timesteps[:count]:
        x = scheduler.step(denoise(x, t.to(x.device)), int(t), x).prev_sample
        latents.append(x)
    return latents


def folded_weight(layer: LoraLayer, scale: float, adapter_name: str = DEFAULT_ADAPTER) -> Tensor:
    """The base weight with the adapter at `scale` added: W0 + scale * alpha/r * up @ down (fp32 sum)."""
    w0 = layer.get_base_layer().weight
    down = layer.lora_A[adapter_name].weight.float().flatten(1)  # [r, in * k * k]
    up = layer.lora_B[adapter_name].weight.float().flatten(1)  # [out, r]
    coef = scale * layer.lora_alpha[adapter_name] / layer.r[adapter_name]
    return (w0.float() + coef * (up @ down).view(w0.shape)).to(w0.dtype)


@contextmanager
def folded_slider(unet: nn.Module, scale: float = 1.0, adapter_name: str = DEFAULT_ADAPTER) -> Iterator[None]:
    """Run the UNet with the slider at `scale` folded into its base weights, the low-rank branch off.

    For the no-grad trajectory sampling: every call then costs a base-model call. W0 is swapped back
    afterwards, never modified (a merge and unmerge in bf16 would drift); memory: one copy of the
    adapted weights while inside.
    """
    swapped = []
    try:
        with torch.no_grad():
            for _, layer in lora_layers(unet, adapter_name):
                base = layer.get_base_layer()
                swapped.append((base, base.weight.data))
                base.weight.data = folded_weight(layer, scale, adapter_name)
        with adapter_disabled(unet):
            yield
    finally:
        for base, weight in swapped:
            base.weight.data = weight


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    return int(torch.randint(low, high, (1,), generator=generator))


def _noise(shape: tuple[int, ...], generator: torch.Generator, device, dtype) -> Tensor:
    # Drawn on the CPU generator so runs are identical on every device.
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device, dtype)


class PartialDenoise:
    """Fresh x_t every draw: k ~ U{1..N-1} DDIM steps of an N-step grid from pure noise."""

    def __init__(self, scheduler_config: dict, steps: int, reference_timesteps: bool = False):
        self.scheduler = ddim_scheduler(scheduler_config, steps)
        self.steps = steps
        # The original reads t from the 1000-step grid at index k * 1000 / N.
        self.fine_timesteps = (
            ddim_scheduler(scheduler_config, 1000).timesteps if reference_timesteps else None
        )
        self._sample: NoisyLatent | None = None

    def wants_fresh(self) -> bool:
        """Always: each iteration denoises anew."""
        return True

    def refresh(
        self, denoise: Denoise, shape: tuple[int, ...], generator: torch.Generator, device, dtype
    ) -> None:
        """Denoise fresh noise for k random steps and keep the result for the next draw."""
        k = _randint(1, self.steps, generator)
        x = _noise(shape, generator, device, dtype) * self.scheduler.init_noise_sigma
        x = denoise_steps(self.scheduler, denoise, x, k)[-1]
        if self.fine_timesteps is not None:
            t = self.fine_timesteps[int(k * 1000 / self.steps)]
        else:
            t = self.scheduler.timesteps[k]
        self._sample = NoisyLatent(x, t.to(device))

    def draw(self, generator: torch.Generator) -> NoisyLatent:
        """The latent of the last refresh."""
        assert self._sample is not None, "refresh() before draw()"
        return self._sample

    def state_dict(self) -> dict:
        """Nothing carries over between iterations."""
        return {}

    def load_state_dict(self, state: dict, device=None) -> None:
        """Nothing to restore."""


class TrajectoryPool:
    """One trajectory of N DDIM steps reused for `reuse` draws, each at a random intermediate step."""

    def __init__(self, scheduler_config: dict, steps: int, reuse: int, jitter: bool = False):
        if reuse < 1:
            raise ValueError(f"reuse: must be at least 1, got {reuse}")
        self.scheduler = ddim_scheduler(scheduler_config, steps)
        self.steps, self.reuse, self.jitter = steps, reuse, jitter
        self.alphas_cumprod = self.scheduler.alphas_cumprod
        self.latents: Tensor | None = None  # [N-1, B, 4, h, w]: latent at grid step k = 1..N-1
        self.uses = 0

    def wants_fresh(self) -> bool:
        """When no trajectory is held or the held one has served `reuse` draws."""
        return self.latents is None or self.uses >= self.reuse

    def refresh(
        self, denoise: Denoise, shape: tuple[int, ...], generator: torch.Generator, device, dtype
    ) -> None:
        """Sample a whole trajectory (N-1 steps) with the current slider and keep its latents."""
        x = _noise(shape, generator, device, dtype) * self.scheduler.init_noise_sigma
        self.latents = torch.stack(denoise_steps(self.scheduler, denoise, x, self.steps - 1))
        self.uses = 0

    def draw(self, generator: torch.Generator) -> NoisyLatent:
        """A random step k of the held trajectory; with jitter, re-noised to t in [t_k, t_{k-1})."""
        assert self.latents is not None, "refresh() before draw()"
        self.uses += 1
        k = _randint(1, self.steps, generator)
        x, t_k = self.latents[k - 1], self.scheduler.timesteps[k]
        if not self.jitter:
            return NoisyLatent(x, t_k.to(x.device))
        t_prev = int(self.scheduler.timesteps[k - 1])
        t = _randint(int(t_k), t_prev, generator)
        return NoisyLatent(self.renoise(x, int(t_k), t, generator), torch.tensor(t, device=x.device))

    def renoise(self, x_s: Tensor, s: int, t: int, generator: torch.Generator) -> Tensor:
        """Forward diffusion from timestep s to t >= s: sqrt(a_t/a_s) x_s + sqrt(1 - a_t/a_s) eps."""
        ratio = float(self.alphas_cumprod[t] / self.alphas_cumprod[s])
        eps = _noise(tuple(x_s.shape), generator, x_s.device, x_s.dtype)
        return ratio**0.5 * x_s + (1 - ratio) ** 0.5 * eps

    def state_dict(self) -> dict:
        """The held trajectory and how often it was used (needed for an exact resume)."""
        return {"latents": None if self.latents is None else self.latents.cpu(), "uses": self.uses}

    def load_state_dict(self, state: dict, device=None) -> None:
        """Restore a held trajectory onto `device`."""
        latents = state.get("latents")
        self.latents = None if latents is None else latents.to(device)
        self.uses = int(state["uses"])


XtSchedule = PartialDenoise | TrajectoryPool


def make_schedule(name: str, scheduler_config: dict) -> XtSchedule:
    """Build the named schedule (see `SCHEDULES`) on a DDIM scheduler from the model's config."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule: unknown {name!r}; choose one of {', '.join(SCHEDULES)}")
    spec = SCHEDULES[name]
    if spec.pool:
        return TrajectoryPool(scheduler_config, spec.sampling_steps, spec.reuse, spec.jitter)
    return PartialDenoise(scheduler_config, spec.sampling_steps, spec.reference_timesteps)
