"""`concept-transfer apply`: render prompts with sliders at signed scales, as single images or sweeps."""

from __future__ import annotations

import argparse
from pathlib import Path

from sliders.defaults import SCALE, START_NOISE
from transfer.commands.aliases import DEFAULT_MODEL
from transfer.commands.arguments import (
    allow_negative_values,
    fraction,
    non_negative_float,
    parse_floats,
    parse_ints,
    positive_int,
    timestep,
)
from transfer.commands.outputs import check_output_folder, refuse_to_replace
from transfer.commands.threads import add_threads_option
from transfer.edit import METHODS as INVERT_METHODS
from transfer.gate import GateSpec
from transfer.sweep_settings import SweepSettings


def parse_size(text: str) -> tuple[int, int]:
    """Parse `W` (square) or `WxH` into (width, height)."""
    parts = text.lower().split("x")
    try:
        numbers = [int(part) for part in parts]
    except ValueError as error:
        raise ValueError(f"--size {text}: expected W or WxH, e.g. 1024 or 1024x768") from error
    if len(numbers) not in (1, 2) or min(numbers) < 8 or any(n % 8 for n in numbers):
        raise ValueError(f"--size {text}: expected W or WxH with multiples of 8, e.g. 1024 or 1024x768")
    return (numbers[0], numbers[-1])


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `apply` subcommand."""
    parser = subparsers.add_parser(
        "apply",
        help="render prompts with sliders (single images, sweeps, image edits)",
        description="Render SDXL images with sliders at signed scales, off for the first steps (the gate). "
        "With --scales the first slider is swept (grid columns) and the others are held at their scales.",
    )
    allow_negative_values(parser)  # `--scales -2,-1,0,1,2`, `--slider x.safetensors:-1`
    _add_slider_options(parser)
    _add_gate_options(parser)
    _add_sampling_options(parser)
    _add_model_options(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--force", action="store_true", help="write into --out even if it holds files")
    parser.set_defaults(func=run_apply)


def _add_slider_options(parser: argparse.ArgumentParser) -> None:
    """Which sliders, at which scales; the sweep."""
    parser.add_argument(
        "--slider",
        action="append",
        default=[],
        metavar="FILE[:SCALE]",
        help=f"a slider file with a signed scale (default {SCALE:g}); repeat for several. A calibrated file "
        "(`slider calibrate`) reads the scale as a user scale: 1 is the same amount of change for every slider",
    )
    parser.add_argument(
        "--raw-scale",
        action="store_true",
        help="ignore the sliders' calibrations: every scale is the raw adapter weight",
    )
    parser.add_argument(
        "--scales", metavar="LIST", help="sweep the first slider over these scales, e.g. -2,-1,0,1,2"
    )
    parser.add_argument(
        "--composition",
        choices=["fused", "lowrank", "peft"],
        help="how sliders combine: fused (default; no per-step cost), lowrank (default with --offload: "
        "fused weights cannot follow offloading), peft (the reference path)",
    )


def _add_gate_options(parser: argparse.ArgumentParser) -> None:
    """When the sliders switch on: a timestep or a fraction of the steps (default: the sliders' own)."""
    gate = parser.add_mutually_exclusive_group()
    gate.add_argument(
        "--start-noise",
        type=timestep,
        metavar="T",
        help=f"sliders off while the timestep is above T (0-1000; default: the first slider's "
        f"recommendation, else {START_NOISE:g})",
    )
    gate.add_argument(
        "--start-fraction",
        type=fraction,
        metavar="F",
        help="sliders off for the first fraction F of the steps",
    )


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Prompts, seeds, steps, guidance, size, and the picture to edit."""
    parser.add_argument(
        "--prompt", action="append", metavar="P", help="repeat for several (optional with --invert)"
    )
    parser.add_argument("--negative-prompt", metavar="N")
    parser.add_argument(
        "--seeds", default="0", metavar="LIST", help="grid rows, e.g. 0,1 (default %(default)s)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=SweepSettings.steps, help="sampling steps (default %(default)s)"
    )
    parser.add_argument(
        "--guidance",
        type=non_negative_float,
        default=SweepSettings.guidance,
        help="classifier-free guidance (default %(default)s)",
    )
    parser.add_argument("--size", metavar="W[xH]", help="image size (default: the model's native size)")
    parser.add_argument(
        "--image",
        type=Path,
        metavar="IN.png",
        help="edit this picture: by inversion with --invert, else img2img",
    )
    parser.add_argument(
        "--invert",
        metavar="{edit-friendly,ddim}",
        help="edit --image from its inversion: scale 0 gives the photo back and the gate (--start-noise) "
        "decides what may change; edit-friendly (DDPM noise maps, exact) or ddim (deterministic, "
        "approximate). The photo's centre square is edited at the model's size (or a square --size). "
        "Without --invert, --image is edited by img2img, the fallback: faster, but the photo is re-noised "
        "to --strength and the structure it loses is gone",
    )
    parser.add_argument(
        "--inversion-cache",
        type=Path,
        metavar="DIR",
        help="with --invert: keep inversions here, so later runs on the same photo, model and settings "
        "skip them (default: OUT/inversion-cache)",
    )
    parser.add_argument(
        "--strength",
        type=fraction,
        metavar="S",
        help=f"img2img (--image without --invert): how much of the picture is re-noised (0-1, default "
        f"{SweepSettings.strength:g})",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The model and where it runs."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="hub id, diffusers folder, single .safetensors/.ckpt file, or 'toy' (default %(default)s)",
    )
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument(
        "--dtype", choices=["fp32", "fp16", "bf16"], help="default: bf16 on CUDA, fp16 on MPS, fp32 on CPU"
    )
    parser.add_argument("--offload", action="store_true", help="CPU offload for GPUs with little memory")
    add_threads_option(parser)


def settings_from_args(args: argparse.Namespace):
    """Build the validated `SweepSettings` from parsed arguments."""
    if args.strength is not None and args.image is None:
        raise ValueError("--strength: only meaningful with --image")
    _check_invert_args(args)
    if args.offload and args.composition == "fused":
        # Offloading moves the UNet's weights between devices inside each image; fused weights cannot follow.
        raise ValueError("--composition fused: cannot be used with --offload; use lowrank or peft")
    width, height = parse_size(args.size) if args.size else (None, None)
    return SweepSettings(
        prompts=tuple(args.prompt or [""]),
        seeds=parse_ints(args.seeds, "--seeds", minimum=0),
        sweep_scales=None if args.scales is None else parse_floats(args.scales, "--scales"),
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        guidance=args.guidance,
        width=width,
        height=height,
        gate=GateSpec(start_noise=args.start_noise, start_fraction=args.start_fraction),
        image=args.image,
        strength=SweepSettings.strength if args.strength is None else args.strength,
        method=args.composition or ("lowrank" if args.offload else "fused"),
        model=args.model,
        invert=args.invert,
        inversion_cache=args.inversion_cache,
    )


def _check_invert_args(args: argparse.Namespace) -> None:
    """The options of a photo edit by inversion, and the prompt that only such an edit may leave out."""
    if args.invert is not None and args.invert not in INVERT_METHODS:
        raise ValueError(f"--invert {args.invert}: unknown method; choose {' or '.join(INVERT_METHODS)}")
    if args.strength is not None and args.invert:
        raise ValueError(
            "--strength: img2img only; with --invert the gate (--start-noise) decides what changes"
        )
    if args.inversion_cache is not None and not args.invert:
        raise ValueError("--inversion-cache: only meaningful with --invert")
    if not args.prompt and not args.invert:
        raise ValueError("--prompt: required (only an edit with --invert may leave it out)")


def check_calibration(path: Path) -> None:
    """Read a slider file's calibration header now, so a malformed one fails before the model loads."""
    from sliders.calibration import Calibration
    from sliders.slider_file import read_slider_header

    Calibration.from_metadata(read_slider_header(path), path)


def check_inputs(args: argparse.Namespace, settings) -> list:
    """Everything that can be checked before the (slow) model load: sliders, picture, output folder."""
    from transfer.apply import check_slider_file, load_image, parse_slider_spec
    from transfer.edit.photo import load_photo
    from transfer.sdxl import choose_placement

    specs = [parse_slider_spec(spec) for spec in args.slider]
    for spec in specs:
        check_slider_file(spec.path)
        if not args.raw_scale:
            check_calibration(spec.path)
    if settings.sweep_scales is not None and not specs:
        raise ValueError("--scales: a sweep needs at least one --slider")
    if settings.invert is not None:
        load_photo(settings.image, 8)  # not an image, a bomb or a missing file
    elif settings.image is not None:
        load_image(settings.image)  # a missing or unreadable picture
    check_output_folder(args.out, "--out")
    refuse_to_replace(args.out, "--out", args.force)
    choose_placement(args.device, args.dtype)
    return specs


def run_apply(args: argparse.Namespace) -> int:
    """Load the model and sliders, render, and print where the outputs are."""
    from tqdm import tqdm

    from transfer.apply import load_sliders
    from transfer.commands.aliases import model_aliases
    from transfer.cpu_threads import configure_threads, is_small_unet
    from transfer.sdxl import load_sdxl
    from transfer.sweep import run_sweep

    settings = settings_from_args(args)
    specs = check_inputs(args, settings)
    print(f"loading {args.model} ...", flush=True)
    pipe = load_sdxl(
        args.model, device=args.device, dtype=args.dtype, offload=args.offload, aliases=model_aliases()
    )
    configure_threads(args.threads, pipe.unet.device, is_small_unet(pipe.unet))
    sliders = load_sliders(specs, pipe.unet, use_calibration=not args.raw_scale)
    for index, slider in enumerate(sliders):
        swept = settings.sweep_scales if index == 0 and settings.sweep_scales is not None else None
        print(slider.scale_note(swept) + (" (--raw-scale)" if args.raw_scale else ""), flush=True)
    summary = run_sweep(pipe, sliders, settings, args.out, on_grid=lambda path: tqdm.write(f"grid: {path}"))
    if "photo" in summary:
        print(summary["photo"]["statement"])
    print(f"{len(summary['images'])} images in {args.out / 'images'}; summary: {args.out / 'summary.json'}")
    return 0
