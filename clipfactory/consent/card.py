"""The dataset card's consent section: the mode, what was refused and why, what was recorded."""

from __future__ import annotations

from typing import Any

from clipfactory.policy.report import md_cell

__all__ = ["consent_lines"]


def consent_lines(summary: dict[str, Any]) -> list[str]:
    """Markdown lines for ``summary["consent"]`` (see :func:`consent_summary`)."""
    c = summary.get("consent")
    if not c:
        return []
    lines = ["## Consent signals", ""]
    if c["mode"] == "record":
        lines += ["Mode: **record**. Sites' AI-training reservations (robots.txt, X-Robots-Tag "
                  "noai/noimageai, TDMRep) were recorded, **not enforced**: the dataset's "
                  "user declared a licence that overrides them. Clips whose sources carried "
                  "a reservation are in the dataset.", ""]
    else:
        lines += ["Mode: **enforce**. A source whose site reserves it from AI training "
                  "(robots.txt for `clipfactory` or `*`, X-Robots-Tag noai/noimageai, TDMRep) "
                  "was refused before any media byte was kept.", ""]
    if c["refused"]:
        lines += ["| refused: consent/signal | sources |", "|---|---|"]
        lines += [f"| consent/{md_cell(k)} | {n} |" for k, n in c["refused"].items()]
        lines += ["", "| source | signal | where | what it said | seen |", "|---|---|---|---|---|"]
        lines += [f"| {md_cell(e['source'])} | {md_cell(e['signal'])} | {md_cell(e['where'])} | "
                  f"{md_cell(e['value'])} | {md_cell(e['seen_at'])} |" for e in c["examples"]]
        lines.append("")
    else:
        lines += ["No source was refused.", ""]
    if c["recorded"]:
        lines += ["| recorded, not enforced: signal | sources in the dataset |", "|---|---|"]
        lines += [f"| {md_cell(k)} | {n} |" for k, n in c["recorded"].items()]
        lines.append("")
    return lines
