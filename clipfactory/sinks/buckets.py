"""Shard buckets: the resolution, aspect and duration class of a clip, and bucketed shard names.

Training code batches clips of one shape together, so a dataset can be written one folder of
shards per bucket (``shards.bucket_by``). A bucket's name is its classes joined by ``_`` in the
order ``bucket_by`` gives them, e.g. ``720p_16x9_5-10s``:

- **resolution** by the short side (a portrait 720x1280 clip is ``720p``): the largest class
  whose minimum short side the clip reaches; a clip below every class is ``lt<smallest>``
  (``lt360p``).
- **aspect**: the nearest ratio by ``|log(w/h) - log(ratio)|`` (ties go to the ratio listed
  first); ``16:9`` is named ``16x9``. Frame sizes of the clip file, square pixels assumed.
- **duration**: edges ``[0, 5, 10, 30]`` give ``0-5s``, ``5-10s``, ``10-30s`` and ``30s+``
  (half-open ``[lo, hi)``); a clip shorter than the first edge is ``lt<edge>s``.

Every name is ``[A-Za-z0-9.+-]`` only, so a bucket is a safe folder name and ``_`` splits it.
This module is pure: :mod:`clipfactory.config` validates with it, the writers name with it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_ASPECT_BINS",
    "DEFAULT_DURATION_BINS",
    "DEFAULT_RESOLUTION_BINS",
    "DIMENSIONS",
    "Bucketing",
    "aspect_class",
    "duration_class",
    "next_indices",
    "parse_shard_name",
    "resolution_class",
    "shard_name",
]

DIMENSIONS = ("resolution", "aspect", "duration")
DEFAULT_RESOLUTION_BINS: dict[str, int] = {
    "360p": 360, "480p": 480, "720p": 720, "1080p": 1080, "2160p": 2160}
DEFAULT_ASPECT_BINS: tuple[str, ...] = ("9:16", "3:4", "1:1", "4:3", "16:9", "21:9")
DEFAULT_DURATION_BINS: tuple[float, ...] = (0.0, 5.0, 10.0, 30.0)

_NAME = re.compile(r"^[A-Za-z0-9.+-]+$")
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")
_SHARD = re.compile(r"^shard-(\d+)\.tar$")


def _check_resolution_bins(bins: Mapping[str, int]) -> dict[str, int]:
    if not bins:
        raise ValueError("shards.resolution_bins is empty")
    for name, side in bins.items():
        if not _NAME.match(name) or name in (".", ".."):  # ".." wrote outside shards/
            raise ValueError(f"shards.resolution_bins: class name {name!r} must be letters, "
                             "digits, '.', '+' or '-', not '.' or '..' (it becomes a folder name)")
        if isinstance(side, bool) or not isinstance(side, int) or side < 1:
            raise ValueError(f"shards.resolution_bins: {name!r} needs a positive short side in "
                             f"pixels, got {side!r}")
    if len(set(bins.values())) != len(bins):
        raise ValueError("shards.resolution_bins: two classes have the same short side")
    return dict(sorted(bins.items(), key=lambda kv: kv[1]))


def _parse_ratio(text: str) -> tuple[str, float]:
    m = _RATIO.match(text) if isinstance(text, str) else None
    if m is None or float(m[1]) <= 0 or float(m[2]) <= 0:
        raise ValueError(f"shards.aspect_bins: {text!r} is not a ratio like '16:9'")
    return f"{m[1]}x{m[2]}", float(m[1]) / float(m[2])


def _check_aspect_bins(bins: Sequence[str]) -> tuple[tuple[str, float], ...]:
    if not bins:
        raise ValueError("shards.aspect_bins is empty")
    parsed = tuple(_parse_ratio(b) for b in bins)
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names):
        raise ValueError("shards.aspect_bins: a ratio is listed twice")
    return parsed


def _check_duration_edges(edges: Sequence[float]) -> tuple[float, ...]:
    if not edges:
        raise ValueError("shards.duration_bins is empty")
    out = tuple(float(e) for e in edges)
    if any(not math.isfinite(e) or e < 0 for e in out):
        raise ValueError(f"shards.duration_bins: edges must be finite seconds >= 0, got {list(edges)}")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"shards.duration_bins: edges must be strictly increasing, got "
                         f"{list(edges)}")
    return out


def _resolution(short: int, ordered: Mapping[str, int]) -> str:
    hit = [name for name, side in ordered.items() if short >= side]
    return hit[-1] if hit else f"lt{next(iter(ordered))}"


def _aspect(width: int, height: int, parsed: Sequence[tuple[str, float]]) -> str:
    if width <= 0 or height <= 0:
        raise ValueError(f"no aspect ratio for a {width}x{height} frame")
    r = math.log(width / height)
    return min(parsed, key=lambda nb: abs(r - math.log(nb[1])))[0]


def _sec(x: float) -> str:
    return f"{x:g}"


def _duration(seconds: float, e: Sequence[float]) -> str:
    if seconds < e[0]:
        return f"lt{_sec(e[0])}s"
    for lo, hi in itertools.pairwise(e):
        if seconds < hi:
            return f"{_sec(lo)}-{_sec(hi)}s"
    return f"{_sec(e[-1])}s+"


def resolution_class(width: int, height: int, bins: Mapping[str, int]) -> str:
    """The class of the short side: the largest whose minimum it reaches, else ``lt<smallest>``."""
    return _resolution(min(width, height), _check_resolution_bins(bins))


def aspect_class(width: int, height: int, bins: Sequence[str]) -> str:
    """The nearest ratio by log distance (the first listed wins a tie), named ``WxH``."""
    return _aspect(width, height, _check_aspect_bins(bins))


def duration_class(seconds: float, edges: Sequence[float]) -> str:
    """``lo-his`` for ``lo <= seconds < hi``, ``last s+`` past the last edge."""
    return _duration(seconds, _check_duration_edges(edges))


@dataclass(frozen=True)
class Bucketing:
    """Which dimensions a dataset buckets by, in order, and their classes (validated)."""

    by: tuple[str, ...] = ()
    resolution_bins: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_RESOLUTION_BINS))
    aspect_bins: tuple[str, ...] = DEFAULT_ASPECT_BINS
    duration_bins: tuple[float, ...] = DEFAULT_DURATION_BINS
    _res: dict[str, int] = field(init=False, repr=False, compare=False)
    _asp: tuple[tuple[str, float], ...] = field(init=False, repr=False, compare=False)
    _dur: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [d for d in self.by if d not in DIMENSIONS]
        if unknown:
            raise ValueError(f"shards.bucket_by: unknown {unknown}; choose from {list(DIMENSIONS)}")
        if len(set(self.by)) != len(self.by):
            raise ValueError(f"shards.bucket_by lists a dimension twice: {list(self.by)}")
        # validated and parsed once: bucket() runs for every clip
        object.__setattr__(self, "_res", _check_resolution_bins(self.resolution_bins))
        object.__setattr__(self, "_asp", _check_aspect_bins(self.aspect_bins))
        object.__setattr__(self, "_dur", _check_duration_edges(self.duration_bins))

    @property
    def enabled(self) -> bool:
        return bool(self.by)

    def bucket(self, width: int, height: int, duration_s: float) -> str | None:
        """The bucket of a clip, or ``None`` when bucketing is off (the flat layout)."""
        if not self.by:
            return None
        parts = {"resolution": lambda: _resolution(min(width, height), self._res),
                 "aspect": lambda: _aspect(width, height, self._asp),
                 "duration": lambda: _duration(duration_s, self._dur)}
        return "_".join(parts[d]() for d in self.by)


def shard_name(bucket: str | None, index: int) -> str:
    """A shard's name relative to ``shards/``: ``shard-000003.tar`` or ``B/shard-000003.tar``."""
    base = f"shard-{index:06d}.tar"
    return f"{bucket}/{base}" if bucket else base


def parse_shard_name(name: str) -> tuple[str | None, int]:
    """``(bucket, index)`` of a name :func:`shard_name` made (``ValueError`` otherwise)."""
    bucket, _, base = name.rpartition("/")
    m = _SHARD.match(base)
    if m is None or "/" in bucket:
        raise ValueError(f"not a shard name: {name!r}")
    return bucket or None, int(m[1])


def next_indices(names: Iterable[str]) -> dict[str | None, int]:
    """The next free shard number of each bucket (``None``: the flat layout)."""
    nxt: dict[str | None, int] = {}
    for n in names:
        bucket, i = parse_shard_name(n)
        nxt[bucket] = max(nxt.get(bucket, 0), i + 1)
    return nxt
