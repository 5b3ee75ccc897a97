"""`concept-transfer slider info|calibrate FILE`: describe a slider file; calibrate its scale on a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sliders.defaults import DEFAULT_RAW_SCALES, DEFAULT_UNIT_EFFECT
from transfer.commands.aliases import DEFAULT_MODEL
from transfer.commands.arguments import allow_negative_values
from transfer.commands.threads import add_threads_option

if TYPE_CHECKING:  # torch and peft load only when a command runs, not to build the parser
    from sliders.slider_file import SliderFile


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `slider` with its `info` and `calibrate` subcommands."""
    parser = subparsers.add_parser("slider", help="inspect and calibrate slider files")
    actions = parser.add_subparsers(dest="slider_command", metavar="ACTION", required=True)
    info = actions.add_parser(
        "info",
        help="print kind, concept, rank, alpha, targets, base model and all metadata of a slider file",
    )
    info.add_argument(
        "file", type=Path, help="slider file (.safetensors, or an original Concept Sliders .pt)"
    )
    info.set_defaults(func=run_info)
    register_calibrate(actions)


def describe(slider: SliderFile) -> list[str]:
    """The lines `slider info` prints."""
    alphas = sorted({f.alpha for f in slider.factors.values()})
    ranks = sorted({f.rank for f in slider.factors.values()})

    def shown(value: object) -> str:
        return "-" if value is None else str(value)

    lines = [
        f"file:        {slider.source_path}",
        f"format:      {slider.source_format}",
        f"kind:        {shown(slider.kind)}",
        f"concept:     {shown(slider.concept)}",
        f"rank:        {ranks[0] if len(ranks) == 1 else f'{ranks[0]}..{ranks[-1]} (per module)'}",
        f"alpha:       {f'{alphas[0]:g}' if len(alphas) == 1 else f'{alphas[0]:g}..{alphas[-1]:g} (per module)'}",
        f"targets:     {shown(slider.targets)}",
        f"base model:  {shown(slider.base_model)}",
        f"modules:     {len(slider.factors)}",
    ]
    if slider.start_noise is not None:
        lines.append(f"start_noise: {slider.start_noise:g}")
    if slider.scale_range is not None:
        lines.append(f"scales:      {slider.scale_range[0]:g} .. {slider.scale_range[1]:g}")
    lines += calibration_lines(slider)
    lines.append("metadata:" if slider.metadata else "metadata:    (none)")
    lines += [f"  {key} = {value}" for key, value in sorted(slider.metadata.items())]
    return lines


def run_info(args: argparse.Namespace) -> int:
    """Print the description of one slider file."""
    from sliders.slider_file import load_slider

    print("\n".join(describe(load_slider(args.file))))
    return 0


def calibration_lines(slider: SliderFile) -> list[str]:
    """The calibration part of `slider info` (what apply does with the file's scales)."""
    from transfer.calibrate import describe_calibration

    calibration = slider.calibration
    if calibration is None:
        return ["calibrated:  no (apply uses scales as raw weights; see `slider calibrate`)"]
    conditions = calibration.conditions
    return [
        f"calibrated:  yes, on {conditions.get('model') or '?'} ({len(conditions.get('prompts', []))} prompt(s) "
        f"x {len(conditions.get('seeds', []))} seed(s), {len(calibration.curve.raw_scales)} raw scales)",
        *describe_calibration(calibration),
    ]


