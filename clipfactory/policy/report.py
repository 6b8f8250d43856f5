"""License facts for the summary and the dataset card: counts, the policy, credit lines.

The card groups sources by license and gives, for every source, the credit a CC BY license
asks for (title, author, source, license with a link, and that the work was changed).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from clipfactory.config import PolicyConfig
from clipfactory.policy.licenses import MISSING, UNKNOWN, license_url, requires_attribution
from clipfactory.records import ClipRecord

__all__ = ["credit_line", "is_unknown", "license_counts", "license_sections", "md_cell",
           "policy_summary"]

CHANGES = "cut into clips and re-encoded"


def md_cell(text: object) -> str:
    """``text`` safe inside a Markdown table cell (the card's tables): pipes escaped, one line,
    None as nothing."""
    return str(text).replace("|", "\\|").replace("\n", " ") if text is not None else ""


def is_unknown(license_id: str | None) -> bool:
    """True for a clip whose license is unknown or missing."""
    return license_id in (None, "", UNKNOWN, MISSING)


def license_counts(kept: Sequence[ClipRecord]) -> dict[str, int]:
    """Kept clips per license id."""
    counts: dict[str, int] = defaultdict(int)
    for c in kept:
        counts[c.license or MISSING] += 1
    return dict(sorted(counts.items()))


def policy_summary(cfg: PolicyConfig) -> dict[str, Any]:
    """The policy part of ``summary.json``."""
    return {"name": cfg.name or "none", "allow": list(cfg.allow), "deny": list(cfg.deny),
            "allow_unknown": cfg.allow_unknown, "dataset_terms": cfg.dataset_terms,
            "declared_license": cfg.declared_license, "opt_out_file": cfg.opt_out_file}


def credit_line(c: ClipRecord, clips: int = 1) -> str:
    """Markdown credit of one source: title, author, source and license, and the changes."""
    title = c.extra.get("title")
    author = c.attribution or "unknown author"
    where = c.source_url or os.path.basename(c.source)
    lid = c.license or MISSING
    url = license_url(lid)
    lic = f"[{lid}]({url})" if url else f"`{md_cell(lid)}`"
    head = f"“{md_cell(title)}” by {md_cell(author)}" if title else md_cell(author)
    tail = f"; {CHANGES}" if requires_attribution(lid) else ""
    n = f" ({clips} clips)" if clips != 1 else " (1 clip)"
    return f"- {head}, {md_cell(where)}, {lic}{tail}. Video `{md_cell(c.video_id)}`{n}"


def license_sections(summary: dict[str, Any], kept: Sequence[ClipRecord]) -> list[str]:
    """The card's "Licenses" and "Attribution" sections, as lines of Markdown."""
    policy = summary.get("policy") or {}
    failed = summary["counts"].get("failed_by_reason", {})
    quarantined = sum(n for k, n in failed.items() if k.startswith("policy/"))
    by_license: dict[str, list[ClipRecord]] = defaultdict(list)
    for c in kept:
        by_license[c.license or MISSING].append(c)
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
    unknown = sum(len(v) for k, v in by_license.items() if is_unknown(k))
    if unknown:
        lines += [f"> **Warning:** {unknown} clips have an unknown or missing license. Check "
                  "their terms before any use beyond private research.", ""]
    lines += ["| license | clips | videos | hours | credit required |", "|---|---|---|---|---|"]
    for lic, clips in sorted(by_license.items()):
        videos = len({c.video_id for c in clips})
        hours = sum(c.duration_s for c in clips) / 3600
        credit = "yes" if requires_attribution(lic) else "no"
        lines.append(f"| {md_cell(lic)} | {len(clips)} | {videos} | {hours:.3f} | {credit} |")
    lines += ["", "## Attribution", "",
              "Sources grouped by license, with the credit each license asks for. Each source "
              f"was {CHANGES}.", ""]
    for lic, clips in sorted(by_license.items()):
        url = license_url(lic)
        lines += [f"### {md_cell(lic)}" + (f" ({url})" if url else ""), ""]
        per_video: dict[str, list[ClipRecord]] = defaultdict(list)
        for c in clips:
            per_video[c.video_id].append(c)
        for group in per_video.values():
            lines.append(credit_line(group[0], len(group)))
        lines.append("")
    return lines
