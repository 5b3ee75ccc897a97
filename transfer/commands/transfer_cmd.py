"""`concept-transfer transfer`: StyleGAN3 style edit → pairs → visual slider → sweep, in one command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `transfer` subcommand."""
    parser = subparsers.add_parser(
        "transfer",
        help="GAN style channel -> pair corpus -> visual slider -> sweep over non-face prompts",
        description="Mine before/after pairs from a StyleGAN3 style edit, train a visual slider on them, and "
        "sweep it over prompts that are not faces. Every stage keeps its output in DIR (corpus/, "
        "slider.safetensors, sweep/) and is skipped when that output exists; --redo re-runs stages.",
    )
    parser.add_argument("--gan", required=True, help="StyleGAN3 .pkl, our .safetensors/.pt export, or 'toy'")
    parser.add_argument("--layer", help="style layer: index (0 = L0) or NVlabs name, e.g. L4_84_1024")
    parser.add_argument("--channel", type=int, help="style channel within --layer")
    parser.add_argument("--direction", type=Path, help="a direction file from `concept-transfer directions`")
    parser.add_argument("--index", type=int, default=0, help="entry of --direction to use (default 0)")
    parser.add_argument("--model", required=True, help="SDXL hub id, diffusers folder, single file, or 'toy'")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--pairs", type=int, default=64, help="seeds to mine (default 64)")
    parser.add_argument("--delta", type=float, default=5.0, help="edit size in channel std units (default 5)")
    parser.add_argument("--levels", default="1", help="edit levels, e.g. 1,2 (default 1)")
    parser.add_argument("--truncation", type=float, default=0.7, help="psi (default 0.7)")
    parser.add_argument("--symmetric", action="store_true", help="before = -delta instead of the original")
    parser.add_argument("--stats-samples", type=int, default=10_000, help="samples for channel std (10000)")
    parser.add_argument("--resolution", type=int, help="pair and training resolution (default: the GAN's)")
    parser.add_argument("--steps", type=int, default=500, help="training steps (default 500)")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0, help="seed of mining and training (default 0)")
    parser.add_argument(
        "--prompts", type=Path, help="text file, one sweep prompt per line (default: 4 non-face prompts)"
    )
    parser.add_argument("--scales", default="-2,-1,0,1,2", help="sweep scales (default -2,-1,0,1,2)")
    parser.add_argument("--seeds", default="0,1", help="sweep seeds (default 0,1)")
    parser.add_argument(
        "--sample-steps", type=int, default=30, help="sampling steps of the sweep (default 30)"
    )
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--start-noise", type=float, help="gate timestep (default: the slider's, 750)")
    parser.add_argument("--size", type=int, help="sweep image size (default: the model's)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument(
        "--redo", default="", help="stages to re-run even if their output exists: mine,train,sweep"
    )
    parser._negative_number_matcher = re.compile(r"^-\.?\d")  # `--scales -2,-1,...` is a value
    parser.set_defaults(func=run_transfer_command)


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
    from sliders.config import TrainSettings
    from sliders.visual_slider import VisualSliderConfig
    from stylegan_bridge.mining import MiningConfig, parse_levels
    from transfer.commands.aliases import gan_aliases, model_aliases
    from transfer.commands.apply import parse_floats, parse_ints
    from transfer.gate import GateSpec
    from transfer.recipe import DEFAULT_PROMPTS, TransferPlan

    mining = MiningConfig(
        pairs=args.pairs,
        delta=args.delta,
        levels=parse_levels(args.levels),
        psi=args.truncation,
        seed=args.seed,
        resolution=args.resolution,
        symmetric=args.symmetric,
    )
    train = TrainSettings(steps=args.steps, rank=args.rank, alpha=args.alpha, lr=args.lr, seed=args.seed)
    return TransferPlan(
        gan=args.gan,
        model=args.model,
        out=args.out,
        layer=args.layer,
        channel=args.channel,
        direction=args.direction,
        direction_index=args.index,
        mining=mining,
        stats_samples=args.stats_samples,
        slider=VisualSliderConfig(resolution=args.resolution, train=train),
        prompts=read_prompts(args.prompts) if args.prompts else DEFAULT_PROMPTS,
        sweep_scales=parse_floats(args.scales, "--scales"),
        seeds=parse_ints(args.seeds, "--seeds"),
        sample_steps=args.sample_steps,
        guidance=args.guidance,
        gate=GateSpec(start_noise=args.start_noise),
        size=args.size,
        device=args.device,
        gan_aliases=gan_aliases(),
        model_aliases=model_aliases(),
        redo=tuple(s.strip() for s in args.redo.split(",") if s.strip()),
    )


def run_transfer_command(args: argparse.Namespace) -> int:
    """Run the three stages and print where their outputs are."""
    from transfer.recipe import run_transfer

    outputs = run_transfer(plan_from_args(args))
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0
