"""`concept-transfer train text|visual`: train a slider and write it as one .safetensors file.

`train` holds one sub-parser per slider kind: `text` here, `visual` in `train_visual`; the options
every kind shares come from `train_options`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

# Only torch-free modules at import time: building the parser must stay fast (`--help`).
from sliders.config import ACTIONS, PromptEntry, TextSliderConfig
from sliders.schedules import DEFAULT_SCHEDULE, SCHEDULES
from transfer.commands.arguments import positive_float, resolution
from transfer.commands.train_options import (
    add_common_options,
    check_placement,
    check_slider_outputs,
    load_pipeline,
    report,
    train_overrides,
)
from transfer.commands.train_visual import register_visual

# eta of a slider given by --target/--positive/--negative (a prompt file states its own).
TARGET_GUIDANCE = 4.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` and its kinds."""
    train = subparsers.add_parser(
        "train", help="train a slider from prompts (text) or before/after pairs (visual)"
    )
    kinds = train.add_subparsers(dest="kind", metavar="KIND", required=True)
    register_text(kinds)
    register_visual(kinds)


def register_text(kinds: argparse._SubParsersAction) -> None:
    """`train text`: a slider defined by prompts (DESIGN §3)."""
    parser = kinds.add_parser(
        "text",
        help="train a text slider from prompts, a YAML prompt file or a preset",
        description="Train a text Concept Slider: slider(+1) -> neutral + eta * (positive - negative). "
        "With --config or --preset, options left out keep the file's values (else the defaults shown).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="YAML: an original prompts file or our document form")
    source.add_argument("--preset", help="a shipped preset: repair, hands, details")
    source.add_argument("--target", help="the prompt the slider acts on (with --positive and --negative)")
    _add_prompt_options(parser)
    parser.add_argument(
        "--resolution",
        type=resolution,
        help="training resolution in pixels (default: the model's own, e.g. 1024 for SDXL, 64 for the toy)",
    )
    parser.add_argument(
        "--schedule", choices=sorted(SCHEDULES), help=f"how x_t is sampled (default {DEFAULT_SCHEDULE})"
    )
    parser.add_argument(
        "--no-bipolar", dest="bipolar", action="store_false", default=None, help="train +1 only"
    )
    add_common_options(parser)
    parser.set_defaults(func=run_text)


def _add_prompt_options(parser: argparse.ArgumentParser) -> None:
    """The prompts of a slider given on the command line, and what the slider does with them."""
    parser.add_argument("--positive", help="the concept to move toward")
    parser.add_argument("--negative", help="the concept to move away from (the original's 'unconditional')")
    parser.add_argument("--neutral", help="prompt of the base prediction (default: the target)")
    parser.add_argument("--action", choices=ACTIONS, help=f"default {PromptEntry.action}")
    parser.add_argument("--preserve", help="comma-separated attributes to preserve, e.g. 'male, female'")
    parser.add_argument("--concept", help="concept name recorded in the file (default: the positive prompt)")
    parser.add_argument(
        "--guidance-scale",
        type=positive_float,
        help=f"eta, the strength of the contrast (default {TARGET_GUIDANCE:g} with --target)",
    )


def _prompt_entry(args: argparse.Namespace) -> PromptEntry:
    if args.positive is None or args.negative is None:
        raise ValueError("--target needs --positive and --negative")
    given = {"action": args.action, "resolution": args.resolution}
    return PromptEntry(
        target=args.target,
        positive=args.positive,
        unconditional=args.negative,
        neutral=args.neutral,
        guidance_scale=TARGET_GUIDANCE if args.guidance_scale is None else args.guidance_scale,
        **{key: value for key, value in given.items() if value is not None},
    )


def _with_entry_overrides(config: TextSliderConfig, args: argparse.Namespace) -> TextSliderConfig:
    changes = {"guidance_scale": args.guidance_scale, "resolution": args.resolution, "action": args.action}
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    return replace(config, prompts=tuple(replace(entry, **changes) for entry in config.prompts))


def text_config_from_args(args: argparse.Namespace) -> TextSliderConfig:
    """The `TextSliderConfig` of a `train text` command line: file or preset, then the flags given."""
    from sliders.config import load_text_config

    if args.config is not None:
        config = load_text_config(args.config)
    elif args.preset is not None:
        from sliders.presets import load_preset

        config = load_preset(args.preset)
    else:
        config = TextSliderConfig(prompts=(_prompt_entry(args),))
    if args.config is not None or args.preset is not None:
        if args.positive or args.negative or args.neutral:
            raise ValueError(
                "--positive/--negative/--neutral go with --target, not with --config or --preset"
            )
        config = _with_entry_overrides(config, args)
    preserve = None if args.preserve is None else tuple(a.strip() for a in args.preserve.split(","))
    return config.with_overrides(
        concept=args.concept, preserve=preserve, schedule=args.schedule, bipolar=args.bipolar,
        **train_overrides(args),
    )  # fmt: skip


def run_text(args: argparse.Namespace) -> int:
    """Train a text slider as the arguments say; prints where the files went."""
    from sliders.text_slider import train_text_slider
    from transfer.commands.slider import calibrate_trained

    config = text_config_from_args(args)
    check_slider_outputs(args)
    check_placement(args)
    pipe = load_pipeline(args)
    out = train_text_slider(pipe, config, args.out, base_model=args.model, resume=args.resume,
                            show_progress=not args.quiet)  # fmt: skip
    report(out)
    if args.calibrate:
        calibrate_trained(pipe, out, args.model)
    return 0
