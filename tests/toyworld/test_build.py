"""`toyworld build`: configuration, stage order checks and the command-line mapping."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from toyworld import assets_dir
from toyworld.build import STAGES, BuildConfig, run_build
from toyworld.commands import build as command


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_defaults_come_from_the_config():
    config = command.config_from_args(_parse(["toyworld", "build", "--work", "w"]))
    assert config == BuildConfig(out=assets_dir(), work=Path("w"))
    assert config.stages == STAGES


def test_steps_applies_to_the_single_stage():
    config = command.config_from_args(_parse(["toyworld", "build", "--stage", "unet", "--steps", "7"]))
    assert config.stages == ("unet",) and config.unet_steps == 7
    assert config.vae_steps == BuildConfig(out=Path("o"), work=Path("w")).vae_steps
    with pytest.raises(ValueError, match="--steps needs --stage"):
        command.config_from_args(_parse(["toyworld", "build", "--steps", "7"]))


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="unet_steps"):
        BuildConfig(out=Path("o"), work=Path("w"), unet_steps=0)
    with pytest.raises(ValueError, match="unknown toyworld stage"):
        BuildConfig(out=Path("o"), work=Path("w"), stages=("paint",))


def test_a_stage_without_its_inputs_says_which_stage_is_missing(tmp_path):
    config = BuildConfig(out=tmp_path / "out", work=tmp_path / "work", stages=("unet",))
    with pytest.raises(ValueError, match="needs stage 'vae'"):
        run_build(config)
