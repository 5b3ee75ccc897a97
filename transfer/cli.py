"""The `concept-transfer` command line: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from transfer.errors import USER_ERRORS

# Each module in transfer/commands/ defines `register(subparsers)`; the parser it adds carries
# `func=run(args) -> int` through `set_defaults`. The order here is the order of `--help`.
COMMAND_MODULES = [
    "transfer.commands.train",
    "transfer.commands.slider",
    "transfer.commands.pairs",
    "toyworld.commands.build",
    "transfer.commands.apply",
    "transfer.commands.studio",
    "transfer.commands.gan",
    "transfer.commands.discover",
    "transfer.commands.directions",
    "transfer.commands.mine",
    "transfer.commands.transfer_cmd",
    "transfer.commands.library",
    "toyworld.commands.demo",
]


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="concept-transfer",
        description="Make Concept Sliders for SDXL from StyleGAN3 style space, image pairs and text.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors print one line and exit non-zero without a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as error:
        if os.environ.get("CONCEPT_TRANSFER_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        print("interrupted", file=sys.stderr)
        # The shell's convention, 128 + the signal: a SIGTERM'd training run (checkpointed) exits 143.
        return 128 + getattr(error, "signum", signal.SIGINT)
