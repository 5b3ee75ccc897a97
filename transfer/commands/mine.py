"""`concept-transfer mine`: StyleGAN3 style edit -> before/after pair corpus.

Also holds what other commands share with it: the generator arguments (`--gan`, `--device`, style
statistics; `directions`) and the mining options with their `MiningConfig` (`transfer`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.commands.arguments import (
    finite_float,
    non_negative_int,
    positive_float,
    positive_int,
    resolution,
)
from transfer.commands.outputs import check_output_folder
from transfer.commands.threads import add_threads_option

if TYPE_CHECKING:  # torch loads only when a command runs, not to build the parser
    from torch import nn

    from stylegan_bridge.style_space import StyleStats


def add_gan_arguments(parser: argparse.ArgumentParser) -> None:
    """--gan, --device and the style-statistics options shared by `mine` and `directions`."""
    parser.add_argument(
        "--gan", required=True, help="generator: NVlabs .pkl, our .safetensors/.pt export, or a name"
    )
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    add_threads_option(parser)
    parser.add_argument(
        "--backend",
        choices=("ours", "nvlabs"),
        default="ours",
        help="nvlabs: NVlabs' own code and CUDA kernels (executes code from the pickle; needs $STYLEGAN3_DIR; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--stats-samples",
        type=positive_int,
        default=100_000,
        help="samples for per-channel std (default %(default)s)",
    )
    parser.add_argument(
        "--stats-psi",
        type=finite_float,
        default=1.0,
        help="truncation psi of the statistics (default %(default)s)",
    )
    parser.add_argument(
        "--stats-cache", type=Path, help="statistics cache folder (default: ~/.cache/concept-transfer)"
    )


def gan_from_args(args: argparse.Namespace) -> tuple[nn.Module, Path]:
    """Load the generator named by --gan onto --device."""
    from stylegan_bridge.mining import load_gan
    from transfer.commands.aliases import gan_aliases
    from transfer.cpu_threads import configure_threads, is_small_generator

    G, path = load_gan(args.gan, device=args.device, aliases=gan_aliases(), backend=args.backend)
    configure_threads(args.threads, next(G.parameters()).device, is_small_generator(G))
    return G, path


def stats_from_args(G: nn.Module, args: argparse.Namespace) -> StyleStats:
    """Per-channel style statistics of G (cached), as the --stats-* options ask."""
    from stylegan_bridge.style_space import style_stats

    if args.stats_samples < 2:
        raise ValueError(f"--stats-samples must be >= 2, got {args.stats_samples}")
    return style_stats(G, num_samples=args.stats_samples, psi=args.stats_psi, cache_dir=args.stats_cache)


def add_mining_arguments(parser: argparse.ArgumentParser, pairs: int | None = None) -> None:
    """How pairs are rendered (`MiningConfig`): seeds, edit size, levels, truncation, batch, symmetry.

    `pairs` is the default number of seeds; None makes `--pairs` required.
    """
    parser.add_argument(
        "--pairs",
        type=positive_int,
        required=pairs is None,
        default=pairs,
        help="number of seeds; each gives one pair per level"
        + ("" if pairs is None else " (default %(default)s)"),
    )
    parser.add_argument(
        "--delta",
        type=positive_float,
        default=5.0,
        help="edit strength at level 1, in channel stds (default %(default)s)",
    )
    parser.add_argument(
        "--levels", default="1", help="comma-separated levels; level k uses delta*k (default %(default)s)"
    )
    parser.add_argument(
        "--truncation",
        type=finite_float,
        default=0.7,
        help="truncation psi of the seeds (default %(default)s)",
    )
    parser.add_argument(
        "--truncation-cutoff", type=non_negative_int, help="truncate only the first N ws (default: all)"
    )
    parser.add_argument(
        "--batch", type=positive_int, default=8, help="seeds per forward pass (default %(default)s)"
    )
    parser.add_argument(
        "--symmetric", action="store_true", help="before = -delta instead of the unedited image"
    )


def mining_config_from_args(args: argparse.Namespace):
    """The `MiningConfig` of the mining options (`add_mining_arguments`) plus --seed and --resolution."""
    from stylegan_bridge.mining import MiningConfig, parse_levels

    return MiningConfig(
        pairs=args.pairs,
        delta=args.delta,
        levels=parse_levels(args.levels),
        psi=args.truncation,
        cutoff=args.truncation_cutoff,
        seed=args.seed,
        resolution=args.resolution,
        batch=args.batch,
        symmetric=args.symmetric,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mine`."""
    p = subparsers.add_parser(
        "mine",
        help="render before/after pairs of a style channel or direction into a pair corpus",
        description="Render pairs from seeds seed..seed+N-1: before = the unedited image (or -delta with "
        "--symmetric), after = +delta*level. Channel deltas are in units of the channel's std. Re-running "
        "with the same settings resumes: pairs already in the corpus are kept, not re-rendered.",
    )
    add_gan_arguments(p)
    p.add_argument(
        "--layer", help="style layer: index (0 = first layer after input), L4 or NVlabs name L4_84_512"
    )
    p.add_argument("--channel", type=non_negative_int, help="style channel of --layer")
    p.add_argument("--direction", type=Path, help="direction file from `concept-transfer directions`")
    p.add_argument(
        "--index", type=non_negative_int, default=0, help="which direction of --direction (0 = best)"
    )
    p.add_argument("--out", type=Path, required=True, help="corpus folder (created, or resumed if it exists)")
    add_mining_arguments(p)
    p.add_argument("--seed", type=non_negative_int, default=0, help="first seed (default %(default)s)")
    p.add_argument("--resolution", type=resolution, help="corpus image size (default: the generator's)")
    p.add_argument("--name", help="corpus name (default: the --out folder name)")
    p.set_defaults(func=run_mine)


def run_mine(args: argparse.Namespace) -> int:
    """Load the generator, build the edit, mine the pairs, print where they are."""
    from stylegan_bridge.mining import channel_source, direction_source, gan_source, mine

    by_channel = args.layer is not None or args.channel is not None
    if by_channel == (args.direction is not None) or (
        by_channel and (args.layer is None or args.channel is None)
    ):
        raise ValueError("give either --layer and --channel, or --direction")
    config = mining_config_from_args(args)
    check_output_folder(args.out, "--out")  # a corpus is resumed, never replaced: nothing to refuse
    G, path = gan_from_args(args)
    if by_channel:
        edit, edit_provenance = channel_source(G, args.layer, args.channel, stats_from_args(G, args))
    else:
        edit, edit_provenance = direction_source(
            G, args.direction, args.index, lambda: stats_from_args(G, args)
        )
    report = mine(G, edit, args.out, config, gan_source(G, path, edit_provenance), name=args.name)
    print(f"corpus: {report.root} ({report.written} pairs written, {report.kept} kept from before)")
    print(f"contact sheet (before above after): {report.sheet}")
    return 0
