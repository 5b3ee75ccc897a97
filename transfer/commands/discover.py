"""`concept-transfer discover`: rank a generator's unnamed style channels and w directions, no names needed.

Writes the folder described in `stylegan_bridge.candidates` (candidates.json, directions.safetensors,
a contact sheet per candidate, overview.png). The ranking is in `stylegan_bridge.discovery`.

Cost: (channels of --layers + w directions) x --samples renders (a channel of a late layer costs less:
the unedited layers before it run once), plus 5 x --sheet-seeds per kept candidate. The toy generator
(64 px, 384 channels + 13 w directions, 4 seeds): 27 s of one CPU thread for the whole command. FFHQ
1024 px: 4,946 style channels (T config), 9,890 (R); at the 4 (T) / 1.4 (R) images/s our renderer
measured on an H200, every channel on --samples 2 is about 40 min (T) / 4 h (R), an estimate, not
timed; --layers 3-9 (where StyleSpace finds localised channels) or a few layers at a time cut it, and
--backend nvlabs' CUDA kernels render faster. FFHQ channels show at larger strengths: --delta 5.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from transfer.commands.mine import add_gan_arguments, gan_from_args, stats_from_args


def parse_layers(text: str | None) -> tuple[str, ...] | None:
    """`0-4,L6,L3_72_64` -> ("0", "1", "2", "3", "4", "L6", "L3_72_64"); None for all layers."""
    if text is None:
        return None
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-")
        if sep and lo.isdigit() and hi.isdigit():
            if int(lo) > int(hi):
                raise ValueError(f"--layers {text!r}: range {part!r} runs backwards")
            out.extend(str(i) for i in range(int(lo), int(hi) + 1))
        elif part:
            out.append(part)
        else:
            raise ValueError(f"--layers {text!r}: empty entry (expected e.g. 0-4,L6)")
    return tuple(out)


def check_out_folder(out: Path, force: bool) -> None:
    """Refuse an --out that is a file, cannot be made or written, or already holds candidates (without --force)."""
    from stylegan_bridge.candidates import CANDIDATES_FILE
    from transfer.commands.outputs import check_output_folder

    if (out / CANDIDATES_FILE).exists() and not force:
        raise FileExistsError(f"--out {out}: already holds {CANDIDATES_FILE}; pass --force to replace it")
    check_output_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `discover`."""
    p = subparsers.add_parser(
        "discover",
        help="rank unnamed style channels and w directions of a generator (no names, no boxes)",
        description="Rank every style channel of --layers and the independent / principal directions of w "
        "by the size, concentration and distinctness of their effect on rendered images; write the top "
        "--top with a contact sheet each. Defaults are sized for the 64 px toy generator.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_gan_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (candidates.json, sheets/ ...)")
    p.add_argument("--force", action="store_true", help="replace the candidates an --out folder holds")
    p.add_argument("--layers", help="style layers to search, e.g. 0-4,L6 or L3_72_64 (default: all)")
    p.add_argument("--top", type=int, default=12, help="candidates kept")
    p.add_argument("--samples", type=int, default=4, help="seeds every candidate is rendered on")
    p.add_argument("--seed", type=int, default=0, help="first seed; also seeds the w samples")
    p.add_argument("--delta", type=float, default=2.0, help="channel edit strength, in channel stds")
    p.add_argument("--w-delta", type=float, default=2.0, help="w direction strength, in stds of w along it")
    p.add_argument("--components", type=int, default=10, help="w directions per method (0: channels only)")
    p.add_argument(
        "--w-methods",
        default="ica,input",
        help="w directions, any of ica (independent components of w's principal subspace), pca "
        "(principal directions), input (the input block's rotation and translation)",
    )
    p.add_argument("--w-samples", type=int, default=10_000, help="w samples for PCA / ICA")
    p.add_argument("--w-weight", type=float, default=0.9, help="prior weight of a w direction vs a channel")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi of the seeds")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="|cos| of effect maps above which two are one"
    )
    p.add_argument("--map-size", type=int, default=32, help="effect maps are compared at this size")
    p.add_argument("--batch", type=int, default=16, help="renders per forward pass")
    p.add_argument("--sheet-seeds", type=int, default=3, help="rows of each contact sheet")
    p.add_argument("--tile", type=int, default=96, help="contact-sheet tile size in px")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_discover)


