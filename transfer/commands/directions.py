"""`concept-transfer directions channels|pca|svm`: find style channels or w directions to mine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.commands.arguments import finite_float, fraction, non_negative_int, positive_int

# transfer.commands.mine is torch-free at import time; numpy, torch and the bridge load when a command runs.
from transfer.commands.mine import add_gan_arguments, gan_from_args, stats_from_args
from transfer.commands.outputs import check_output_file, refuse_to_replace

if TYPE_CHECKING:
    from stylegan_bridge.direction_file import DirectionFile


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """`0,1,5-7` -> [0, 1, 5, 6, 7]; ValueError naming `option` when malformed."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            seeds.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected seeds 0 or more, and ranges like 0,1,5-7") from None
    if not seeds:
        raise ValueError(f"{option} {text!r}: no seeds")
    return seeds


def check_outputs(args: argparse.Namespace) -> None:
    """Before the generator loads: the preview seeds read, and the direction file and its preview can be
    written without replacing an earlier run's (unless --force)."""
    parse_seeds(args.preview_seeds, "--preview-seeds")
    check_output_file(args.out, "--out", [preview_path(args)])
    refuse_to_replace(args.out, "--out", args.force)
    if args.preview is not None:
        refuse_to_replace(args.preview, "--preview", args.force)


def preview_path(args: argparse.Namespace) -> Path:
    """Where the preview grid goes: --preview, else beside --out with .png."""
    return args.preview or args.out.with_suffix(".png")


