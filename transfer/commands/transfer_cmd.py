"""`concept-transfer transfer`: StyleGAN3 style edit → pairs → visual slider → sweep, in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from sliders.config import TrainSettings
from sliders.defaults import START_NOISE
from transfer.commands.arguments import (
    allow_negative_values,
    non_negative_float,
    non_negative_int,
    parse_floats,
    parse_ints,
    positive_float,
    positive_int,
    resolution,
    timestep,
)
from transfer.commands.mine import add_mining_arguments, mining_config_from_args
from transfer.commands.outputs import check_output_folder
from transfer.commands.threads import add_threads_option
from transfer.gate import GateSpec
from transfer.sweep_settings import SweepSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `transfer` subcommand."""
    parser = subparsers.add_parser(
        "transfer",
        help="GAN style channel -> pair corpus -> visual slider -> sweep over non-face prompts",
        description="Mine before/after pairs from a StyleGAN3 style edit, train a visual slider on them, and "
        "sweep it over prompts that are not faces. Every stage keeps its output in DIR (corpus/, "
        "slider.safetensors, sweep/) and is skipped when that output exists; --redo re-runs stages.",
    )
    allow_negative_values(parser)  # `--scales -2,-1,...` is a value
    _add_edit_options(parser)
    add_mining_arguments(parser, pairs=64)
    _add_training_options(parser)
    _add_sweep_options(parser)
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    add_threads_option(parser)
    parser.add_argument(
        "--redo", default="", help="stages to re-run even if their output exists: mine,train,sweep"
    )
    parser.set_defaults(func=run_transfer_command)


def _add_edit_options(parser: argparse.ArgumentParser) -> None:
    """The generator and the style edit: a channel of a layer, or a direction from a file."""
    parser.add_argument("--gan", required=True, help="StyleGAN3 .pkl, our .safetensors/.pt export, or 'toy'")
    parser.add_argument("--layer", help="style layer: index (0 = L0) or NVlabs name, e.g. L4_84_1024")
    parser.add_argument("--channel", type=non_negative_int, help="style channel within --layer")
    parser.add_argument("--direction", type=Path, help="a direction file from `concept-transfer directions`")
    parser.add_argument(
        "--index", type=non_negative_int, default=0, help="entry of --direction to use (default %(default)s)"
    )
    parser.add_argument(
        "--stats-samples",
        type=positive_int,
        default=10_000,
        help="samples for channel std (default %(default)s)",
    )


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """The SDXL model and the visual slider's training."""
    parser.add_argument("--model", required=True, help="SDXL hub id, diffusers folder, single file, or 'toy'")
    parser.add_argument(
        "--resolution", type=resolution, help="pair and training resolution (default: the GAN's)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=500, help="training steps (default %(default)s)"
    )
    parser.add_argument(
        "--rank", type=positive_int, default=TrainSettings.rank, help="LoRA rank (default %(default)s)"
    )
    parser.add_argument(
        "--alpha", type=positive_float, default=TrainSettings.alpha, help="LoRA alpha (default %(default)s)"
    )
    parser.add_argument(
        "--lr", type=positive_float, default=TrainSettings.lr, help="learning rate (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of mining and training (default %(default)s)"
    )


def _add_sweep_options(parser: argparse.ArgumentParser) -> None:
    """The sweep over prompts that are not faces."""
    parser.add_argument(
        "--prompts", type=Path, help="text file, one sweep prompt per line (default: 4 non-face prompts)"
    )
    parser.add_argument("--scales", default="-2,-1,0,1,2", help="sweep scales (default %(default)s)")
    parser.add_argument("--seeds", default="0,1", help="sweep seeds (default %(default)s)")
    parser.add_argument(
        "--sample-steps",
        type=positive_int,
        default=SweepSettings.steps,
        help="sampling steps of the sweep (default %(default)s)",
    )
    parser.add_argument(
        "--guidance",
        type=non_negative_float,
        default=SweepSettings.guidance,
        help="classifier-free guidance (default %(default)s)",
    )
    parser.add_argument(
        "--start-noise", type=timestep, help=f"gate timestep (default: the slider's, else {START_NOISE:g})"
    )
    parser.add_argument("--size", type=resolution, help="sweep image size (default: the model's)")


def read_prompts(path: Path) -> tuple[str, ...]:
    """Non-empty, non-comment lines of a prompt file."""
    if not path.is_file():
        raise FileNotFoundError(f"--prompts {path}: no such file")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = tuple(line for line in lines if line and not line.startswith("#"))
    if not prompts:
        raise ValueError(f"--prompts {path}: no prompt in the file")
    return prompts


def plan_from_args(args: argparse.Namespace):
    """The validated `TransferPlan` of a command line."""
    from sliders.config import VisualSliderConfig
    from transfer.commands.aliases import gan_aliases, model_aliases
    from transfer.recipe import DEFAULT_PROMPTS, TransferPlan

    train = TrainSettings(steps=args.steps, rank=args.rank, alpha=args.alpha, lr=args.lr, seed=args.seed)
    return TransferPlan(
        gan=args.gan,
        model=args.model,
        out=args.out,
        layer=args.layer,
        channel=args.channel,
        direction=args.direction,
        direction_index=args.index,
        mining=mining_config_from_args(args),
        stats_samples=args.stats_samples,
        slider=VisualSliderConfig(resolution=args.resolution, train=train),
        prompts=read_prompts(args.prompts) if args.prompts else DEFAULT_PROMPTS,
        sweep_scales=parse_floats(args.scales, "--scales"),
        seeds=parse_ints(args.seeds, "--seeds", minimum=0),
        sample_steps=args.sample_steps,
        guidance=args.guidance,
        gate=GateSpec(start_noise=args.start_noise),
        size=args.size,
        device=args.device,
        gan_aliases=gan_aliases(),
        model_aliases=model_aliases(),
        redo=tuple(s.strip() for s in args.redo.split(",") if s.strip()),
        threads=args.threads,
    )


def run_transfer_command(args: argparse.Namespace) -> int:
    """Run the three stages and print where their outputs are."""
    from transfer.recipe import run_transfer

    plan = plan_from_args(args)
    check_output_folder(args.out, "--out")  # the stages keep their outputs there, and skip what is done
    outputs = run_transfer(plan)
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0
