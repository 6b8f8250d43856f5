"""The picture parts of the page: a section per drop reason, the failed inputs, the dedup
groups and the kept clips, each clip a card with its strip (or a placeholder), span, source and
scores."""

from __future__ import annotations

import re
from html import escape
from pathlib import PurePath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clipfactory.ids import short_hash
from clipfactory.report.sample import DedupGroup, Samples, reason_column
from clipfactory.report.thumbs import Thumb

__all__ = ["clip_card", "dedup_section", "dropped_section", "failed_section", "kept_section",
           "reason_anchor"]

_MAX_FAILED_ROWS = 50  # per reason


def reason_anchor(prefix: str, reason: str) -> str:
    """A stable element id for a reason (readable part plus a hash: ids stay unique)."""
    return f"{prefix}-{re.sub(r'[^A-Za-z0-9_-]+', '-', reason).strip('-')}-{short_hash(reason, 6)}"


def _name(source: str | None) -> str:
    if not source:
        return "?"
    return source.rstrip("/").rsplit("/", 1)[-1] if "://" in source else PurePath(source).name


def _num(x: float | None) -> str:
    if x is None:  # a map value Parquet holds as null (an index written by another tool)
        return "none"
    return f"{x:.3g}" if abs(x) < 1000 or x != x else f"{x:.0f}"


def clip_card(r: dict[str, Any], thumb: Thumb | None, *, role: str = "",
              extra: list[str] | None = None) -> str:
    """One clip: strip (or placeholder), span, source, scores and ``extra`` lines."""
    cid = r["clip_id"]
    if thumb is not None and thumb.file:
        pic = (f'<img class="strip" src="{escape(thumb.file)}" '
               f'alt="first, middle and last frame of {escape(cid)}">')
    else:
        why = thumb.why if thumb is not None and thumb.why else "no thumbnail"
        pic = f'<div class="placeholder" data-why="{escape(why)}">{escape(why)}</div>'
    s, e = r.get("start_frame"), r.get("end_frame")
    t0, t1 = r.get("start_s") or 0.0, r.get("end_s") or 0.0
    lines = [f'<div class="span">frames {s}–{e} · {t0:.2f}–{t1:.2f} s ({t1 - t0:.2f} s)</div>',
             f'<div class="src" title="{escape(r.get("source") or "")}">'
             f"{escape(_name(r.get('source')))}</div>"]
    scores = r.get("scores") or {}
    if scores:
        lines.append('<div class="scores">' + " · ".join(
            f"{escape(k)} {_num(v)}" for k, v in sorted(scores.items())
            if not k.startswith("category.")) + "</div>")
    if r.get("camera_motion"):
        lines.append(f'<div class="meta">camera {escape(r["camera_motion"])}</div>')
    lines += extra or []
    cls = f"clip {role}".strip()
    return (f'<figure class="{cls}" data-clip="{escape(cid)}">{pic}'
            f"<figcaption>{''.join(lines)}</figcaption></figure>")


