"""Argument types for the command line: numbers with bounds, refused by argparse with one
usage line (exit 2) instead of a traceback from deep inside a benchmark (``--videos 0``: a
ZeroDivisionError; ``--width 161``: an encoder refusing odd sizes; ``--minutes nan``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["count", "frame_side", "levels", "seconds"]


def count(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """A whole number in ``[low, high]``."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if n < low or (high is not None and n > high):
            raise argparse.ArgumentTypeError(
                f"{n} is outside {low}..{high}" if high is not None else f"{n} is below {low}")
        return n
    return parse


def frame_side(text: str) -> int:
    """A frame width or height for generated video: even (4:2:0), 16 to 8192."""
    n = count(16, 8192)(text)
    if n % 2:
        raise argparse.ArgumentTypeError(f"{n} is odd: 4:2:0 video needs even sizes")
    return n


def seconds(text: str) -> float:
    """A finite length of time above 0."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a length of time above 0")
    return x


def levels(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers of at least 1 (``1,4,16``)."""
    got = tuple(count(1, 4096)(x.strip()) for x in text.split(",") if x.strip())
    if not got:
        raise argparse.ArgumentTypeError("at least one level")
    return got