def register_calibrate(actions: argparse._SubParsersAction) -> None:
    """Add `slider calibrate FILE --model M ...`."""
    parser = actions.add_parser(
        "calibrate",
        help="measure a slider's effect over scales and write a user-scale calibration into the file",
        description="Render the slider at raw scales on a few prompts and seeds, measure how much each "
        "changes the image (mean |dz| of the final latents against scale 0), find the usable range (before "
        "the images break or stop changing) and write a map user scale -> raw weight into the file's "
        "metadata, so that user scale 1 is the same amount of change for every slider. The tensors stay "
        "byte-identical; `apply` then reads scales as user scales (--raw-scale opts out).",
    )
    parser.add_argument("file", type=Path, help="slider file (.safetensors; a .pt needs --out)")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="the model to measure on (default %(default)s)"
    )
    parser.add_argument("--prompt", action="append", default=None, metavar="P", help="repeat for several")
    parser.add_argument("--prompts", type=Path, default=None, metavar="FILE", help="one prompt per line")
    parser.add_argument("--seeds", default="0,1,2,3", metavar="LIST", help="default 0,1,2,3")
    parser.add_argument(
        "--scales",
        default=",".join(f"{s:g}" for s in DEFAULT_RAW_SCALES),
        metavar="LIST",
        help="raw scales to probe (default %(default)s)",
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--size", default=None, metavar="W[xH]", help="default: the model's native size")
    gate = parser.add_mutually_exclusive_group()
    gate.add_argument("--start-noise", type=float, default=None, metavar="T", help="default: the slider's")
    gate.add_argument("--start-fraction", type=float, default=None, metavar="F")
    parser.add_argument(
        "--unit-effect",
        type=float,
        default=DEFAULT_UNIT_EFFECT,
        metavar="D",
        help="the change (mean |dz|) that user scale 1 means (default %(default)s; keep it the same for "
        "sliders you want comparable)",
    )
    parser.add_argument("--batch", type=int, default=8, help="images per pipeline call (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="write a calibrated copy here instead")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None)
    allow_negative_values(parser)  # `--scales -8,-4,4,8` is a value
    add_threads_option(parser)
    parser.set_defaults(func=run_calibrate)


def calibration_settings_from_args(args: argparse.Namespace):
    """The validated `CalibrationSettings` of a command line."""
    from transfer.calibrate import CalibrationSettings
    from transfer.commands.apply import parse_floats, parse_ints, parse_size
    from transfer.commands.transfer_cmd import read_prompts
    from transfer.gate import GateSpec

    if args.prompt and args.prompts:
        raise ValueError("--prompt and --prompts: give one, not both")
    prompts = tuple(args.prompt) if args.prompt else read_prompts(args.prompts) if args.prompts else None
    width, height = parse_size(args.size) if args.size else (None, None)
    return CalibrationSettings(
        prompts=prompts,
        seeds=parse_ints(args.seeds, "--seeds"),
        raw_scales=parse_floats(args.scales, "--scales"),
        steps=args.steps,
        guidance=args.guidance,
        width=width,
        height=height,
        gate=GateSpec(start_noise=args.start_noise, start_fraction=args.start_fraction),
        unit_effect=args.unit_effect,
        batch=args.batch,
    )


def run_calibrate(args: argparse.Namespace) -> int:
    """Load the model, measure and fit the slider, write the calibration, print it."""
    from transfer.calibrate import calibrate_slider
    from transfer.commands.aliases import model_aliases
    from transfer.cpu_threads import configure_threads, is_small_unet
    from transfer.sdxl import load_sdxl

    settings = calibration_settings_from_args(args)
    if not args.file.is_file():
        raise FileNotFoundError(f"{args.file}: no such slider file")
    if args.out is not None and args.out.suffix != ".safetensors":
        raise ValueError(f"--out {args.out}: a slider file must end in .safetensors")
    print(f"loading {args.model} ...", flush=True)
    pipe = load_sdxl(args.model, device=args.device, dtype=args.dtype, aliases=model_aliases())
    configure_threads(args.threads, pipe.unet.device, is_small_unet(pipe.unet))
    pipe.set_progress_bar_config(disable=True)
    calibrate_slider(pipe, args.file, settings, out=args.out, model=args.model)
    print(f"calibration written to {args.out or args.file}")
    return 0


def trained_calibration_settings():
    """The settings of `train ... --calibrate`: `slider calibrate`'s defaults."""
    from transfer.calibrate import CalibrationSettings

    return CalibrationSettings()


def calibrate_trained(pipe, path: Path, model: str) -> None:
    """`train ... --calibrate`: calibrate a freshly trained slider on the pipeline it was trained on."""
    from transfer.calibrate import calibrate_slider

    pipe.to(pipe.unet.device)  # training moved the text encoders and the VAE off the accelerator
    pipe.set_progress_bar_config(disable=True)
    calibrate_slider(pipe, path, trained_calibration_settings(), model=model)
