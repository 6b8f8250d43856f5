"""Text from outside made well-formed Unicode before anything stores or prints it.

JSON may escape half of a surrogate pair on its own (``"\\ud800"``): Python's ``json`` turns
it into a one-character string that no UTF-8 encoder accepts, so SQLite refused the row and
the dataset card could not be written, in every later finalize too. Such a lone surrogate
becomes U+FFFD, the replacement character, as a decoder would make of a broken byte; every
other character is kept.
"""

from __future__ import annotations

from typing import Any

__all__ = ["well_formed"]


def _text(s: str) -> str:
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def well_formed(value: Any) -> Any:
    """``value`` with every string in it (dict keys and values, list items) well-formed."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {well_formed(k): well_formed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(well_formed(v) for v in value)
    return value
