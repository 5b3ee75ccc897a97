"""Text-slider YAML: original prompt files load unchanged, our document form, errors name key and file."""

from __future__ import annotations

import pytest

from sliders.config import PromptEntry, TextSliderConfig, TrainSettings, load_text_config
from sliders.presets import load_preset, preset_names

# The layout of the original implementation's prompts-xl.yaml, comments and all.
ORIGINAL = """\
- target: "male person" # what word for erasing the positive concept from
  positive: "male person, very old" # concept to erase
  unconditional: "male person, very young" # word to take the difference from the positive concept
  neutral: "male person" # starting point for conditioning the target
  action: "enhance" # erase or enhance
  guidance_scale: 4
  resolution: 512
  dynamic_resolution: false
  batch_size: 1
- target: "female person"
  positive: "female person, very old"
  unconditional: "female person, very young"
  action: "enhance"
  guidance_scale: 4
  resolution: 512
  dynamic_resolution: false
  dynamic_crops: false
  batch_size: 1
"""


def test_original_prompt_file_loads_unchanged(tmp_path):
    path = tmp_path / "prompts-xl.yaml"
    path.write_text(ORIGINAL)
    config = load_text_config(path)
    first, second = config.prompts
    assert first == PromptEntry("male person", "male person, very old", "male person, very young", "male person",
                                "enhance", 4.0, 512, False, 1)  # fmt: skip
    assert second.neutral == "female person"  # defaults to the target
    assert config.train == TrainSettings() and config.schedule == "fast" and config.bipolar


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "gpt.yaml"
    path.write_text(ORIGINAL.replace("guidance_scale: 4", "guidance: 4", 1))
    with pytest.raises(ValueError, match=r"gpt\.yaml.*prompts\[0\].*unknown key 'guidance'"):
        load_text_config(path)
    path.write_text("prompts:\n  - target: a\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match=r"gpt\.yaml.*unknown key 'learning_rate'"):
        load_text_config(path)


def test_document_form_with_our_fields(tmp_path):
    path = tmp_path / "slider.yaml"
    path.write_text(
        "concept: age\npreserve: 'male, female'\nrank: 8\nlr: 2e-4\nsteps: 50\nschedule: reference\n"
        "bipolar: false\nprompts:\n  - target: person\n    positive: old person\n    unconditional: young person\n"
    )
    config = load_text_config(path)
    assert config.preserve == ("male", "female") and config.concept_name == "age"
    assert config.train.rank == 8 and config.train.lr == 2e-4 and config.train.steps == 50
    assert config.schedule == "reference" and not config.bipolar
    assert config.prompts[0].positive == "old person" and config.prompts[0].guidance_scale == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- positive: x\n", "no 'target'"),
        ("- target: a\n  action: boost\n", "action: must be one of enhance, erase"),
        ("- target: a\n  resolution: 500\n", "resolution: must be a multiple of 8"),
        ("- target: a\n  guidance_scale: lots\n", "guidance_scale: expected a number"),
        ("- target: a\n  guidance_scale: true\n", "guidance_scale: expected a number, got True"),
        ("- target: a\n  batch_size: 1.5\n", "batch_size: expected an integer"),
        ("prompts: []\n", "'prompts' must be a non-empty list"),
        ("prompts:\n  - target: a\nschedule: slow\n", "schedule: unknown 'slow'"),
        ("prompts:\n  - target: a\ntargets: everything\n", "targets: unknown preset 'everything'"),
        ("just text\n", "expected a list of prompt entries"),
    ],
)
def test_invalid_files_give_actionable_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="bad.yaml") as error:
        load_text_config(path)
    assert message in str(error.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        load_text_config(tmp_path / "nothere.yaml")


def test_overrides_reach_train_settings_and_skip_none():
    config = TextSliderConfig(prompts=(PromptEntry("a"),)).with_overrides(rank=2, lr=None, bipolar=False)
    assert config.train.rank == 2 and config.train.lr == 2e-4 and not config.bipolar


@pytest.mark.parametrize("name", ["repair", "hands", "details"])
def test_presets_load(name):
    assert name in preset_names()
    config = load_preset(name)
    assert config.concept_name == name
    assert all(
        entry.action == "enhance" and entry.positive and entry.unconditional for entry in config.prompts
    )


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="choose one of details, hands, repair"):
        load_preset("faces")
