"""`concept-transfer train text|...`: train a slider and write it as one .safetensors file.

`train` holds one sub-parser per slider kind; options every kind shares (model, steps, output, LoRA
shape, optimizer, seed, checkpointing, device) are added by `add_common_options`, so `train visual`
is a sibling parser with its own data options and a `run_visual`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

# Only torch-free modules at import time: building the parser must stay fast (`--help`).
from sliders.schedules import DEFAULT_SCHEDULE, SCHEDULES

if TYPE_CHECKING:
    from sliders.config import PromptEntry, TextSliderConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` and its kinds."""
    train = subparsers.add_parser(
        "train", help="train a slider from prompts (text) or before/after pairs (visual)"
    )
    kinds = train.add_subparsers(dest="kind", metavar="KIND", required=True)
    register_text(kinds)
    from transfer.commands.train_visual import register_visual  # imports add_common_options from here

    register_visual(kinds)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every slider kind shares; defaults None so a config file's values are kept unless given."""
    parser.add_argument(
        "--model", required=True, help="SDXL hub id, diffusers folder, single .safetensors, or 'toy'"
    )
    parser.add_argument("--steps", type=int, help="training steps (default: config, else 1000)")
    parser.add_argument("--out", required=True, type=Path, help="output slider file (.safetensors)")
    parser.add_argument("--rank", type=int, help="LoRA rank (default 4)")
    parser.add_argument(
        "--alpha", type=float, help="LoRA alpha (default 1; the update is scaled by alpha/rank)"
    )
    parser.add_argument("--targets", help="LoRA target preset: noxattn (default), xattn, selfattn, full")
    parser.add_argument("--lr", type=float, help="AdamW learning rate (default 2e-4)")
    parser.add_argument("--seed", type=int, help="seed; the same seed gives the same slider (default 0)")
    parser.add_argument(
        "--checkpoint-every", type=int, metavar="K", help="checkpoint every K steps (0: only on interrupt)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from <out stem>.ckpt exactly")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", default=None, help="trade compute for memory"
    )
    parser.add_argument(
        "--mixed-precision", choices=["auto", "no", "fp16", "bf16"], help="default: the UNet dtype"
    )
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best available)")
    parser.add_argument(
        "--dtype", choices=["fp32", "fp16", "bf16"], help="model dtype (default: bf16 on CUDA, fp32 on CPU)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def register_text(kinds: argparse._SubParsersAction) -> None:
    """`train text`: a slider defined by prompts (DESIGN §3)."""
    parser = kinds.add_parser(
        "text",
        help="train a text slider from prompts, a YAML prompt file or a preset",
        description="Train a text Concept Slider: slider(+1) -> neutral + eta * (positive - negative).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="YAML: an original prompts file or our document form")
    source.add_argument("--preset", help="a shipped preset: repair, hands, details")
    source.add_argument("--target", help="the prompt the slider acts on (with --positive and --negative)")
    parser.add_argument("--positive", help="the concept to move toward")
    parser.add_argument("--negative", help="the concept to move away from (the original's 'unconditional')")
    parser.add_argument("--neutral", help="prompt of the base prediction (default: the target)")
    parser.add_argument("--action", choices=["enhance", "erase"], default=None, help="default enhance")
    parser.add_argument("--preserve", help="comma-separated attributes to preserve, e.g. 'male, female'")
    parser.add_argument("--concept", help="concept name recorded in the file (default: the positive prompt)")
    parser.add_argument(
        "--guidance-scale", type=float, help="eta (default 4 with --target; config otherwise)"
    )
    parser.add_argument("--resolution", type=int, help="training resolution in pixels (default 512)")
    parser.add_argument(
        "--schedule", choices=sorted(SCHEDULES), help=f"how x_t is sampled (default {DEFAULT_SCHEDULE})"
    )
    parser.add_argument(
        "--no-bipolar", dest="bipolar", action="store_false", default=None, help="train +1 only"
    )
    add_common_options(parser)
    parser.set_defaults(func=run_text)


def _prompt_entry(args: argparse.Namespace) -> PromptEntry:
    from sliders.config import PromptEntry

    if args.positive is None or args.negative is None:
        raise ValueError("--target needs --positive and --negative")
    return PromptEntry(
        target=args.target,
        positive=args.positive,
        unconditional=args.negative,
        neutral=args.neutral,
        action=args.action or "enhance",
        guidance_scale=4.0 if args.guidance_scale is None else args.guidance_scale,
        resolution=args.resolution or 512,
    )


def _with_entry_overrides(config: TextSliderConfig, args: argparse.Namespace) -> TextSliderConfig:
    from dataclasses import replace

    changes = {"guidance_scale": args.guidance_scale, "resolution": args.resolution, "action": args.action}
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    return replace(config, prompts=tuple(replace(entry, **changes) for entry in config.prompts))


def text_config_from_args(args: argparse.Namespace) -> TextSliderConfig:
    """The `TextSliderConfig` of a `train text` command line: file or preset, then the flags given."""
    from sliders.config import TextSliderConfig, load_text_config

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
        steps=args.steps, rank=args.rank, alpha=args.alpha, targets=args.targets, lr=args.lr, seed=args.seed,
        checkpoint_every=args.checkpoint_every, gradient_checkpointing=args.gradient_checkpointing,
        mixed_precision=args.mixed_precision,
    )  # fmt: skip


def process_device(device: str | None) -> str | None:
    """The requested device; under `accelerate launch`, this process's own GPU by default."""
    import torch

    if device is None and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def run_text(args: argparse.Namespace) -> int:
    """Train a text slider as the arguments say; prints where the files went."""
    from sliders.loss_log import loss_paths
    from sliders.text_slider import train_text_slider
    from transfer.commands.aliases import model_aliases
    from transfer.sdxl import load_sdxl

    config = text_config_from_args(args)
    if args.out.suffix != ".safetensors":
        raise ValueError(f"--out {args.out}: a slider file must end in .safetensors")
    pipe = load_sdxl(
        args.model, device=process_device(args.device), dtype=args.dtype, aliases=model_aliases()
    )
    out = train_text_slider(pipe, config, args.out, base_model=args.model, resume=args.resume,
                            show_progress=not args.quiet)  # fmt: skip
    csv_path, png_path = loss_paths(out)
    print(f"slider: {out}\nloss log: {csv_path}\nloss curve: {png_path}")
    return 0
