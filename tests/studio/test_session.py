"""A tab's state, the checks on a job's values, and the command that reproduces a job."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from transfer.gate import GateSpec
from transfer.studio.cards import SliderCard, provenance
from transfer.studio.command import apply_argv, apply_command
from transfer.studio.job import Job, SliderSetting, parse_scales, parse_seed
from transfer.studio.session import MAX_SLIDERS, SessionState


def card(name: str, low: float = -3.0, high: float = 3.0) -> SliderCard:
    return SliderCard(Path(f"/s/{name}.safetensors"), name, "text", "prompts", (low, high), 10)


def test_each_state_has_its_own_token_panel_and_results():
    first, second = SessionState(), SessionState()
    first.add(card("eyes"), 1.0)
    assert first.token != second.token and second.entries == []
    assert [first.next_result(), first.next_result(), second.next_result()] == [1, 2, 1]


def test_the_panel_adds_syncs_clamps_and_orders_sliders():
    state = SessionState()
    state.add(card("eyes", -2, 2), 5.0)
    state.add(card("smile"))
    assert state.entries[0].scale == 2.0  # clamped to the file's range
    with pytest.raises(ValueError, match="already in the panel"):
        state.add(card("eyes"))
    state.sync([-9.0, "nan?"], [True, False])
    assert [e.scale for e in state.entries] == [-2.0, 0.0] and not state.entries[1].enabled
    assert [s.name for s in state.active()] == ["eyes"]
    state.sync([1.0, 0.5], [True, True])
    assert [s.name for s in state.swept_first(1)] == ["smile", "eyes"]
    assert state.remove(0).card.name == "eyes" and len(state.entries) == 1
    with pytest.raises(ValueError, match="no slider in row 5"):
        state.remove(4)


def test_the_panel_is_bounded_and_compare_needs_a_switched_on_slider():
    state = SessionState()
    for index in range(MAX_SLIDERS):
        state.add(card(f"s{index}"))
    with pytest.raises(ValueError, match="remove one first"):
        state.add(card("one more"))
    state.entries[2].enabled = False
    with pytest.raises(ValueError, match="switched on"):
        state.swept_first(2)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"prompt": "  "}, "type a prompt"),
        ({"steps": 0}, "steps"),
        ({"width": 60}, "multiple of 8"),
        ({"guidance": float("nan")}, "guidance"),
        ({"kind": "compare"}, "compare"),
        ({"kind": "edit"}, "upload a picture"),
        ({"kind": "edit", "image": Path("x.png"), "strength": 0.0}, "strength"),
        ({"sweep_scales": (1.0,)}, "belong to compare"),
    ],
)
def test_a_job_refuses_bad_values_with_a_message(changes, words):
    with pytest.raises(ValueError, match=words):
        Job(**{"kind": "generate", "prompt": "a face", "seed": 0, **changes})


def test_page_values_parse_or_fail_with_a_message():
    assert parse_seed(7.0) == 7 and parse_seed("12") == 12
    for bad in (1.5, -1, "x", None, float("inf")):
        with pytest.raises(ValueError, match="seed"):
            parse_seed(bad)
    assert parse_scales(" -2, 0,1.5 ") == (-2.0, 0.0, 1.5)
    with pytest.raises(ValueError, match="scales"):
        parse_scales("1,,two")


def _apply_args(argv: list[str]) -> argparse.Namespace:
    from transfer.cli import build_parser

    return build_parser().parse_args(argv)


def test_the_command_parses_back_to_the_job_s_settings(tmp_path):
    from transfer.apply import SliderSpec, parse_slider_spec
    from transfer.commands.apply import settings_from_args

    odd = tmp_path / "my sliders" / "a:b.safetensors"
    odd.parent.mkdir()
    odd.write_bytes(b"")
    job = Job(
        kind="compare", prompt="-a face, 'quoted'", seed=42, negative_prompt="blurry", steps=7, guidance=3.5,
        width=64, height=48, gate=GateSpec(start_noise=0.0), sweep_scales=(-2.0, 0.1, 1e-3),
        sliders=(SliderSetting(odd, "a", -1.25), SliderSetting(Path("/s/b.safetensors"), "b", 0.3)),
    )  # fmt: skip
    args = _apply_args(apply_argv(job, "toy", "out dir"))
    settings = settings_from_args(args)
    assert settings.prompts == (job.prompt,) and settings.negative_prompt == "blurry"
    assert settings.seeds == (42,) and settings.steps == 7 and settings.guidance == 3.5
    assert (settings.width, settings.height) == (64, 48) and settings.gate == GateSpec(start_noise=0.0)
    assert settings.sweep_scales == (-2.0, 0.1, 1e-3) and args.out == Path("out dir") and args.model == "toy"
    specs = [parse_slider_spec(s) for s in args.slider]
    assert specs == [SliderSpec(odd, -1.25), SliderSpec(Path("/s/b.safetensors"), 0.3)]
    assert apply_command(job, "toy", "o").startswith("concept-transfer apply --model toy ")


def test_an_edit_command_names_the_saved_picture_and_strength():
    job = Job(
        kind="edit",
        prompt="a face",
        seed=1,
        image=Path("/o/0001-input.png"),
        strength=0.45,
        width=64,
        height=64,
    )
    args = _apply_args(apply_argv(job, "toy", "o"))
    assert args.image == Path("/o/0001-input.png") and args.strength == 0.45 and args.start_noise is None


def test_provenance_names_prompts_or_the_gan_channel():
    prompts = '{"entries": [{"positive": "a face, smiling", "unconditional": "a face, frowning"}]}'
    assert (
        provenance({"concept_transfer.prompts": prompts})
        == "prompts: 'a face, smiling' vs 'a face, frowning'"
    )
    corpus = '{"pairs": 64, "provenance": "{\\"edit\\": {\\"layer\\": \\"L3\\", \\"channel\\": 5}}"}'
    assert provenance({"concept_transfer.corpus": corpus}) == "GAN layer L3 channel 5, 64 pairs"
    assert provenance({"concept_transfer.prompts": "{broken"}) == "provenance not recorded"
