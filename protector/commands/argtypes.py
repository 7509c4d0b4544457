"""argparse `type=` checks for numeric flags: a bad number is argparse's one-line error, exit 2.

Every command validates its numbers where they enter, so a `--batch-size 0` never reaches
`range()` or a DataLoader as a traceback. Each function raises `argparse.ArgumentTypeError`,
which argparse prints as `PROG: error: argument --flag: MESSAGE`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from protector.budget import parse_budget


def _integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def int_at_least(low: int) -> Callable[[str], int]:
    """A whole number >= `low`."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def int_in(low: int, high: int) -> Callable[[str], int]:
    """A whole number in low..high (both included)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value

    return parse


quality = int_in(1, 100)
# numpy and torch both accept seeds in 0 .. 2**32 - 1 (numpy refuses negative seeds)
seed = int_in(0, 2**32 - 1)


def unit_interval(text: str) -> float:
    """A number in [0, 1] (a blend strength)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def budget(text: str) -> float:
    """A perturbation budget as a fraction of the pixel range in (0, 1]: `2/255` or `0.0078`."""
    try:
        return parse_budget(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def lightning_devices(text: str) -> int | str:
    """Lightning's `devices`: auto, a count >= 1, -1 (all), or device indices `0,` / `0,1`.

    A bare 0 would ask Lightning for no device at all, which it reports as a traceback.
    """
    text = text.strip()
    if text == "auto":
        return text
    if "," in text:
        indices = [part.strip() for part in text.split(",") if part.strip()]
        if not indices or not all(part.isdigit() for part in indices):
            raise argparse.ArgumentTypeError(f"{text!r}: device indices are whole numbers >= 0, e.g. '0,' or '0,1'")
        return text
    value = _integer(text)
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(
            f"{value} devices would run on none: give a count >= 1, auto, -1 (all), or indices like '0,' or '0,1'")
    return value
