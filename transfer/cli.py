"""The `concept-transfer` command line: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import NoReturn

from transfer.errors import USER_ERRORS, describe

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


class Parser(argparse.ArgumentParser):
    """argparse with the house's error format: one line naming the option, exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print `error: <message>` and where the usage is, then exit 2 (argparse prints the whole usage)."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser with every registered subcommand (they inherit `Parser`)."""
    parser = Parser(
        prog="concept-transfer",
        description="Make Concept Sliders for SDXL from StyleGAN3 style space, image pairs and text.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user and system errors print one line and exit 2 without a traceback."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_info:  # an argument error, already printed (--help exits as argparse does)
        if not exit_info.code:
            raise
        return int(exit_info.code)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except BrokenPipeError:  # `concept-transfer pairs inspect ... | head`: the reader left early
        _discard_stdout()
        print(
            "error: standard output: the reading end was closed (broken pipe); output cut short",
            file=sys.stderr,
        )
        return 2
    except (
        *USER_ERRORS,
        OSError,
    ) as error:  # an OSError is the system refusing: a full disk, a read-only folder
        if os.environ.get("CONCEPT_TRANSFER_DEBUG"):
            raise
        print(f"error: {describe(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        print("interrupted", file=sys.stderr)
        # The shell's convention, 128 + the signal: a SIGTERM'd training run (checkpointed) exits 143.
        return 128 + getattr(error, "signum", signal.SIGINT)


def _discard_stdout() -> None:
    """Point stdout at /dev/null so that the flush at exit does not raise a second broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (captured output): nothing to flush
        pass
