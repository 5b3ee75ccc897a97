"""`concept-transfer demo`: the whole journey on models that need no download."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole journey (GAN -> pairs -> visual slider, text slider, sweeps) offline",
        description="Run every stage on models that need no download and print where the outputs are.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("demo-out"), metavar="DIR", help="(default demo-out)"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="use tiny random-weight models even when the toy world is built (fast smoke run)",
    )
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    """Run the demo (the toy world; tiny models with --tiny or while the toy world is missing)."""
    from toyworld.demo import run_toy_demo, toy_assets
    from toyworld.tiny_demo import run_tiny_demo

    assets = None if args.tiny else toy_assets()
    if assets is not None:
        summary = run_toy_demo(args.out, print, assets)
    else:
        if not args.tiny:
            print("demo: the toy world is not built (`concept-transfer toyworld build`); using tiny models.")
        summary = run_tiny_demo(args.out)
    print(f"\ndone in {summary['seconds']} s. Look at:")
    width = max(len(label) for label in summary["look_at"]) + 2
    for label, path in summary["look_at"].items():
        print(f"  {label + ':':<{width}} {path}")
    return 0
