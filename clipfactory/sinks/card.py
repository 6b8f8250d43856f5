"""The dataset card (``README.md`` in the output folder): what is inside, how it was made,
licenses and the attribution list."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from clipfactory.atomic import write_atomic
from clipfactory.consent.card import consent_lines
from clipfactory.policy.report import license_sections, md_cell, md_code
from clipfactory.records import ClipRecord
from clipfactory.sinks.card_media import layout_lines, loading_lines, media_lines
from clipfactory.sinks.hf_card import front_matter
from clipfactory.sinks.stats import as_stats

__all__ = ["render_card", "write_card"]


def render_card(summary: dict[str, Any], stats: Mapping[str, Any], config_yaml: str) -> str:
    """The card as Markdown, from the summary and the kept clips' statistics
    (:func:`clipfactory.sinks.stats.merge_stats` of every shard's)."""
    counts = summary["counts"]
    lines = [
        *front_matter(stats),  # YAML for Hugging Face datasets: configs, declared features
        "# Dataset card",
        "",
        f"Curated by clipfactory {summary['version']}. {counts['clips']['kept']} clips, "
        f"{counts['hours_out']:.3f} hours, from {counts['videos']['done']} videos "
        f"({counts['hours_in']:.3f} hours in); {counts['videos']['failed']} inputs failed.",
        "",
        "## Layout",
        "",
        *layout_lines(stats),  # flat or bucketed; no claim about codecs (see Clips)
        "- `index.parquet`: one row per clip (source, span in frames and seconds, license,"
        " attribution, shard, key).",
        "- `rejected.parquet`: every dropped clip and failed input, with stage and reason.",
        "- `report.html`: the HTML report (opens from disk): thumbnails of kept clips and of"
        " what each filter and dedup dropped, failed inputs, distributions, licenses.",
        "",
    ]
    lines += media_lines(stats, summary)  # codecs, pixel formats, sizes, buckets, models
    lines += loading_lines(stats)  # the lines of docs/loaders.md
    lines += _annotation_lines(summary)
    lines += license_sections(summary, stats)  # policy, license table, attribution by license
    lines += consent_lines(summary)  # sites' AI-training reservations: refused or recorded
    lines += ["## What was removed", "", "| stage/reason | clips |", "|---|---|"]
    for reason, n in counts["dropped_by_reason"].items():
        lines.append(f"| {md_cell(reason)} | {n} |")
    lines += ["", "| failed inputs: stage/reason | inputs |", "|---|---|"]
    for reason, n in counts["failed_by_reason"].items():
        lines.append(f"| {md_cell(reason)} | {n} |")
    if counts.get("removed_by_reason"):
        lines += ["", "| removed sources (takedown, opt-out, gone upstream) | inputs |",
                  "|---|---|"]
        lines += [f"| {md_cell(r)} | {n} |" for r, n in counts["removed_by_reason"].items()]
    lines += ["", "## Configuration", "", "```yaml", config_yaml.rstrip(), "```", ""]
    changes = summary.get("config_changes") or []
    if changes:  # the clips recorded before a change were made with the settings before it
        lines += ["The settings above are the last run's. Earlier runs of this output used "
                  "others, and the clips they recorded keep them:", ""]
        for c in changes:
            what = "; ".join(f"{md_code(k)}: {md_cell(json.dumps(v[0]))} before, "
                             f"{md_cell(json.dumps(v[1]))} from then on"
                             for k, v in list(c["changed"].items())[:12])
            lines.append(f"- {md_cell(c['at'])}: {what}")
        lines.append("")
    return "\n".join(lines)


def _annotation_lines(summary: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    a = summary.get("annotations")
    if a:
        m = a.get("embedding_model") or {}
        lines += ["## Annotations", ""]
        if m:
            lines += [f"Embeddings: {a['embeddings']} clips, model {md_code(m['model'])} at revision "
                      f"{md_code(m['revision'])}, {m['dim']} dimensions, in `embeddings/*.parquet`"
                      " (`clip_id`, `embedding`, `model`, `revision`).", ""]
        cats = a.get("categories") or {}
        if cats:
            total = sum(cats.values())
            lines += ["| category | clips | share |", "|---|---|---|"]
            lines += [f"| {md_cell(k)} | {n} | {100 * n / total:.1f} % |" for k, n in cats.items()]
            lines.append("")
        cap = a.get("captions")
        if cap:
            by = cap.get("by_status") or {}
            lines += ["Captions: " + ", ".join(f"{n} {k}" for k, n in by.items()) + " (`caption`,"
                      " `caption_status`, `caption_model` in the index; `KEY.txt` in the shards;"
                      " `source` = the manifest's own caption).", ""]
            c = cap.get("captioner")
            if c:
                lines += [f"Captioned by {md_code(c['model'])} ({c['backend']}"
                          + (f", {md_cell(c['base_url'])}" if c.get("base_url") else "")
                          + f"), {c['fps']} frames/s up to {c['max_frames']} per request, longer"
                          f" side at most {c['max_side']} px, decoding {md_cell(c['params'])}."
                          " Prompt:", "", "> " + md_cell(c["prompt"]), ""]
        if a.get("failed_by_reason"):
            lines += ["| annotation failed: stage/reason | clips (kept, not annotated) |",
                      "|---|---|"]
            lines += [f"| {md_cell(r)} | {n} |" for r, n in a["failed_by_reason"].items()]
            lines.append("")
    mix = summary.get("mix")
    if mix:
        lines += ["## Category mix", "",
                  f"Written by `clipfactory mix` from {md_code(mix['source'])} (seed {mix['seed']}"
                  + (f", at most {mix['max_clips']} clips" if mix.get("max_clips") else "")
                  + "): as many clips as the counts allow at the target shares.", "",
                  "| category | target | achieved | clips | available |", "|---|---|---|---|---|"]
        for k, share in mix["target"].items():
            lines.append(f"| {md_cell(k)} | {100 * share:.1f} % | {100 * mix['achieved'].get(k, 0):.1f}"
                         f" % | {mix['counts'].get(k, 0)} | {mix['available'].get(k, 0)} |")
        lines.append("")
    s = summary.get("semantic_dedup")
    if s:
        eps = s["eps"]
        lines += ["## Semantic dedup", "",
                  f"k-means with {s['clusters']} clusters (trained on {s['trained_on']} clips); "
                  + (f"eps = {eps}: a clip whose cosine similarity to a kept clip is at least "
                     f"{1 - eps:g} is dropped (`dedup/semantic_duplicate`)." if eps is not None
                     else "`semantic_eps: null`: nothing dropped. Choose eps from the table."),
                  ""]
        q = s.get("quantiles") or {}
        if q:
            lines += ["Nearest-neighbour cosine similarity of kept clips (within their cluster):"
                      f" p50 {q['p50']:.4f}, p90 {q['p90']:.4f}, p99 {q['p99']:.4f}, "
                      f"max {q['max']:.4f}.", "",
                      "| eps | similarity at least | kept clips with a neighbour that close |",
                      "|---|---|---|"]
            lines += [f"| {r['eps']:g} | {r['threshold']:.3f} | {r['clips']} "
                      f"({100 * r['share']:.1f} %) |" for r in s["eps_table"]]
            lines.append("")
    return lines


def write_card(path: str | Path, summary: dict[str, Any],
               stats: Mapping[str, Any] | Iterable[ClipRecord], config_yaml: str) -> None:
    """Write the card atomically (``stats`` may be the kept clips themselves, when few)."""
    write_atomic(path, render_card(summary, as_stats(stats), config_yaml))