def _common(p: argparse.ArgumentParser) -> None:
    add_gan_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="direction file to write (.safetensors)")
    p.add_argument("--force", action="store_true", help="replace --out (and --preview) if they exist")
    p.add_argument("--preview", type=Path, help="PNG of the top directions' edits (default: OUT with .png)")
    p.add_argument(
        "--preview-rows",
        type=positive_int,
        default=8,
        help="directions shown in the preview (default %(default)s)",
    )
    p.add_argument(
        "--preview-seeds", default="0,1", help="seeds of the preview columns (default %(default)s)"
    )
    p.add_argument(
        "--preview-delta",
        type=finite_float,
        default=5.0,
        help="edit strength shown in the preview (default %(default)s)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `directions` with `channels`, `pca` and `svm`."""
    top = subparsers.add_parser(
        "directions", help="find style channels (StyleSpace) or w directions (PCA, SVM)"
    )
    commands = top.add_subparsers(dest="directions_command", metavar="METHOD", required=True)
    _register_channels(commands)
    _register_pca(commands)
    _register_svm(commands)


def _register_channels(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("channels", help="rank style channels by a region's change or a scoring function")
    _common(p)
    p.add_argument("--box", help="region x0,y0,x1,y1 in relative coordinates (0..1, top left origin)")
    p.add_argument("--mask", type=Path, help="region as a mask PNG (white = inside)")
    p.add_argument(
        "--score",
        help="scoring function module:function or file.py:function: images [B,C,H,W] in [-1,1] on the "
        "generator's device -> B numbers; channels are ranked by how much +delta moves the mean score",
    )
    p.add_argument("--seeds", default="0-3", help="seeds to average over (default %(default)s)")
    p.add_argument(
        "--delta", type=finite_float, default=5.0, help="edit strength in channel stds (default %(default)s)"
    )
    p.add_argument(
        "--truncation",
        type=finite_float,
        default=0.7,
        help="truncation psi of the seeds (default %(default)s)",
    )
    p.add_argument("--layers", help="only these layers, e.g. 3,4 or L4_84_512 (default: all)")
    p.add_argument(
        "--top", type=positive_int, default=32, help="directions kept in the file (default %(default)s)"
    )
    p.add_argument(
        "--batch", type=positive_int, default=16, help="renders per forward pass (default %(default)s)"
    )
    p.set_defaults(func=run_channels)


def _register_pca(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("pca", help="principal directions of w (GANSpace)")
    _common(p)
    p.add_argument("--samples", type=positive_int, default=10_000, help="w samples (default %(default)s)")
    p.add_argument(
        "--components", type=positive_int, default=10, help="directions kept (default %(default)s)"
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the w samples (default %(default)s)"
    )
    p.add_argument(
        "--truncation",
        type=finite_float,
        default=1.0,
        help="truncation psi of the samples (default %(default)s)",
    )
    p.set_defaults(func=run_pca)


def _register_svm(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("svm", help="linear boundary in w from labels (InterFaceGAN)")
    _common(p)
    p.add_argument("--labels", type=Path, help="CSV with seed,label (label 0/1)")
    p.add_argument("--score", help="scoring function module:function; labels = above/below the median")
    p.add_argument(
        "--samples", type=positive_int, default=1000, help="seeds scored with --score (default %(default)s)"
    )
    p.add_argument(
        "--extreme", type=fraction, help="with --score: keep only the top and bottom fraction, e.g. 0.2"
    )
    p.add_argument("--classifier", choices=("svm", "logistic"), default="svm")
    p.add_argument(
        "--test-fraction",
        type=finite_float,
        default=0.3,
        help="held-out share for the accuracy (default %(default)s)",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="first seed with --score; split seed")
    p.add_argument(
        "--truncation",
        type=finite_float,
        default=0.7,
        help="truncation psi of the seeds (default %(default)s)",
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        default=16,
        help="renders per forward pass with --score (default %(default)s)",
    )
    p.set_defaults(func=run_svm)


def run_channels(args: argparse.Namespace) -> int:
    """Rank channels, write the top ones and the preview."""
    from stylegan_bridge.direction_file import DirectionFile, generator_summary
    from stylegan_bridge.directions import box_mask, load_callable, load_mask, parse_box, rank_channels

    if sum(x is not None for x in (args.box, args.mask, args.score)) != 1:
        raise ValueError("give exactly one of --box, --mask or --score")
    check_outputs(args)
    G, _ = gan_from_args(args)
    stats = stats_from_args(G, args)
    size = G.img_resolution
    region = (
        box_mask(parse_box(args.box), size) if args.box else load_mask(args.mask, size) if args.mask else None
    )
    score_fn = load_callable(args.score) if args.score else None
    layers = [part.strip() for part in args.layers.split(",")] if args.layers else None
    seeds = parse_seeds(args.seeds, "--seeds")
    ranked = rank_channels(
        G, stats, seeds, args.delta, args.truncation, None, layers, region, score_fn, args.batch
    )
    details = {
        "seeds": seeds,
        "delta": args.delta,
        "psi": args.truncation,
        "layers": layers,
        "box": args.box,
        "mask": str(args.mask) if args.mask else None,
        "score": args.score,
        "candidates": len(ranked),
        "stats": {"num_samples": stats.num_samples, "psi": stats.psi},
    }
    return _finish(
        args, G, DirectionFile("channels", ranked[: args.top], details, generator_summary(G)), stats
    )


def run_pca(args: argparse.Namespace) -> int:
    """PCA of sampled w, written as w directions."""
    from stylegan_bridge.direction_file import DirectionFile, generator_summary
    from stylegan_bridge.directions import pca_directions

    check_outputs(args)
    G, _ = gan_from_args(args)
    found = pca_directions(G, args.samples, args.components, args.seed, args.truncation)
    details = {"samples": args.samples, "seed": args.seed, "psi": args.truncation}
    return _finish(args, G, DirectionFile("pca", found, details, generator_summary(G)))


def run_svm(args: argparse.Namespace) -> int:
    """Fit a boundary from CSV labels or a scoring function; print the held-out accuracy."""
    import numpy as np
    import torch

    from stylegan_bridge.direction_file import DirectionFile, generator_summary
    from stylegan_bridge.directions import (
        call_scores,
        labels_from_scores,
        load_callable,
        read_label_csv,
        svm_direction,
    )
    from stylegan_bridge.edits import render
    from stylegan_bridge.style_space import ws_from_seeds

    if (args.labels is None) == (args.score is None):
        raise ValueError("give exactly one of --labels or --score")
    check_outputs(args)
    if not 0.0 < args.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    G, _ = gan_from_args(args)
    if args.labels is not None:
        seeds, labels = read_label_csv(args.labels)
    else:
        score_fn = load_callable(args.score)
        all_seeds = list(range(args.seed, args.seed + args.samples))
        scores = torch.cat(
            [
                call_scores(
                    score_fn, render(G, ws_from_seeds(G, all_seeds[i : i + args.batch], args.truncation))
                )
                for i in range(0, len(all_seeds), args.batch)
            ]
        ).numpy()
        kept, labels = labels_from_scores(scores, args.extreme)
        seeds = [all_seeds[i] for i in kept]
    direction = svm_direction(
        G, seeds, np.asarray(labels), args.truncation, args.classifier, args.test_fraction, args.seed
    )
    print(f"held-out accuracy: {direction.info['accuracy']:.3f} ({direction.info['n_test']} test samples)")
    details = {
        "labels": str(args.labels) if args.labels else None,
        "score": args.score,
        "psi": args.truncation,
        "samples": len(seeds),
        "extreme": args.extreme,
    }
    return _finish(args, G, DirectionFile("svm", [direction], details, generator_summary(G)))


def _finish(args: argparse.Namespace, G, data: DirectionFile, stats=None) -> int:
    """Write the file and the preview grid; print the ranking."""
    from stylegan_bridge.direction_file import save_directions
    from stylegan_bridge.preview import edit_grid

    path = save_directions(args.out, data)
    for rank, direction in enumerate(data.directions[: max(args.preview_rows, 10)]):
        print(f"{rank:3d}  {direction.name:24s}  score {direction.score:.4g}")
    shown = [d.to_edit(G, stats) for d in data.directions[: args.preview_rows]]
    preview = edit_grid(
        G,
        shown,
        preview_path(args),
        parse_seeds(args.preview_seeds, "--preview-seeds"),
        args.preview_delta,
    )
    print(f"directions: {path}")
    print(f"preview (rows = directions; -delta, 0, +delta per seed): {preview}")
    return 0
