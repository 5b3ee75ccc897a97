"""`--threads`: the CPU threads of a command that runs a model (recorded in what it writes)."""

from __future__ import annotations

import argparse

from transfer.commands.arguments import positive_int


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """Add `--threads N`."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads for torch (default: 1 for a small model such as the toy world's on the CPU, "
        "where more threads wait on each other; torch's choice otherwise)",
    )
