"""License facts for the summary and the dataset card: counts, the policy, credit lines.

The card groups sources by license and gives, for every source, the credit a CC BY license
asks for (title, author, source, license with a link, and that the work was changed). Everything
here reads the kept clips' statistics (:mod:`clipfactory.sinks.stats`), never the clips: a
license with more sources than the statistics keep credits for lists its largest sources and
says how many more the index credits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from clipfactory.config import PolicyConfig
from clipfactory.policy.licenses import MISSING, UNKNOWN, license_url, requires_attribution
from clipfactory.records import ClipRecord
from clipfactory.sinks.stats import as_stats

__all__ = ["credit_line", "is_unknown", "license_counts", "license_rows", "license_sections",
           "md_cell", "md_code", "policy_summary", "unknown_license_clips"]

CHANGES = "cut into clips and re-encoded"


# every line break CommonMark or a browser honours (a lone \r ends a Markdown line too)
_BREAKS = re.compile("[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
# what could start Markdown or HTML inside a line: a backslash before punctuation, code,
# emphasis, links and images, raw HTML, pipes (a table's cells), strikethrough, an underscore
# at a word's edge (inside a word it is a letter), and an entity (`&lt;`)
_INLINE = re.compile(r"\\(?=[!-/:-@\[-`{-~])|[`*\[\]<>|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])"
                     r"|&(?=#?[0-9A-Za-z]+;)")
# a heading, quote, list item or setext underline where a line starts
_BLOCK = re.compile(r"^( *)(#{1,6}(?= |$)|>|[+-](?= |$)|\d+(?=[.)](?: |$))|=+$)")


def md_cell(text: object) -> str:
    """``text`` as literal Markdown text, in a table cell or anywhere in a line of the card:
    one line (every line break a space), and every character that could start Markdown or
    HTML escaped with a backslash (pipes too, so a table cell stays one cell); None as
    nothing. Manifest and site text (titles, authors, ids, URLs) cannot restructure the card:
    no heading, link, image, HTML comment or raw tag of theirs is rendered."""
    if text is None:
        return ""
    s = _INLINE.sub(lambda m: "\\" + m.group(0), _BREAKS.sub(" ", str(text)))
    return _BLOCK.sub(lambda m: m.group(1) + (m.group(2) + "\\" if m.group(2)[0].isdigit()
                                              else "\\" + m.group(2)), s)


def md_code(text: object, *, table: bool = False) -> str:
    """``text`` as an inline code span, whatever backticks it holds (a fence longer than its
    longest run of them), on one line; ``table``: inside a table cell, where GFM splits cells
    at pipes before it reads code spans, so they are escaped."""
    s = _BREAKS.sub(" ", "" if text is None else str(text))
    fence = "`" * (max((len(r) for r in re.findall("`+", s)), default=0) + 1)
    pad = " " if s[:1] == "`" or s[-1:] == "`" or (s[:1] == s[-1:] == " " and s.strip()) else ""
    body = s.replace("|", "\\|") if table else s
    return f"{fence}{pad}{body}{pad}{fence}"


def is_unknown(license_id: str | None) -> bool:
    """True for a clip whose license is unknown or missing."""
    return license_id in (None, "", UNKNOWN, MISSING)


def license_counts(stats: Mapping[str, Any] | Iterable[ClipRecord]) -> dict[str, int]:
    """Kept clips per license id, from the kept clips' statistics (or the clips)."""
    return {lic: s["clips"] for lic, s in as_stats(stats)["licenses"].items()}


def unknown_license_clips(stats: Mapping[str, Any]) -> int:
    """Kept clips whose license is unknown or missing."""
    return sum(s["clips"] for lic, s in stats["licenses"].items() if is_unknown(lic))


