"""The page: summary, galleries, distributions, licenses and policy, as one HTML document.

Self-contained: the style and the one small script are inline, charts are inline SVG, and the
only files it refers to are the thumbnails beside it (relative ``report_files/`` paths). Every
piece of text from the data is escaped.
"""

from __future__ import annotations

import time
from html import escape, unescape
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clipfactory.policy.licenses import requires_attribution
from clipfactory.report.data import ReportData, score_columns
from clipfactory.report.gallery import dedup_section, dropped_section, failed_section, kept_section
from clipfactory.report.sample import Samples
from clipfactory.report.style import CSS, SCRIPT
from clipfactory.report.svg import bar_chart, histogram
from clipfactory.report.thumbs import Thumb

__all__ = ["aspect_label", "render_page"]

_ASPECTS = {"16:9": 16 / 9, "4:3": 4 / 3, "1:1": 1.0, "9:16": 9 / 16, "3:4": 3 / 4,
            "21:9": 21 / 9, "3:2": 3 / 2, "2:3": 2 / 3, "1.85:1": 1.85, "2.39:1": 2.39}


def aspect_label(width: int, height: int) -> str:
    """The common name of an aspect ratio within 1.5 %, else ``W/H`` to two decimals."""
    if not width or not height:
        return "?"
    r = width / height
    name, ref = min(_ASPECTS.items(), key=lambda kv: abs(kv[1] - r))
    return name if abs(ref - r) / ref <= 0.015 else f"{r:.2f}:1"