def _n(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _shown(n: int, total: int) -> str:
    if not n and total:
        return "none: not in the rows read"
    return f"all {total}" if n >= total else f"{n} of {total}, a fixed sample"


def dropped_section(s: Samples, thumbs: dict[str, Thumb]) -> str:
    """A section per drop reason of clips, largest first."""
    parts = ['<section id="dropped"><h2>Dropped clips</h2>']
    if not s.by_reason:
        parts.append("<p>No clip was dropped.</p>")
    for reason, (total, rows) in s.by_reason.items():
        parts.append(
            f'<section class="reason" id="{reason_anchor("drop", reason)}" '
            f'data-reason="{escape(reason)}" data-kind="clip" data-count="{total}">'
            f"<h3>{escape(reason)} <small>{_n(total, 'clip')}; showing {_shown(len(rows), total)}"
            f"</small></h3><div class=\"gallery\">")
        for r in rows:
            extra = [f'<div class="meta">duplicate of {escape(r["duplicate_of"])}</div>'] \
                if r.get("duplicate_of") else []
            if r.get("detail"):
                extra.append(f'<div class="meta">{escape(str(r["detail"]))}</div>')
            parts.append(clip_card(r, thumbs.get(r["clip_id"]), extra=extra))
        parts.append("</div></section>")
    parts.append("</section>")
    return "".join(parts)


def _cut(text: str, n: int) -> str:
    """``text`` of at most ``n`` characters (an ellipsis where it was cut)."""
    return text if len(text) <= n else text[:n - 1] + "…"


def failed_section(videos: pa.Table, totals: dict[str, int] | None = None) -> str:
    """Failed and removed inputs, a table per reason (at most 50 rows each); ``totals`` are the
    counts per reason when ``videos`` holds only a sample of the rows."""
    parts = ['<section id="failed"><h2>Failed inputs</h2>']
    reasons = reason_column(videos)
    counts = {d["values"]: d["counts"] for d in pc.value_counts(reasons).to_pylist()} \
        if len(videos) else {}
    totals = {**counts, **(totals or {})}
    if not totals:
        parts.append("<p>No input failed.</p>")
    else:
        parts.append("<p>Inputs that gave no clips: unreadable or corrupt files, failed "
                     "fetches, sources kept out by the license policy or taken down.</p>")
    for reason, total in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
        rows = videos.filter(pc.equal(reasons, reason)).slice(0, _MAX_FAILED_ROWS).to_pylist() \
            if reason in counts else []
        parts.append(
            f'<section class="reason" id="{reason_anchor("failed", reason)}" '
            f'data-reason="{escape(reason)}" data-kind="video" data-count="{total}">'
            f"<h3>{escape(reason)} <small>{_n(total, 'input')}"
            + ("" if len(rows) >= total else f"; the first {len(rows)} listed"
               if len(rows) == _MAX_FAILED_ROWS else f"; {len(rows)} listed (the rows read)")
            + "</small></h3><table><tr><th>source</th><th>detail</th></tr>")
        for r in rows:  # long URLs and details cut (60 inputs of 20 KB URLs: a 2 MB page)
            parts.append(f'<tr><td title="{escape(_cut(r["source"] or "", 500))}">'
                         f"{escape(_cut(_name(r['source']), 120))}</td>"
                         f"<td>{escape(_cut(r['detail'] or '', 500))}</td></tr>")
        parts.append("</table></section>")
    parts.append("</section>")
    return "".join(parts)


def _group(g: DedupGroup, thumbs: dict[str, Thumb]) -> str:
    if g.keeper is not None:
        keeper = clip_card(g.keeper, thumbs.get(g.keeper_id), role="keeper",
                           extra=['<div class="meta tag">kept</div>'])
    else:
        keeper = (f'<figure class="clip keeper" data-clip="{escape(g.keeper_id)}">'
                  f'<div class="placeholder" data-why="{escape(g.missing)}">kept clip '
                  f"{escape(g.keeper_id)}: {escape(g.missing)}</div></figure>")
    removed = "".join(clip_card(r, thumbs.get(r["clip_id"]), role="removed", extra=[
        f'<div class="meta tag">{escape(r["reason"] or "")}, distance '
        f'{_num((r.get("scores") or {}).get("dedup.distance", float("nan")))}</div>'])
        for r in g.removed)
    more = f'<p class="more">and {g.total - len(g.removed)} more</p>' \
        if g.total > len(g.removed) else ""
    return (f'<div class="group" data-keeper="{escape(g.keeper_id)}" data-removed="{g.total}">'
            f'{keeper}<div class="arrow">removed as duplicates:</div>{removed}{more}</div>')


def dedup_section(s: Samples, thumbs: dict[str, Thumb]) -> str:
    """Dedup groups: the kept clip beside the clips dropped as its duplicates."""
    parts = ['<section id="dedup"><h2>Dedup groups</h2>']
    if not s.groups:
        parts.append("<p>No clip was dropped as a duplicate.</p>")
    else:
        where = "In the rejected rows read (a sample of the parts), " if s.sampled else ""
        parts.append(f"<p>{where}{s.group_total} kept clips had duplicates removed; showing "
                     f"{_shown(len(s.groups), s.group_total)}.</p>")
    parts += [_group(g, thumbs) for g in s.groups]
    parts.append("</section>")
    return "".join(parts)


def kept_section(s: Samples, total: int, thumbs: dict[str, Thumb]) -> str:
    """A gallery of kept clips."""
    parts = [f'<section id="kept" data-count="{total}"><h2>Kept clips <small>{_n(total, "clip")}; '
             f"showing {_shown(len(s.kept), total)}</small></h2><div class=\"gallery\">"]
    for r in s.kept:
        extra = [f'<div class="meta">{escape(r["shard"] or "")} · {escape(r["key"] or "")}</div>']
        if r.get("category"):
            extra.append(f'<div class="meta">category {escape(r["category"])}</div>')
        if r.get("license"):
            extra.append(f'<div class="meta">license {escape(r["license"])}</div>')
        if r.get("caption"):
            extra.append(f'<div class="caption">{escape(_cut(r["caption"], 160))}</div>')
        parts.append(clip_card(r, thumbs.get(r["clip_id"]), extra=extra))
    parts.append("</div></section>")
    return "".join(parts)