def license_rows(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per license: clips, videos (``videos_exact`` False when it is an upper bound,
    see :mod:`clipfactory.sinks.stats`), hours and whether credit is required."""
    return [{"license": lic, "clips": s["clips"], "videos": s["videos"],
             "videos_exact": s["video_ids"] is not None, "hours": s["duration_us"] / 3.6e9,
             "credit_required": requires_attribution(lic)}
            for lic, s in sorted(stats["licenses"].items())]


def policy_summary(cfg: PolicyConfig) -> dict[str, Any]:
    """The policy part of ``summary.json``."""
    return {"name": cfg.name or "none", "allow": list(cfg.allow), "deny": list(cfg.deny),
            "allow_unknown": cfg.allow_unknown, "dataset_terms": cfg.dataset_terms,
            "declared_license": cfg.declared_license, "opt_out_file": cfg.opt_out_file}


def credit_line(license_id: str, video_id: str, credit: Mapping[str, Any]) -> str:
    """Markdown credit of one source (a credit of :func:`clipfactory.sinks.stats.kept_stats`):
    title, author, source and license, and the changes."""
    title = credit.get("title")
    author = credit.get("author") or "unknown author"
    url = license_url(license_id)
    lic = f"[{license_id}]({url})" if url else md_code(license_id)
    head = f"“{md_cell(title)}” by {md_cell(author)}" if title else md_cell(author)
    tail = f"; {CHANGES}" if requires_attribution(license_id) else ""
    clips = credit["clips"]
    n = f" ({clips} clips)" if clips != 1 else " (1 clip)"
    return f"- {head}, {md_cell(credit['where'])}, {lic}{tail}. Video {md_code(video_id)}{n}"


def license_sections(summary: dict[str, Any], stats: Mapping[str, Any]) -> list[str]:
    """The card's "Licenses" and "Attribution" sections, as lines of Markdown, from the kept
    clips' statistics."""
    policy = summary.get("policy") or {}
    failed = summary["counts"].get("failed_by_reason", {})
    quarantined = sum(n for k, n in failed.items() if k.startswith("policy/"))
    lines = ["## Licenses", ""]
    name = policy.get("name", "none")
    if name == "none":
        lines += ["No license policy was applied: nothing was gated, every license below is "
                  "as the sources state it.", ""]
    else:
        terms = f"; dataset terms: {policy['dataset_terms']}" if policy.get("dataset_terms") \
            else ""
        lines += [f"License policy: **{md_cell(name)}**{md_cell(terms)}. {quarantined} inputs were "
                  "quarantined by it (see `rejected.parquet`, stage `policy`).", ""]
    unknown = unknown_license_clips(stats)
    if unknown:
        lines += [f"> **Warning:** {unknown} clips have an unknown or missing license. Check "
                  "their terms before any use beyond private research.", ""]
    lines += ["| license | clips | videos | hours | credit required |", "|---|---|---|---|---|"]
    rows = license_rows(stats)
    for r in rows:
        videos = r["videos"] if r["videos_exact"] else f"≤ {r['videos']}"
        lines.append(f"| {md_cell(r['license'])} | {r['clips']} | {videos} | {r['hours']:.3f} | "
                     f"{'yes' if r['credit_required'] else 'no'} |")
    if not all(r["videos_exact"] for r in rows):
        lines += ["", "≤: an upper bound. Too many videos to count each once: every shard counted"
                  " its own, so a video whose clips lie in several shards counts in each."]
    lines += ["", "## Attribution", "",
              "Sources grouped by license, with the credit each license asks for. Each source "
              f"was {CHANGES}.", ""]
    for lic, s in sorted(stats["licenses"].items()):
        url = license_url(lic)
        lines += [f"### {md_cell(lic)}" + (f" ({url})" if url else ""), ""]
        lines += [credit_line(lic, vid, credit) for vid, credit in s["credits"].items()]
        lines += _left_out(s)
        lines.append("")
    return lines


def _left_out(s: Mapping[str, Any]) -> list[str]:
    """The line for the sources a capped credit list leaves out (largest sources are listed)."""
    clips = s["clips"] - sum(c["clips"] for c in s["credits"].values())
    if clips <= 0 and not s["credits_trimmed"]:
        return []
    sources = s["videos"] - len(s["credits"])
    more = (f"{sources} more sources" if s["video_ids"] is not None
            else f"At most {sources} more sources")
    return [f"- {more} ({clips} clips) are not listed here: their credits are the `attribution`,"
            " `source_url` and `license` columns of the index (the sources with the most clips"
            " are listed above)."]