def _table(head: list[str], rows: list[list[Any]], cls: str = "") -> str:
    h = "".join(f"<th>{escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}"><tr>{h}</tr>{body}</table>'


def _summary(data: ReportData) -> str:
    s = data.summary
    c = s.get("counts", {})
    v, k = c.get("videos", {}), c.get("clips", {})
    shards = s.get("shards", [])
    cards = [("videos in", v.get("total", 0)), ("videos done", v.get("done", 0)),
             ("inputs failed", v.get("failed", 0)), ("inputs removed", v.get("removed", 0)),
             ("clips kept", k.get("kept", 0)), ("clips dropped", k.get("dropped", 0)),
             ("hours in", f"{c.get('hours_in', 0.0):.3f}"),
             ("hours out", f"{c.get('hours_out', 0.0):.3f}"),
             ("shards", len(shards)),
             ("shard GiB", f"{sum(x.get('bytes', 0) for x in shards) / 2**30:.3f}")]
    parts = ['<section id="summary"><h2>Summary</h2><div class="cards">']
    parts += [f'<div class="card" data-key="{escape(n)}"><b>{escape(str(x))}</b>{escape(n)}</div>'
              for n, x in cards]
    parts.append("</div>")
    t = s.get("throughput") or {}
    if t:
        rows = [["wall time", f"{t.get('wall_s', 0)} s"],
                ["video processed", f"{t.get('media_s', 0)} s"],
                ["worker CPU time", f"{t.get('cpu_s', 0)} s"], ["workers", t.get("workers", "")],
                ["x realtime", t.get("x_realtime", "")],
                ["x realtime per core", t.get("x_realtime_per_core", "")]]
        parts += ["<h3>Throughput (last run that processed videos)</h3>",
                  _table(["", ""], rows, "kv")]
    a = s.get("annotations") or {}
    m = a.get("embedding_model") or {}
    if m:
        parts.append(f"<p>Embeddings: {a.get('embeddings', 0)} clips, model "
                     f"<code>{escape(str(m.get('model')))}</code>.</p>")
    parts.append("</section>")
    return "".join(parts)


def _coverage(data: ReportData) -> str:
    """What the charts cover: every row, or the sample read (empty string: every row)."""
    said = []
    k, r = data.kept_sample, data.rejected_sample
    if k is not None:
        unit = "index parts" if k.unit == "parts" else k.unit
        said.append(f"{k.rows} of {k.total} kept clips ({k.units} of {k.of_units} {unit})")
    if r is not None:
        said.append(f"{r.rows} of {r.total} rejected rows ({r.units} of {r.of_units} {r.unit})")
    if not said:
        return ""
    return ("a sample of " + " and ".join(said) + ": whole parts, the same on every build, "
            "chosen by a hash of their name")


def _sample_note(data: ReportData) -> str:
    cover = _coverage(data)
    if not cover:
        return ""
    return (f'<p class="sampled" id="sampled">This dataset is large: distributions, galleries'
            f" and the tables of rows below are over {escape(cover)}. Every count (clips, "
            "inputs, reasons) is exact, from <code>summary.json</code>.</p>")


def _pair_counts(table: pa.Table, a: str, b: str) -> list[tuple[Any, Any, int]]:
    if not len(table):
        return []
    g = table.group_by([a, b]).aggregate([([], "count_all")]).to_pylist()
    return [(r[a], r[b], r["count_all"]) for r in g]


def _counts(table: pa.Table, col: str) -> dict[str, int]:
    if not len(table):
        return {}
    vc = pc.value_counts(pc.drop_null(table.column(col))).to_pylist()
    return {str(d["values"]): int(d["counts"]) for d in vc}


def _title(svg: str) -> str:
    return unescape(svg.split('data-title="', 1)[1].split('"', 1)[0]) if "data-title" in svg \
        else ""


def _plots(data: ReportData) -> str:
    idx, clips = data.index, data.clips
    dur_kept = idx.column("duration_s").to_numpy(zero_copy_only=False).astype(np.float64)
    dur_drop = (pc.subtract(clips.column("end_s"), clips.column("start_s"))
                .to_numpy(zero_copy_only=False).astype(np.float64)) if len(clips) else np.empty(0)
    res: dict[str, int] = {}
    asp: dict[str, int] = {}
    for w, h, n in _pair_counts(idx, "width", "height"):
        res[f"{w}x{h}"] = res.get(f"{w}x{h}", 0) + n
        label = aspect_label(w or 0, h or 0)
        asp[label] = asp.get(label, 0) + n
    charts = [("duration", histogram("clip duration (s)", {"kept": dur_kept,
                                                            "dropped": dur_drop}, unit=" s")),
              ("resolution", bar_chart("resolution of kept clips", res)),
              ("aspect", bar_chart("aspect ratio of kept clips", asp)),
              ("codec", bar_chart("codec / pixel format of kept clips", {
                  f"{c or 'unknown'} {p or 'unknown'}": n
                  for c, p, n in _pair_counts(idx, "video_codec", "pix_fmt")})),
              ("camera_motion", bar_chart("camera motion, kept", _counts(idx, "camera_motion"))),
              ("camera_motion_dropped",
               bar_chart("camera motion, dropped", _counts(clips, "camera_motion")))]
    models = _counts(idx, "caption_model")
    if models:
        charts.append(("caption_model", bar_chart("caption model of kept clips", models)))
    cats = _counts(idx, "category")
    if cats:
        charts.append(("category", bar_chart("category of kept clips", cats)))
    kept_scores, drop_scores = score_columns(idx), score_columns(clips)
    for name in sorted(set(kept_scores) | set(drop_scores)):
        charts.append((f"score:{name}", histogram(name, {
            "kept": kept_scores.get(name, np.empty(0)),
            "dropped": drop_scores.get(name, np.empty(0))})))
    cover = _coverage(data)
    what = (f"Over {escape(cover)}." if cover else "Over every clip: kept clips from the "
            "index (<code>index.parquet</code> or <code>index/</code>), dropped ones from the "
            "rejected rows.")
    parts = ['<section id="plots"><h2>Distributions</h2>'
             f'<p data-coverage="{"sample" if cover else "all"}">{what}</p><div class="charts">']
    parts += [f'<div class="plot" data-plot="{escape(key)}"><h4>{escape(_title(svg))}</h4>{svg}'
              "</div>" for key, svg in charts]
    parts.append("</div></section>")
    return "".join(parts)


def _licenses(data: ReportData) -> str:
    idx = data.index
    rows: list[list[Any]] = []
    exact = data.summary.get("license_table")  # from the kept clips' statistics (finalize)
    if exact is not None:
        rows = [[r["license"], r["clips"], r["videos"] if r["videos_exact"] else f"≤ {r['videos']}",
                 f"{r['hours']:.3f}", "yes" if r["credit_required"] else "no"] for r in exact]
    elif len(idx):
        lic = idx.set_column(idx.column_names.index("license"), "license",
                             pc.fill_null(idx.column("license"), "missing"))
        g = lic.group_by("license").aggregate([
            ("clip_id", "count"), ("video_id", "count_distinct"), ("duration_s", "sum")])
        for r in sorted(g.to_pylist(), key=lambda r: r["license"]):
            rows.append([r["license"], r["clip_id_count"], r["video_id_count_distinct"],
                         f"{(r['duration_s_sum'] or 0) / 3600:.3f}",
                         "yes" if requires_attribution(r["license"]) else "no"])
    parts = ['<section id="licenses"><h2>Licenses and policy</h2>']
    if rows and exact is None and data.kept_sample is not None:
        parts.append(f"<p>Over the sampled index rows ({data.kept_sample.rows} of "
                     f"{data.kept_sample.total} kept clips).</p>")
    parts.append(_table(["license", "clips", "videos", "hours", "credit required"], rows,
                        "licenses") if rows else "<p>No kept clips.</p>")
    p = data.summary.get("policy") or {}
    if p:
        parts += ["<h3>Policy</h3>", _table(["setting", "value"], [
            [k, ", ".join(map(str, v)) if isinstance(v, list) else ("—" if v is None else v)]
            for k, v in p.items()], "kv")]
    if data.decisions:
        parts += ["<h3>Policy decisions per input</h3>",
                  _table(["decision", "reason", "inputs"], [list(d) for d in data.decisions],
                         "decisions")]
    consent = data.summary.get("consent") or {}
    refused, recorded = consent.get("refused") or {}, consent.get("recorded") or {}
    if refused or recorded:
        parts += [f"<h3>Consent signals (mode: {escape(str(consent.get('mode', '?')))})</h3>",
                  _table(["signal", "inputs refused", "recorded, not gating"],
                         [[k, refused.get(k, 0), recorded.get(k, 0)]
                          for k in sorted(set(refused) | set(recorded))], "consent")]
    counts = data.summary.get("counts", {})
    gated = {k: n for k, n in _inputs_by_reason(counts).items()
             if k.split("/", 1)[0] in ("policy", "consent", "takedown")}
    if gated:
        parts += ["<h3>Kept out or removed</h3>",
                  _table(["stage/reason", "inputs"], [[k, n] for k, n in gated.items()])]
    parts.append("</section>")
    return "".join(parts)


def _inputs_by_reason(counts: dict[str, Any]) -> dict[str, int]:
    """Inputs failed and inputs removed, by stage/reason, added up: one reason can be both
    (``consent/noai`` refused at fetch for one input, purged by ``revalidate`` for another)."""
    total: dict[str, int] = dict(counts.get("failed_by_reason", {}))
    for k, n in counts.get("removed_by_reason", {}).items():
        total[k] = total.get(k, 0) + n
    return total


def render_page(data: ReportData, s: Samples, thumbs: dict[str, Thumb], *,
                settings: dict[str, int]) -> str:
    """The whole page as a string."""
    version = data.summary.get("version", "?")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("summary", "Summary"), ("dropped", "Dropped"), ("failed", "Failed inputs"),
        ("dedup", "Dedup"), ("kept", "Kept"), ("plots", "Distributions"),
        ("licenses", "Licenses")))
    sampling = ", ".join(f"{k} {v}" for k, v in settings.items())
    counts = data.summary.get("counts", {})
    failed = _inputs_by_reason(counts) if data.rejected_sample is not None else None
    body = [_summary(data), _sample_note(data), dropped_section(s, thumbs),
            failed_section(data.videos, failed), dedup_section(s, thumbs),
            kept_section(s, data.kept_total, thumbs), _plots(data), _licenses(data)]
    cover = _coverage(data)
    covered = (f"Counts are exact; charts and galleries cover {cover}." if cover
               else "Counts and charts cover every row.")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>clipfactory report: {escape(data.out.name)}</title><style>{CSS}</style>"
        "</head><body>"
        f"<header><h1>clipfactory report <small>{escape(str(data.out))}</small></h1>"
        f"<nav>{nav}</nav></header><main>{''.join(body)}</main>"
        f"<footer>Made by clipfactory {escape(str(version))} on {when}. Thumbnails: first, "
        "middle and last frame of each clip shown, from the shards for kept clips and from the "
        "sources for dropped ones; clips shown are a fixed sample (the same on every build) "
        f"of at most: {escape(sampling)}. {escape(covered)}</footer>"
        f"<script>{SCRIPT}</script></body></html>\n")