def config_from_args(args: argparse.Namespace):
    """The DiscoveryConfig the options ask for (ValueError naming the option when one is out of range)."""
    from stylegan_bridge.discovery import DiscoveryConfig

    for name in ("sheet_seeds", "tile"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    methods = tuple(m.strip() for m in args.w_methods.split(",") if m.strip())
    return DiscoveryConfig(
        samples=args.samples,
        seed=args.seed,
        delta=args.delta,
        w_delta=args.w_delta,
        components=args.components,
        w_samples=args.w_samples,
        psi=args.truncation,
        layers=parse_layers(args.layers),
        top=args.top,
        threshold=args.threshold,
        map_size=args.map_size,
        batch=args.batch,
        w_methods=methods,
        w_weight=args.w_weight,
    )


def run_discover(args: argparse.Namespace) -> int:
    """Check the options and --out, load the generator, discover, write the folder, print the ranking."""
    from stylegan_bridge.candidate_sheets import write_sheets
    from stylegan_bridge.candidates import OVERVIEW_FILE, SHEETS_DIR, generator_record, write_candidates
    from stylegan_bridge.direction_file import file_sha256
    from stylegan_bridge.directions import channel_candidates
    from stylegan_bridge.discovery import build_candidates, discover
    from stylegan_bridge.style_space import ws_from_seeds

    config = config_from_args(args)
    check_out_folder(args.out, args.force)
    started = time.perf_counter()
    G, path = gan_from_args(args)
    try:
        channel_candidates(G, config.layers)
    except ValueError as error:
        raise ValueError(f"--layers {args.layers!r}: {error}") from None
    stats = stats_from_args(G, args)
    candidates = build_candidates(G, stats, config)
    channels = sum(c.kind == "channel" for c in candidates)
    print(f"{channels} channels + {len(candidates) - channels} w directions, each on {config.samples} seeds")
    found = discover(G, stats, config, progress=not args.quiet, candidates=candidates)
    settings = _settings(config, stats)
    json_path = write_candidates(args.out, found, generator_record(G, path, file_sha256(path)), settings, G)
    seeds = list(range(config.seed, config.seed + args.sheet_seeds))
    write_sheets(
        G, found, ws_from_seeds(G, seeds, config.psi), seeds, args.out / SHEETS_DIR,
        args.out / OVERVIEW_FILE, args.tile, progress=not args.quiet,
    )  # fmt: skip
    for rank, candidate in enumerate(found, start=1):
        scores = "  ".join(f"{k} {v:.3g}" for k, v in candidate.scores().items())
        print(f"{rank:3d}  {candidate.name:16s}  delta {candidate.delta:g}  {scores}")
    print(f"candidates: {json_path} ({time.perf_counter() - started:.1f} s)")
    print(f"overview (rows = candidates; -delta, 0, +delta on two seeds): {args.out / OVERVIEW_FILE}")
    return 0


def _settings(config, stats) -> dict:
    """The settings candidates.json records (everything the ranking depends on)."""
    return {
        "seed": config.seed,
        "samples": config.samples,
        "seeds": config.seeds,
        "layers": list(config.layers) if config.layers else None,
        "delta": config.delta,
        "w_delta": config.w_delta,
        "components": config.components,
        "w_methods": list(config.w_methods),
        "w_samples": config.w_samples,
        "psi": config.psi,
        "threshold": config.threshold,
        "map_size": config.map_size,
        "w_weight": config.w_weight,
        "top": config.top,
        "stats": {
            "num_samples": stats.num_samples,
            "psi": stats.psi,
            "cutoff": stats.cutoff,
            "seed": stats.seed,
        },
    }
