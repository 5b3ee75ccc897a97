"""The gate: a pure schedule, and the weight really in effect at every sampling step."""

from __future__ import annotations

import pytest
import torch

from transfer.apply import img2img_pipeline
from transfer.compose import compose_sliders
from transfer.gate import (
    DEFAULT_START_NOISE,
    NEVER,
    GateSpec,
    SliderGate,
    default_gate,
    gate_weight,
    planned_timesteps,
    start_noise_from_fraction,
)

STEPS = 4  # the tiny scheduler ("leading", offset 1) runs timesteps 751, 501, 251, 1


def test_gate_weight_is_off_above_start_noise():
    assert [gate_weight(t, 750) for t in (999, 751, 750, 400, 0)] == [0, 0, 1, 1, 1]


def test_planned_timesteps_and_fractions(tiny_pipe):
    timesteps = planned_timesteps(tiny_pipe.scheduler, STEPS)
    assert timesteps == [751.0, 501.0, 251.0, 1.0]
    assert planned_timesteps(tiny_pipe.scheduler, STEPS, strength=0.5) == [251.0, 1.0]
    assert start_noise_from_fraction(timesteps, 0.0) == 751.0
    assert start_noise_from_fraction(timesteps, 0.25) == 501.0
    assert start_noise_from_fraction(timesteps, 0.5) == 251.0
    assert start_noise_from_fraction(timesteps, 1.0) == NEVER
    with pytest.raises(ValueError, match="--start-fraction"):
        start_noise_from_fraction(timesteps, 1.5)
    # img2img with so little strength that no step is left: an error naming both options.
    with pytest.raises(ValueError, match=r"--strength 0.2 with --steps 4: .* leaves no denoising step"):
        planned_timesteps(tiny_pipe.scheduler, STEPS, strength=0.2)


def test_gate_spec_resolution_and_errors():
    timesteps = [751.0, 501.0, 251.0, 1.0]
    assert GateSpec().resolve(timesteps) == DEFAULT_START_NOISE
    assert GateSpec().resolve(timesteps, GateSpec(start_fraction=0.5)) == 251.0
    assert GateSpec(start_noise=300).resolve(timesteps, GateSpec(start_fraction=0.5)) == 300
    with pytest.raises(ValueError, match="not both"):
        GateSpec(start_noise=500, start_fraction=0.5)


def test_default_gate_reads_slider_metadata():
    assert default_gate([{}, {"concept_transfer.start_noise": "600"}]) == (
        GateSpec(start_noise=600.0),
        "slider 1 metadata",
    )
    assert default_gate([{"concept_transfer.start_noise": "0.3"}])[0] == GateSpec(start_fraction=0.3)
    assert default_gate([{}]) == (GateSpec(start_noise=750.0), "default")
    with pytest.raises(ValueError, match="slider 0: metadata concept_transfer.start_noise"):
        default_gate([{"concept_transfer.start_noise": "soon"}])
    with pytest.raises(ValueError, match="slider 0: metadata concept_transfer.start_noise='inf'"):
        default_gate([{"concept_transfer.start_noise": "inf"}])


def _sample_with_probe(pipe, composition, gate, **kwargs):
    """Sample through `gate`, recording (timestep, weight, UNet weights differ from base) per UNet call."""
    module = next(iter(composition._stacks.values())).module
    base = module.weight.detach().clone()
    calls = []

    def probe(_unet, args, kw):
        calls.append((float(args[1]), composition.weight, not torch.equal(module.weight, base)))

    handle = pipe.unet.register_forward_pre_hook(probe, with_kwargs=True)
    try:
        with gate.active():
            pipe(
                prompt="a face",
                num_inference_steps=STEPS,
                callback_on_step_end=gate,
                output_type="latent",
                **kwargs,
            )
    finally:
        handle.remove()
    assert torch.equal(module.weight, base), "the gate leaves the base weights restored"
    return calls


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (GateSpec(start_noise=750), [0, 1, 1, 1]),
        (GateSpec(start_noise=300), [0, 0, 1, 1]),
        (GateSpec(start_noise=1000), [1, 1, 1, 1]),
        (GateSpec(start_fraction=0.5), [0, 0, 1, 1]),
        (GateSpec(start_fraction=0.75), [0, 0, 0, 1]),
        (GateSpec(start_fraction=1.0), [0, 0, 0, 0]),
    ],
)
def test_effective_weight_at_every_step(tiny_pipe, make_factors, spec, expected):
    composition = compose_sliders(tiny_pipe.unet, [make_factors(tiny_pipe.unet)], [-2.0])
    timesteps = planned_timesteps(tiny_pipe.scheduler, STEPS)
    gate = SliderGate(composition, spec.resolve(timesteps), timesteps)
    calls = _sample_with_probe(tiny_pipe, composition, gate, height=32, width=32, guidance_scale=1.0)
    assert gate.weights == expected
    assert [record.timestep for record in gate.records] == timesteps
    # Independently of the gate's own record: what the UNet saw at each call.
    assert [(t, w, on) for t, w, on in calls] == [(t, float(w), bool(w)) for t, w in zip(timesteps, expected)]
    assert composition.weight == 0.0


def test_img2img_gate_starts_on_when_the_edit_starts_below_start_noise(tiny_pipe, make_factors):
    edit = img2img_pipeline(tiny_pipe)
    composition = compose_sliders(edit.unet, [make_factors(edit.unet)], [1.0])
    timesteps = planned_timesteps(edit.scheduler, STEPS, strength=0.5)
    gate = SliderGate(composition, 750, timesteps)
    image = torch.rand(1, 3, 32, 32)
    calls = _sample_with_probe(edit, composition, gate, image=image, strength=0.5)
    assert gate.weights == [1.0, 1.0]
    assert [t for t, _, _ in calls] == [251.0, 1.0]


def test_gate_refuses_an_unplanned_schedule(tiny_pipe, make_factors):
    composition = compose_sliders(tiny_pipe.unet, [make_factors(tiny_pipe.unet)], [1.0])
    gate = SliderGate(composition, 750, [999.0, 500.0])
    with pytest.raises(RuntimeError, match="planned"), gate.active():
        tiny_pipe(prompt="a", num_inference_steps=STEPS, height=32, width=32, callback_on_step_end=gate)
    assert composition.weight == 0.0
