"""Argument helpers every subcommand shares: negative numbers as values, lists of numbers, number checks.

Torch-free: building the parser (`--help`) must stay fast.
"""

from __future__ import annotations

import argparse
import math
import re

# Python 3.13's argparse rule for "this looks like a negative number, so it is a value": before 3.13
# only a single number (`-2`) counted, and `--scales -2,-1,0,1,2` was taken for an unknown option.
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def allow_negative_values(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let option values start with a minus sign followed by a digit (`--scales -2,-1,1,2`)."""
    parser._negative_number_matcher = _NEGATIVE_VALUE
    return parser


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """Parse a comma-separated list of finite numbers (`-2,-1,0,1,2`)."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"{option} {text}: expected comma-separated numbers") from error
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{option} {text}: expected comma-separated finite numbers")
    return values


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """Parse a comma-separated list of integers (`0,1,2`)."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"{option} {text}: expected comma-separated integers") from error
    if not values:
        raise ValueError(f"{option} {text}: expected at least one integer")
    return values
