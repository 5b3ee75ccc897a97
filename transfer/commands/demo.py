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
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    """Run the demo and print its outputs."""
    from transfer.demo import run_demo

    summary = run_demo(args.out)
    print(f"\ndone in {summary['seconds']} s. Look at:")
    print(f"  pairs:         {summary['gan_transfer']['contact_sheet']}")
    print(f"  GAN sweep:     {summary['gan_transfer']['sweep']}/grid_p00.png")
    print(f"  loss curve:    {Path(summary['gan_transfer']['slider']).with_suffix('.loss.png')}")
    print(f"  composed:      {summary['composed_sweep']['folder']}/grid_p00.png")
    print(f"  summary:       {args.out / 'summary.json'}")
    return 0
