"""`concept-transfer pairs ingest|inspect|validate`: make, look at and check pair corpora."""

from __future__ import annotations

import argparse
from pathlib import Path

# pair_datasets needs no torch (Pillow, numpy, tqdm only), so its constants are cheap to import here.
from pair_datasets.images import DEFAULT_MAX_ASPECT_DIFF, DEFAULT_MAX_PIXELS
from pair_datasets.layouts import LAYOUTS, parse_scales
from transfer.commands.arguments import allow_negative_values, non_negative_float, positive_int, resolution
from transfer.commands.outputs import check_output_file, check_output_folder, refuse_to_replace

SHEET_FILE = "contact_sheet.png"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pairs` with its `ingest`, `inspect` and `validate` subcommands."""
    pairs = subparsers.add_parser("pairs", help="ingest, inspect and validate before/after pair corpora")
    commands = pairs.add_subparsers(dest="pairs_command", metavar="ACTION", required=True)

    p = commands.add_parser(
        "ingest",
        help="turn a folder of before/after artwork into a corpus",
        description="Ingest user artwork into a pair corpus. Both images of a pair are center-cropped to "
        "a square and resized to --resolution; pairs whose aspect ratios differ by more than "
        "--max-aspect-diff are rejected. Every left-out file is listed with its reason.",
    )
    p.add_argument("src", nargs="?", type=Path, help="source folder, CSV file or side-by-side image")
    p.add_argument("--out", required=True, type=Path, help="new corpus folder (must not exist or be empty)")
    p.add_argument(
        "--layout", default="auto", choices=LAYOUTS, help="how SRC is organised (default %(default)s)"
    )
    p.add_argument("--before", type=Path, help="folder of before images (stems layout)")
    p.add_argument("--after", type=Path, help="folder of after images (stems layout)")
    p.add_argument("--scales", type=_parse_scales, help="levels layout: scale per folder, e.g. -2,-1,1,2")
    p.add_argument("--folders", type=_parse_names, help="levels layout: folders in --scales order")
    p.add_argument(
        "--resolution",
        type=resolution,
        default=1024,
        help="side of the square pair images (default %(default)s)",
    )
    p.add_argument("--name", help="corpus name (default: the --out folder name)")
    p.add_argument(
        "--min-size", type=positive_int, help="shortest accepted image side (default: resolution / 2)"
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse larger images (default %(default)s)",
    )
    p.add_argument(
        "--max-aspect-diff",
        type=non_negative_float,
        default=DEFAULT_MAX_ASPECT_DIFF,
        help="largest relative aspect-ratio difference within a pair, 0.05 = 5%% (default %(default)s)",
    )
    p.add_argument("--workers", type=positive_int, help="decoding threads (default: up to 8)")
    allow_negative_values(p)  # `--scales -2,-1,1,2`, the original repository's spelling
    p.set_defaults(func=run_ingest)

    p = commands.add_parser("inspect", help="print counts and levels, write a contact sheet PNG")
    p.add_argument("corpus", type=Path)
    p.add_argument("--sheet", type=Path, help=f"contact sheet path (default: CORPUS/{SHEET_FILE})")
    p.add_argument("--force", action="store_true", help="replace --sheet if it exists")
    p.add_argument(
        "--max-pairs", type=positive_int, default=16, help="pairs on the contact sheet (default %(default)s)"
    )
    p.set_defaults(func=run_inspect)

    p = commands.add_parser("validate", help="check a corpus; exit 1 naming each problem")
    p.add_argument("corpus", type=Path)
    p.set_defaults(func=run_validate)


def _parse_scales(text: str) -> tuple[float, ...]:
    try:
        return parse_scales(text)
    except ValueError as error:  # argparse hides a ValueError's message; show ours
        raise argparse.ArgumentTypeError(str(error).removeprefix("--scales: ")) from None


def _parse_names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated folder names")
    return names


def run_ingest(args: argparse.Namespace) -> int:
    """Ingest SRC into a new corpus and print the summary."""
    from pair_datasets import IngestOptions, ingest

    check_output_folder(args.out, "--out")
    options = IngestOptions(
        layout=args.layout,
        before=args.before,
        after=args.after,
        scales=args.scales,
        folders=args.folders,
        resolution=args.resolution,
        name=args.name,
        min_side=args.min_size,
        max_pixels=args.max_pixels,
        max_aspect_diff=args.max_aspect_diff,
        workers=args.workers,
    )
    report = ingest(args.src, args.out, options)
    print(report.summary())
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    """Write the contact sheet, then print name, resolution, pair count and levels."""
    from pair_datasets import Corpus, contact_sheet, summarize

    corpus = Corpus.open(args.corpus)
    sheet = None
    if len(corpus):
        if args.sheet is not None:
            check_output_file(args.sheet, "--sheet")
            refuse_to_replace(args.sheet, "--sheet", args.force)
        # Written before anything is printed: a reader that stops early (`| head`) cannot cut it short.
        sheet = contact_sheet(corpus, args.sheet or corpus.root / SHEET_FILE, max_pairs=args.max_pairs)
    info = summarize(corpus)
    print(f"corpus: {corpus.root} ({info['name']}, {info['resolution']}x{info['resolution']})")
    print(f"pairs: {info['pairs']} ({info['captioned']} with captions)")
    levels = ", ".join(f"{level:g}: {count}" for level, count in info["levels"].items()) or "none"
    print(f"levels: {levels}")
    provenance = info["provenance"]
    if provenance:
        print("provenance: " + ", ".join(f"{k}={v}" for k, v in provenance.items() if v is not None))
    if sheet is not None:
        print(f"contact sheet (before above after): {sheet}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Print every problem and exit 1, or print `ok: N pairs` and exit 0."""
    from pair_datasets import Corpus, validate_corpus

    problems = validate_corpus(args.corpus)
    if problems:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s) in {args.corpus}")
        return 1
    print(f"ok: {len(Corpus.open(args.corpus))} pairs")
    return 0
