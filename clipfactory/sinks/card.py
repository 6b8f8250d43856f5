"""The dataset card (``README.md`` in the output folder): what is inside, how it was made,
licenses and the attribution list."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipfactory.policy.report import license_sections
from clipfactory.records import ClipRecord

__all__ = ["render_card", "write_card"]


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") if text is not None else ""


def render_card(summary: dict[str, Any], kept: Sequence[ClipRecord], config_yaml: str) -> str:
    """The card as Markdown."""
    counts = summary["counts"]
    last_shard = max(0, len(summary.get("shards", [])) - 1)
    lines = [
        "# Dataset card",
        "",
        f"Curated by clipfactory {summary['version']}. {counts['clips']['kept']} clips, "
        f"{counts['hours_out']:.3f} hours, from {counts['videos']['done']} videos "
        f"({counts['hours_in']:.3f} hours in); {counts['videos']['failed']} inputs failed.",
        "",
        "## Layout",
        "",
        "- `shards/shard-NNNNNN.tar`: WebDataset shards; each clip is `KEY.mp4` (H.264, yuv420p,"
        " timestamps from 0) and `KEY.json` (its index row).",
        "- `index.parquet`: one row per clip (source, span in frames and seconds, license,"
        " attribution, shard, key).",
        "- `rejected.parquet`: every dropped clip and failed input, with stage and reason.",
        "",
        "```python",
        "import webdataset as wds",
        f'ds = wds.WebDataset("shards/shard-{{000000..{last_shard:06d}}}.tar")'
        '.to_tuple("mp4", "json")',
        "```",
        "",
    ]
    lines += license_sections(summary, kept)  # policy, license table, attribution by license
    lines += ["## What was removed", "", "| stage/reason | clips |", "|---|---|"]
    for reason, n in counts["dropped_by_reason"].items():
        lines.append(f"| {_md(reason)} | {n} |")
    lines += ["", "| failed inputs: stage/reason | inputs |", "|---|---|"]
    for reason, n in counts["failed_by_reason"].items():
        lines.append(f"| {_md(reason)} | {n} |")
    if counts.get("removed_by_reason"):
        lines += ["", "| removed sources (takedown, opt-out, gone upstream) | inputs |",
                  "|---|---|"]
        lines += [f"| {_md(r)} | {n} |" for r, n in counts["removed_by_reason"].items()]
    lines += ["", "## Configuration", "", "```yaml", config_yaml.rstrip(), "```", ""]
    return "\n".join(lines)


def write_card(path: str | Path, summary: dict[str, Any], kept: Sequence[ClipRecord],
               config_yaml: str) -> None:
    """Write the card atomically."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(render_card(summary, kept, config_yaml), encoding="utf-8")
    os.replace(tmp, p)
