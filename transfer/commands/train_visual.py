"""`concept-transfer train visual`: train a visual slider from a before/after pair corpus (issue 3 §4)."""

from __future__ import annotations

import argparse
from pathlib import Path

from transfer.commands.train import add_common_options, process_device


def register_visual(kinds: argparse._SubParsersAction) -> None:
    """Add `train visual` to the `train` sub-parsers."""
    parser = kinds.add_parser(
        "visual",
        help="train a visual slider from a before/after pair corpus",
        description="Train a visual Concept Slider: at -level the slider denoises the noisy before image, "
        "at +level the noisy after image (the same noise and timestep for both). Latents are encoded once "
        "into the corpus's cache and reused.",
    )
    parser.add_argument("--pairs", required=True, type=Path, help="pair corpus folder (see `pairs ingest`)")
    parser.add_argument(
        "--resolution", type=int, help="training resolution in pixels (default: the corpus's)"
    )
    parser.add_argument("--prompt", help="prompt for pairs without a caption (default: the empty prompt)")
    parser.add_argument("--concept", help="concept name recorded in the file (default: the corpus name)")
    parser.add_argument("--batch-size", type=int, help="pairs per step (default 1)")
    parser.add_argument(
        "--augment", action="store_true", help="random horizontal flip, the same for both images"
    )
    parser.add_argument(
        "--crop-scale",
        type=float,
        metavar="F",
        help="random crop, 0 < F <= 1: each step a window of side ~F of the image (rounded to a size the "
        "model accepts) at a random position, the same window for both images of a pair; SDXL's crop "
        "conditioning tells the model where it was cut (default: no crop)",
    )
    parser.add_argument(
        "--separate-passes", action="store_true", help="two UNet passes per step instead of one batched pass"
    )
    add_common_options(parser)
    parser.set_defaults(func=run_visual)


def visual_config_from_args(args: argparse.Namespace):
    """The `VisualSliderConfig` of a `train visual` command line (unset flags keep the defaults)."""
    from sliders.config import TrainSettings
    from sliders.visual_slider import VisualSliderConfig

    given = {
        "steps": args.steps, "rank": args.rank, "alpha": args.alpha, "targets": args.targets, "lr": args.lr,
        "seed": args.seed, "checkpoint_every": args.checkpoint_every,
        "gradient_checkpointing": args.gradient_checkpointing, "mixed_precision": args.mixed_precision,
    }  # fmt: skip
    train = TrainSettings(**{k: v for k, v in given.items() if v is not None})
    return VisualSliderConfig(
        concept=args.concept or "",
        prompt=args.prompt or "",
        resolution=args.resolution,
        batch_size=1 if args.batch_size is None else args.batch_size,
        augment=args.augment,
        crop_scale=args.crop_scale,
        separate_passes=args.separate_passes,
        train=train,
    )


def run_visual(args: argparse.Namespace) -> int:
    """Train a visual slider as the arguments say; prints where the files went."""
    from pair_datasets import Corpus
    from sliders.loss_log import loss_paths
    from sliders.visual_slider import train_visual_slider
    from transfer.commands.aliases import model_aliases
    from transfer.sdxl import load_sdxl

    config = visual_config_from_args(args)
    if args.out.suffix != ".safetensors":
        raise ValueError(f"--out {args.out}: a slider file must end in .safetensors")
    corpus = Corpus.open(args.pairs)
    pipe = load_sdxl(
        args.model, device=process_device(args.device), dtype=args.dtype, aliases=model_aliases()
    )  # own GPU per process
    out = train_visual_slider(pipe, corpus, config, args.out, base_model=args.model, resume=args.resume,
                              show_progress=not args.quiet)  # fmt: skip
    csv_path, png_path = loss_paths(out)
    print(f"slider: {out}\nloss log: {csv_path}\nloss curve: {png_path}")
    return 0
