"""The shard side of ``clipfactory audit``: the inventory of shard files, index parts and the
ledger's shard list (all O(shards)), and one shard file read in full against its index rows.

Problems: ``shard_missing``, ``orphan_shard``, ``orphan_index_part``, ``summary_mismatch``
(inventory); ``shard_hash_mismatch``, ``unreadable_shard``, ``orphan_clip``, ``missing_clip``,
``clip_hash_mismatch``, ``clip_metadata_mismatch`` (one shard).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfactory.provenance.audit_index import IndexRows
from clipfactory.worker import file_sha256

__all__ = ["Inventory", "check_inventory", "check_presence", "compare_samples",
           "read_shard_file", "take_inventory"]

_EXAMPLES = 5


@dataclass
class Inventory:
    """What exists: shard files on disk, the ledger's and ``summary.json``'s shard hashes."""

    files: dict[str, Path]
    ledger: dict[str, str]
    summary: dict[str, str] | None  # None when there is no summary.json
    summary_error: str | None = None  # summary.json there but unreadable


def take_inventory(out: Path, ledger: Any) -> Inventory:
    """The inventory of an output folder (reads no shard)."""
    root = out / "shards"  # flat, or one folder per bucket: names are paths under shards/
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*.tar")
             if not p.name.startswith(".")} if root.is_dir() else {}
    path = out / "summary.json"
    summary, error = None, None
    if path.is_file():
        try:
            summary = {s["name"]: s["sha256"]
                       for s in json.loads(path.read_text()).get("shards", [])}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            error = f"{type(e).__name__}: {e}"
    return Inventory(files, {s["name"]: s["sha256"] for s in ledger.shards()}, summary, error)


def check_inventory(inv: Inventory, index: IndexRows, report: Any) -> None:
    """Dataset-wide checks that read no shard: missing and orphan shards, orphan index parts,
    the ledger's shard list against ``summary.json``."""
    indexed = index.shards()
    for name in sorted((set(inv.ledger) | indexed) - set(inv.files)):
        report.add("shard_missing", "listed by the ledger or index but not on disk", name)
    for name in sorted(set(inv.files) - set(inv.ledger)):
        report.add("orphan_shard", "shard file unknown to the ledger", name)
    if index.partitioned:
        for name in sorted(index.part_shards() - set(inv.ledger)):
            report.add("orphan_index_part", f"{index.label(name)}: its shard is unknown to "
                       "the ledger", name)
    if inv.summary is not None and set(inv.summary) != set(inv.ledger):
        only_l = sorted(set(inv.ledger) - set(inv.summary))[:_EXAMPLES]
        only_s = sorted(set(inv.summary) - set(inv.ledger))[:_EXAMPLES]
        report.add("summary_mismatch", f"the ledger lists {len(inv.ledger)} shards, "
                   f"summary.json {len(inv.summary)} (only in the ledger: {only_l}; only in "
                   f"summary.json: {only_s})")


def check_presence(name: str, inv: Inventory, report: Any) -> None:
    """The inventory checks of one shard (when the inventory as a whole is not checked)."""
    if name not in inv.files:
        report.add("shard_missing", "listed by the ledger or index but not on disk", name)
    elif name not in inv.ledger:
        report.add("orphan_shard", "shard file unknown to the ledger", name)


def _read_shard(path: Path) -> dict[str, dict[str, Any]]:
    """key -> {"mp4": sha256 of the clip bytes, "json": parsed metadata}."""
    samples: dict[str, dict[str, Any]] = {}
    with tarfile.open(path, "r:") as tar:
        for m in tar:
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            key, _, ext = base.partition(".")
            data = tar.extractfile(m)
            raw = data.read() if data is not None else b""
            entry = samples.setdefault(key, {})
            if ext == "json":
                try:
                    entry["json"] = json.loads(raw)
                except ValueError:
                    entry["json"] = None
            else:
                entry[ext] = hashlib.sha256(raw).hexdigest()
    return samples


def read_shard_file(name: str, inv: Inventory, report: Any) -> dict[str, dict[str, Any]] | None:
    """Read shard ``name`` (on disk) in full: its hash against the ledger and ``summary.json``,
    and its samples (None when it cannot be read)."""
    sha = file_sha256(str(inv.files[name]))
    if name in inv.ledger and sha != inv.ledger[name]:
        report.add("shard_hash_mismatch", f"sha256 {sha[:16]}… but the ledger has "
                   f"{inv.ledger[name][:16]}…", name)
    summary = inv.summary or {}
    if name in summary and sha != summary[name]:
        report.add("shard_hash_mismatch", f"sha256 {sha[:16]}… but summary.json has "
                   f"{summary[name][:16]}…", name)
    try:
        return _read_shard(inv.files[name])
    except (tarfile.TarError, OSError) as e:
        report.add("unreadable_shard", f"{type(e).__name__}: {e}", name)
        return None


def compare_samples(name: str, samples: dict[str, dict[str, Any]],
                    rows: list[dict[str, Any]], label: str, report: Any) -> None:
    """A shard's samples against its index rows (read from ``label``)."""
    expected = {r["key"]: r for r in rows}
    for key in sorted(set(samples) - set(expected)):
        report.add("orphan_clip", f"sample in the shard but not in {label}", name, key)
    for key in sorted(set(expected) - set(samples)):
        report.add("missing_clip", f"in {label} but not in its shard", name, key)
    for key in sorted(set(expected) & set(samples)):
        row, got = expected[key], samples[key]
        if got.get("mp4") != row["file_sha256"]:
            report.add("clip_hash_mismatch", "clip bytes differ from index file_sha256",
                       name, key)
        meta = got.get("json") or {}
        for col in ("clip_id", "source", "license", "file_sha256"):
            if meta.get(col) != row[col]:
                report.add("clip_metadata_mismatch", f"KEY.json {col}={meta.get(col)!r}, "
                           f"index {row[col]!r}", name, key)
                break
