"""What every `train` kind shares: the model, steps, output, LoRA shape, optimizer, seed, checkpoints, device.

The defaults shown are `TrainSettings`' own (torch-free, so `--help` stays fast). Options default to
None on the parser so that a value a config file sets is kept unless the option is given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sliders.config import MIXED_PRECISIONS, TrainSettings


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every slider kind shares."""
    parser.add_argument(
        "--model", required=True, help="SDXL hub id, diffusers folder, single .safetensors, or 'toy'"
    )
    parser.add_argument("--out", required=True, type=Path, help="output slider file (.safetensors)")
    parser.add_argument("--steps", type=int, help=f"training steps (default {TrainSettings.steps})")
    parser.add_argument("--rank", type=int, help=f"LoRA rank (default {TrainSettings.rank})")
    parser.add_argument(
        "--alpha",
        type=float,
        help=f"LoRA alpha; the update is scaled by alpha/rank (default {TrainSettings.alpha:g})",
    )
    parser.add_argument(
        "--targets",
        help=f"LoRA target preset: noxattn, xattn, selfattn, full (default {TrainSettings.targets})",
    )
    parser.add_argument("--lr", type=float, help=f"AdamW learning rate (default {TrainSettings.lr:g})")
    parser.add_argument(
        "--seed", type=int, help=f"the same seed gives the same slider (default {TrainSettings.seed})"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="K",
        help=f"checkpoint every K steps; 0: only on Ctrl-C / SIGTERM (default {TrainSettings.checkpoint_every})",
    )
    parser.add_argument("--resume", action="store_true", help="continue from <out stem>.ckpt exactly")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", default=None, help="trade compute for memory"
    )
    parser.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISIONS,
        help=f"default {TrainSettings.mixed_precision}: the model's dtype",
    )
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best available)")
    parser.add_argument(
        "--dtype", choices=["fp32", "fp16", "bf16"], help="model dtype (default: bf16 on CUDA, fp32 on CPU)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="then calibrate the slider's scale on the same model (`slider calibrate` with its defaults)",
    )


def train_overrides(args: argparse.Namespace) -> dict:
    """The `TrainSettings` fields given on the command line (unset options are left out)."""
    given = {
        "steps": args.steps, "rank": args.rank, "alpha": args.alpha, "targets": args.targets, "lr": args.lr,
        "seed": args.seed, "checkpoint_every": args.checkpoint_every,
        "gradient_checkpointing": args.gradient_checkpointing, "mixed_precision": args.mixed_precision,
    }  # fmt: skip
    return {key: value for key, value in given.items() if value is not None}


def process_device(device: str | None) -> str | None:
    """The requested device; under `accelerate launch`, this process's own GPU by default."""
    import torch

    if device is None and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def load_pipeline(args: argparse.Namespace):
    """The SDXL pipeline named by --model, on --device (under `accelerate launch`: this process's GPU)."""
    from transfer.commands.aliases import model_aliases
    from transfer.sdxl import load_sdxl

    return load_sdxl(
        args.model, device=process_device(args.device), dtype=args.dtype, aliases=model_aliases()
    )


def report(out: Path) -> None:
    """Print where the slider, its loss log and its loss curve went."""
    from sliders.loss_log import loss_paths

    csv_path, png_path = loss_paths(out)
    print(f"slider: {out}\nloss log: {csv_path}\nloss curve: {png_path}")
