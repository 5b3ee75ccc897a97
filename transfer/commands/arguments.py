"""Argument helpers every subcommand shares: negative numbers as values, lists of numbers, number checks.

Torch-free: building the parser (`--help`) must stay fast.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import TypeVar

from pair_datasets.images import check_resolution

Number = TypeVar("Number", int, float)

# Python 3.13's argparse rule for "this looks like a negative number, so it is a value": before 3.13
# only a single number (`-2`) counted, and `--scales -2,-1,0,1,2` was taken for an unknown option.
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def allow_negative_values(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let option values start with a minus sign followed by a digit (`--scales -2,-1,1,2`)."""
    parser._negative_number_matcher = _NEGATIVE_VALUE
    return parser


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """Parse a comma-separated list of finite numbers (`-2,-1,0,1,2`)."""
    values = _parse_list(text, option, float, "numbers")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{option} {text}: expected comma-separated finite numbers")
    return values


def parse_ints(text: str, option: str, minimum: int | None = None) -> tuple[int, ...]:
    """Parse a comma-separated list of integers (`0,1,2`), each at least `minimum` when given."""
    values = _parse_list(text, option, int, "integers")
    if minimum is not None and min(values) < minimum:
        raise ValueError(f"{option} {text}: each must be {minimum} or more")
    return values


def _parse_list(text: str, option: str, convert: Callable[[str], Number], what: str) -> tuple[Number, ...]:
    try:
        values = tuple(convert(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"{option} {text}: expected comma-separated {what}") from error
    if not values:
        raise ValueError(f"{option} {text!r}: expected comma-separated {what}, got none")
    return values


# --- argparse `type=` checks: the message names the option (argparse adds "argument --x:") -------------
def finite_float(text: str) -> float:
    """A finite number (not nan, not inf)."""
    value = _number(float, text, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number, 0 or more."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number from 0 to 1."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text!r}")
    return value


def timestep(text: str) -> float:
    """A timestep on the 1000-step scale: 0 to 1000."""
    value = finite_float(text)
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be a timestep from 0 to 1000, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer, 1 or more."""
    value = _number(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer, 0 or more."""
    value = _number(int, text, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def resolution(text: str) -> int:
    """A training resolution in pixels (the rule of `pair_datasets.images.check_resolution`)."""
    try:
        return check_resolution(_number(int, text, "an integer"), "resolution")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("resolution: ")) from None


def _number(convert: Callable[[str], Number], text: str, what: str) -> Number:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
