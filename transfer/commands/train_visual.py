"""`concept-transfer train visual`: train a visual slider from a before/after pair corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from sliders.config import TrainSettings, VisualSliderConfig
from transfer.commands.arguments import finite_float, positive_int, resolution
from transfer.commands.train_options import (
    add_common_options,
    check_placement,
    check_slider_outputs,
    load_pipeline,
    report,
    train_overrides,
)


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
        "--resolution", type=resolution, help="training resolution in pixels (default: the corpus's)"
    )
    parser.add_argument("--prompt", help="prompt for pairs without a caption (default: the empty prompt)")
    parser.add_argument("--concept", help="concept name recorded in the file (default: the corpus name)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=VisualSliderConfig.batch_size,
        help="pairs per step (default %(default)s)",
    )
    parser.add_argument(
        "--augment", action="store_true", help="random horizontal flip, the same for both images"
    )
    parser.add_argument(
        "--crop-scale",
        type=finite_float,
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


def visual_config_from_args(args: argparse.Namespace) -> VisualSliderConfig:
    """The `VisualSliderConfig` of a `train visual` command line (unset options keep the defaults)."""
    return VisualSliderConfig(
        concept=args.concept or "",
        prompt=args.prompt or "",
        resolution=args.resolution,
        batch_size=args.batch_size,
        augment=args.augment,
        crop_scale=args.crop_scale,
        separate_passes=args.separate_passes,
        train=TrainSettings(**train_overrides(args)),
    )


def run_visual(args: argparse.Namespace) -> int:
    """Train a visual slider as the arguments say; prints where the files went."""
    from pair_datasets import Corpus
    from sliders.visual_slider import train_visual_slider
    from transfer.commands.slider import calibrate_trained

    config = visual_config_from_args(args)
    check_slider_outputs(args)
    check_placement(args)
    corpus = Corpus.open(args.pairs)
    pipe = load_pipeline(args)
    out = train_visual_slider(pipe, corpus, config, args.out, base_model=args.model, resume=args.resume,
                              show_progress=not args.quiet)  # fmt: skip
    report(out)
    if args.calibrate:
        calibrate_trained(pipe, out, args.model)
    return 0
