"""Inline SVG charts: histograms and bar charts, written as text (no plotting dependency).

Every bar carries its numbers as data attributes (``data-count``, and ``data-lo``/``data-hi``
for a histogram bin, ``data-label`` for a category), so the page can be checked against the
tables it was made from, and a ``<title>`` that a browser shows on hover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

__all__ = ["SERIES_COLOURS", "bar_chart", "histogram", "histogram_edges"]

SERIES_COLOURS = ("#2f6db5", "#c8553d", "#6a994e", "#8e7dbe")
_W, _H = 320, 150  # plot area of a histogram
_L, _B, _T = 44, 30, 8  # left, bottom and top margins


def _fmt(x: float) -> str:
    """A short tick label."""
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e4 or a < 1e-2:
        return f"{x:.2g}"
    if a >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def histogram_edges(series: Sequence[np.ndarray], bins: int = 20) -> np.ndarray:
    """Common bin edges of all ``series`` (one bin around a single repeated value)."""
    values = np.concatenate([np.asarray(s, np.float64) for s in series]) if series \
        else np.empty(0)
    values = values[np.isfinite(values)]
    if not len(values):
        return np.array([0.0, 1.0])
    lo, hi = float(values.min()), float(values.max())
    # values a rounding apart (a duration of 2.4 s computed as 2.4000000000000004) are one
    # value: bins that narrow cannot be made (numpy refuses), nor would they say anything
    if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):
        mid = (lo + hi) / 2
        pad = max(0.5, abs(mid) * 0.01)
        return np.array([mid - pad, mid + pad])
    return np.histogram_bin_edges(values[:0], bins=bins, range=(lo, hi))


def histogram(title: str, series: Mapping[str, np.ndarray], *, bins: int = 20,
              unit: str = "") -> str:
    """An SVG histogram of one or more named series over shared bins, bars side by side."""
    names = list(series)
    finite = {n: _finite(series[n]) for n in names}
    edges = histogram_edges(list(finite.values()), bins)
    counts = {n: np.histogram(finite[n], bins=edges)[0] for n in names}
    top = max([1, *(int(c.max()) for c in counts.values() if len(c))])
    nb = len(edges) - 1
    slot = _W / nb
    bw = (slot - 1) / max(1, len(names))
    parts = [f'<svg class="chart hist" role="img" '
             f'viewBox="0 0 {_L + _W + 8} {_T + _H + _B + 16}" width="{_L + _W + 8}" '
             f'height="{_T + _H + _B + 16}" data-title="{escape(title)}" data-bins="{nb}">',
             f"<title>{escape(title)}</title>"]
    parts += _axes(top)
    for k, n in enumerate(names):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        for i in range(nb):
            c = int(counts[n][i])
            h = _H * c / top
            x = _L + i * slot + k * bw
            lo, hi = float(edges[i]), float(edges[i + 1])
            parts.append(
                f'<rect class="bar" data-series="{escape(n)}" data-count="{c}" '
                f'data-lo="{lo!r}" data-hi="{hi!r}" x="{x:.2f}" y="{_T + _H - h:.2f}" '
                f'width="{max(bw, 0.5):.2f}" height="{h:.2f}" fill="{colour}">'
                f"<title>{escape(n)}: {c} in [{_fmt(lo)}, {_fmt(hi)}{']' if i == nb - 1 else ')'}"
                f"{escape(unit)}</title></rect>")
    y = _T + _H + 14
    parts += [f'<text x="{_L}" y="{y}" class="tick">{_fmt(float(edges[0]))}</text>',
              f'<text x="{_L + _W / 2}" y="{y}" class="tick" text-anchor="middle">'
              f"{_fmt(float(edges[nb // 2]))}</text>" if nb > 1 else "",
              f'<text x="{_L + _W}" y="{y}" class="tick" text-anchor="end">'
              f"{_fmt(float(edges[-1]))}{escape(unit)}</text>"]
    x = _L
    for k, n in enumerate(names):  # legend
        total = int(counts[n].sum())
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        label = f"{n} ({total})"
        parts.append(f'<rect x="{x}" y="{y + 8}" width="9" height="9" fill="{colour}"/>'
                     f'<text x="{x + 12}" y="{y + 16}" class="legend">{escape(label)}</text>')
        x += 22 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def _finite(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, np.float64)
    return v[np.isfinite(v)]


def _axes(top: int) -> list[str]:
    return [f'<line x1="{_L}" y1="{_T + _H}" x2="{_L + _W}" y2="{_T + _H}" class="axis"/>',
            f'<line x1="{_L}" y1="{_T}" x2="{_L}" y2="{_T + _H}" class="axis"/>',
            f'<text x="{_L - 4}" y="{_T + 8}" class="tick" text-anchor="end">{top}</text>',
            f'<text x="{_L - 4}" y="{_T + _H}" class="tick" text-anchor="end">0</text>']


def bar_chart(title: str, counts: Mapping[str, int], *, limit: int = 16) -> str:
    """A horizontal bar chart of counts per label, largest first; labels beyond ``limit`` are
    summed into one ``other`` bar."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) > limit:
        rest = sum(n for _, n in items[limit - 1:])
        items = [*items[:limit - 1], (f"other ({len(items) - limit + 1} more)", rest)]
    top = max([1, *(n for _, n in items)])
    row, lw, bw = 18, 150, 200
    h = row * max(1, len(items)) + 8
    parts = [f'<svg class="chart bars" role="img" '
             f'viewBox="0 0 {lw + bw + 60} {h}" width="{lw + bw + 60}" height="{h}" '
             f'data-title="{escape(title)}"><title>{escape(title)}</title>']
    if not items:
        parts.append('<text x="4" y="14" class="tick">no data</text>')
    for i, (label, n) in enumerate(items):
        y = 4 + i * row
        w = bw * n / top
        short = label if len(label) <= 24 else label[:23] + "…"
        parts.append(
            f'<g class="bar" data-label="{escape(label)}" data-count="{n}">'
            f'<title>{escape(label)}: {n}</title>'
            f'<text x="{lw - 4}" y="{y + 12}" class="tick" text-anchor="end">{escape(short)}</text>'
            f'<rect x="{lw}" y="{y + 2}" width="{w:.2f}" height="{row - 5}" '
            f'fill="{SERIES_COLOURS[0]}"/>'
            f'<text x="{lw + w + 4:.2f}" y="{y + 12}" class="tick">{n}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
