"""What every `train` kind shares: the model, steps, output, LoRA shape, optimizer, seed, checkpoints, device.

The defaults shown are `TrainSettings`' own (torch-free, so `--help` stays fast). Options default to
None on the parser so that a value a config file sets is kept unless the option is given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sliders.config import MIXED_PRECISIONS, TrainSettings
from transfer.commands.arguments import non_negative_int, positive_float, positive_int
from transfer.commands.outputs import check_output_file, refuse_to_replace
from transfer.commands.threads import add_threads_option


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every slider kind shares."""
    _add_model_options(parser)
    _add_output_options(parser)
    _add_training_options(parser)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="SDXL hub id, diffusers folder, single .safetensors, or 'toy'"
    )
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best available)")
    parser.add_argument(
        "--dtype", choices=["fp32", "fp16", "bf16"], help="model dtype (default: bf16 on CUDA, fp32 on CPU)"
    )
    parser.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISIONS,
        help=f"default {TrainSettings.mixed_precision}: the model's dtype",
    )
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", default=None, help="trade compute for memory"
    )
    add_threads_option(parser)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output slider file (.safetensors)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from <out stem>.ckpt exactly")
    again.add_argument(
        "--force", action="store_true", help="start afresh, replacing --out and its checkpoint if they exist"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        metavar="K",
        help=f"checkpoint every K steps; 0: only on Ctrl-C / SIGTERM (default {TrainSettings.checkpoint_every})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="then calibrate the slider's scale on the same model (`slider calibrate` with its defaults)",
    )


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=positive_int, help=f"training steps (default {TrainSettings.steps})")
    parser.add_argument("--rank", type=positive_int, help=f"LoRA rank (default {TrainSettings.rank})")
    parser.add_argument(
        "--alpha",
        type=positive_float,
        help=f"LoRA alpha; the update is scaled by alpha/rank (default {TrainSettings.alpha:g})",
    )
    parser.add_argument(
        "--targets",
        help=f"LoRA target preset: noxattn, xattn, selfattn, full (default {TrainSettings.targets})",
    )
    parser.add_argument(
        "--lr", type=positive_float, help=f"AdamW learning rate (default {TrainSettings.lr:g})"
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        help=f"the same seed gives the same slider (default {TrainSettings.seed})",
    )


def check_slider_outputs(args: argparse.Namespace) -> None:
    """Before any model loads: the slider, its checkpoint and loss files can be written, and nothing of an
    earlier run is replaced unless --resume or --force says what to do with it."""
    from sliders.checkpoint import checkpoint_path
    from sliders.loss_log import loss_paths

    out = args.out
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: a slider file must end in .safetensors")
    checkpoint = checkpoint_path(out)
    check_output_file(out, "--out", [checkpoint, *loss_paths(out)])
    if args.resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"--resume: no checkpoint {checkpoint} to continue (one is written every --checkpoint-every "
                "steps and on Ctrl-C / SIGTERM)"
            )
        return
    refuse_to_replace(out, "--out", args.force)
    if checkpoint.exists() and not args.force:
        raise FileExistsError(
            f"{checkpoint}: a checkpoint of an earlier run of --out {out} is there; pass --resume to "
            "continue it, or --force to start afresh and replace it"
        )


def check_placement(args: argparse.Namespace) -> None:
    """Refuse a device/dtype pair that cannot run (fp16 on the CPU) before any model loads."""
    from transfer.sdxl import choose_placement

    choose_placement(process_device(args.device), args.dtype)


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
    """The SDXL pipeline named by --model on --device (under `accelerate launch`: this process's GPU), with
    torch's CPU threads set by --threads or for the model's size (see `transfer.cpu_threads`)."""
    from transfer.commands.aliases import model_aliases
    from transfer.cpu_threads import configure_threads, is_small_unet
    from transfer.sdxl import load_sdxl

    pipe = load_sdxl(
        args.model, device=process_device(args.device), dtype=args.dtype, aliases=model_aliases()
    )
    configure_threads(args.threads, pipe.unet.device, is_small_unet(pipe.unet))
    return pipe


def report(out: Path) -> None:
    """Print where the slider, its loss log and its loss curve went."""
    from sliders.loss_log import loss_paths

    csv_path, png_path = loss_paths(out)
    print(f"slider: {out}\nloss log: {csv_path}\nloss curve: {png_path}")
