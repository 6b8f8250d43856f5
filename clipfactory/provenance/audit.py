"""``clipfactory audit``: verify a dataset's shards against its index, ledger and policy.

Every shard is read in full. The audit fails (``AuditReport.ok`` is False) when:

- a shard's sha256 differs from the ledger's or ``summary.json``'s, a shard the ledger lists is
  missing, or a shard file is unknown (``shard_hash_mismatch``, ``shard_missing``,
  ``orphan_shard``, ``unreadable_shard``);
- a shard holds a sample the index does not list, the index lists a clip its shard does not
  hold, a clip's bytes differ from its ``file_sha256``, or its ``KEY.json`` disagrees with its
  index row (``orphan_clip``, ``missing_clip``, ``clip_hash_mismatch``,
  ``clip_metadata_mismatch``); the index and the ledger disagree (``index_mismatch``); a
  clip file lies in ``staging/`` that no staged clip owns (``orphan_file``);
- a clip present is not allowed under the dataset's policy, comes from a removed or
  quarantined source, or from a source the opt-out list or an earlier takedown names
  (``not_allowed``, ``removed_source``, ``quarantined_source``, ``opted_out``);
- ``embeddings/`` disagrees with the ledger, or still holds a removed clip's vector
  (:mod:`clipfactory.provenance.audit_embeddings`).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from clipfactory.config import Config
from clipfactory.policy.optout import OptOutList
from clipfactory.provenance.audit_embeddings import check_embeddings
from clipfactory.provenance.ingest import build_gate
from clipfactory.provenance.takedown import open_output

__all__ = ["AuditReport", "Problem", "audit"]

_EXAMPLES = 5


@dataclass(frozen=True)
class Problem:
    """One finding: its ``kind``, where (shard, clip) and what exactly."""

    kind: str
    detail: str
    shard: str | None = None
    clip: str | None = None


@dataclass
class AuditReport:
    """The findings of one audit; ``ok`` when there are no problems (warnings allowed)."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, detail: str, shard: str | None = None,
            clip: str | None = None) -> None:
        self.problems.append(Problem(kind, detail, shard, clip))

    def render(self) -> str:
        """A readable report: what was checked, then problems grouped by kind."""
        c = self.checked
        lines = [f"audit: {c.get('shards', 0)} shards, {c.get('clips', 0)} clips, "
                 f"{c.get('videos', 0)} sources checked"]
        for w in self.warnings:
            lines.append(f"warning: {w}")
        if self.ok:
            lines.append("OK: shards, index, ledger and policy agree")
            return "\n".join(lines)
        kinds = Counter(p.kind for p in self.problems)
        lines.append(f"FAILED: {len(self.problems)} problems")
        for kind, n in kinds.most_common():
            lines.append(f"  {kind}: {n}")
            for p in [p for p in self.problems if p.kind == kind][:_EXAMPLES]:
                where = " ".join(x for x in (p.shard, p.clip) if x)
                lines.append(f"    - {where + ': ' if where else ''}{p.detail}")
            if n > _EXAMPLES:
                lines.append(f"    ... and {n - _EXAMPLES} more")
        return "\n".join(lines)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


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


def _check_shards(out: Path, report: AuditReport, ledger_shards: dict[str, str],
                  summary_shards: dict[str, str], index: dict[str, dict[str, Any]]) -> None:
    by_shard: dict[str, dict[str, dict[str, Any]]] = {}
    for row in index.values():
        by_shard.setdefault(row["shard"] or "", {})[row["key"]] = row
    root = out / "shards"  # flat, or one folder per bucket: names are paths under shards/
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*.tar")
             if not p.name.startswith(".")} if root.is_dir() else {}
    for name in sorted(set(files) | set(ledger_shards) | set(by_shard)):
        if name not in files:
            report.add("shard_missing", "listed by the ledger or index but not on disk", name)
            continue
        if name not in ledger_shards:
            report.add("orphan_shard", "shard file unknown to the ledger", name)
        sha = _sha256(files[name])
        if name in ledger_shards and sha != ledger_shards[name]:
            report.add("shard_hash_mismatch", f"sha256 {sha[:16]}… but the ledger has "
                       f"{ledger_shards[name][:16]}…", name)
        if name in summary_shards and sha != summary_shards[name]:
            report.add("shard_hash_mismatch", f"sha256 {sha[:16]}… but summary.json has "
                       f"{summary_shards[name][:16]}…", name)
        try:
            samples = _read_shard(files[name])
        except (tarfile.TarError, OSError) as e:
            report.add("unreadable_shard", f"{type(e).__name__}: {e}", name)
            continue
        expected = by_shard.get(name, {})
        for key in sorted(set(samples) - set(expected)):
            report.add("orphan_clip", "sample in the shard but not in index.parquet", name, key)
        for key in sorted(set(expected) - set(samples)):
            report.add("missing_clip", "in index.parquet but not in its shard", name, key)
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
        report.checked["shards"] = report.checked.get("shards", 0) + 1


def _check_sources(out: Path, ledger: Any, cfg: Config, report: AuditReport,
                   index: dict[str, dict[str, Any]], extra: OptOutList) -> None:
    gate = build_gate(ledger, cfg.policy)
    gate.optout = gate.optout + extra
    sharded = {c.clip_id: c for c in ledger.clips("sharded")}
    for cid in sorted(set(sharded) - set(index)):
        report.add("index_mismatch", "sharded in the ledger but not in index.parquet",
                   sharded[cid].shard, cid)
    videos = {r["item_key"]: r for r in ledger.videos()}
    decided: dict[str, Any] = {}
    for cid, row in sorted(index.items()):
        clip = sharded.get(cid)
        item_key = clip.item_key if clip is not None else _item_of(ledger, cid)
        if clip is None:
            report.add("index_mismatch", "in index.parquet but not sharded in the ledger",
                       row["shard"], cid)
        v = videos.get(item_key) if item_key else None
        state = v["state"] if v is not None else "unknown"
        if state == "removed":
            report.add("removed_source", f"{v['source']} was removed ({v['reason']}: "
                       f"{v['detail']})", row["shard"], cid)
            continue
        if state == "failed" and v["stage"] == "policy":
            report.add("quarantined_source", f"{v['source']}: {v['reason']}", row["shard"], cid)
            continue
        if clip is None:
            continue
        if state != "done":
            report.add("index_mismatch", f"source {clip.source} is {state}", row["shard"], cid)
            continue
        if clip.item_key not in decided:
            decided[clip.item_key] = gate.decide_row(v)
        d = decided[clip.item_key]
        if not d.allowed:
            kind = {"opted_out": "opted_out", "taken_down": "removed_source"}.get(
                d.reason, "not_allowed")
            report.add(kind, f"{v['source']}: {d.reason} ({d.detail})", row["shard"], cid)
        elif gate.policy is not None and not gate.policy.decide(
                row["license"] or "missing", cfg.policy.dataset_terms).allowed:
            report.add("not_allowed", f"index license {row['license']!r} is not allowed under "
                       f"policy {gate.policy.name}", row["shard"], cid)
    report.checked["videos"] = len(decided)
    unknown = sum(1 for r in index.values() if r["license"] in (None, "unknown", "missing"))
    if unknown and gate.policy is None:
        report.warnings.append(f"{unknown} clips have an unknown or missing license (no policy "
                               "is set, so nothing was gated)")


def _item_of(ledger: Any, clip_id: str) -> str | None:
    r = ledger.db.execute("SELECT item_key FROM clips WHERE clip_id = ?", (clip_id,)).fetchone()
    return r[0] if r else None


def _check_staging(out: Path, ledger: Any, report: AuditReport) -> None:
    owned = {str(Path(c.staged_path).resolve()) for c in ledger.clips()
             if c.staged_path and c.state in ("staged", "sharded")}
    staging = out / "staging"
    if staging.is_dir():
        for f in sorted(staging.rglob("*.mp4")):
            if str(f.resolve()) not in owned:
                report.add("orphan_file", f"staged clip file no clip owns: {f.relative_to(out)}")


def audit(out: str | Path, opt_out_file: str | Path | None = None) -> AuditReport:
    """Audit an output folder (see the module docstring); ``opt_out_file`` adds rules."""
    out = Path(out)
    report = AuditReport()
    ledger = open_output(out)
    try:
        cfg = Config.model_validate(ledger.get_meta("config") or {})
        oo = cfg.policy.opt_out_file
        if oo and not Path(oo).is_file():
            report.add("opt_out_file_missing", f"the dataset's opt-out list {oo} is missing; "
                       "opted-out sources cannot be verified")
            cfg.policy = cfg.policy.model_copy(update={"opt_out_file": None})
        extra = OptOutList.from_file(opt_out_file) if opt_out_file else OptOutList()
        index_path = out / "index.parquet"
        rows = pq.read_table(index_path).to_pylist() if index_path.is_file() else []
        if not index_path.is_file():
            report.add("index_missing", "index.parquet is missing")
        index = {r["clip_id"]: r for r in rows}
        report.checked["clips"] = len(index)
        ledger_shards = {s["name"]: s["sha256"] for s in ledger.shards()}
        summary_path = out / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        summary_shards = {s["name"]: s["sha256"] for s in summary.get("shards", [])}
        _check_shards(out, report, ledger_shards, summary_shards, index)
        _check_sources(out, ledger, cfg, report, index, extra)
        _check_staging(out, ledger, report)
        check_embeddings(out, ledger, report)
        return report
    finally:
        ledger.close()
