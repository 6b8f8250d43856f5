"""The ledger and policy side of ``clipfactory audit``, one shard at a time: a shard's index rows
against the ledger's clips in that shard, and each clip's source against the dataset's policy,
its opt-out list and earlier takedowns.

Problems: ``index_mismatch`` (the index and the ledger disagree), ``removed_source``,
``quarantined_source``, ``opted_out``, ``not_allowed``. Only the clips of the shard in hand
and their sources are loaded, so memory follows the largest shard, not the dataset.
"""

from __future__ import annotations

from typing import Any

from clipfactory.config import Config
from clipfactory.ledger import query_in
from clipfactory.policy.optout import OptOutList
from clipfactory.provenance.ingest import build_gate

__all__ = ["SourceCheck"]

_SHARDED = "SELECT clip_id, item_key, state, json_extract(record, '$.source') FROM clips"


class SourceCheck:
    """Checks shards' index rows against the ledger and the policy, one shard per call.

    With ``deferred`` (a full audit) a clip the ledger puts in one shard and the index in
    another is not reported from either side, exactly as when the whole index was one table:
    the ledger-side misses are held until :meth:`finish`, and reported only if no shard's index
    listed the clip.
    """

    def __init__(self, ledger: Any, cfg: Config, extra: OptOutList, *, deferred: bool) -> None:
        self.ledger, self.cfg, self.deferred = ledger, cfg, deferred
        self.gate = build_gate(ledger, cfg.policy)
        self.gate.optout = self.gate.optout + extra
        self.rows = 0
        self.unknown = 0
        self.videos: set[str] = set()
        self._held: list[tuple[str | None, str, str]] = []  # (shard, clip, label)
        self._elsewhere: set[str] = set()  # indexed clips the ledger shards in another shard

    def _sharded_in(self, shard: str) -> dict[str, tuple[str, str | None]]:
        """clip_id -> (item_key, source) of the clips the ledger has sharded in ``shard``."""
        if shard:  # by shard alone, so that SQLite uses the index on clips(shard)
            cur = self.ledger.db.execute(f"{_SHARDED} WHERE shard = ?", (shard,))
        else:  # index rows or sharded clips without a shard
            cur = self.ledger.db.execute(
                f"{_SHARDED} WHERE state = 'sharded' AND (shard IS NULL OR shard = '')")
        return {r[0]: (r[1], r[3]) for r in cur if r[2] == "sharded"}

    def _videos(self, keys: set[str]) -> dict[str, Any]:
        return {r["item_key"]: r for r in query_in(
            self.ledger.db, "SELECT * FROM videos WHERE item_key IN ({})", sorted(keys))}

    def check(self, shard: str, rows: list[dict[str, Any]], label: str, report: Any, *,
              count: bool = True) -> None:
        """Check the index rows of ``shard`` (read from ``label``) and the ledger's clips in it;
        ``count`` False for a second copy of rows already counted."""
        sharded = self._sharded_in(shard)
        ids = {r["clip_id"] for r in rows}
        for cid in sorted(set(sharded) - ids):
            if self.deferred:
                self._held.append((shard or None, cid, label))
            else:
                report.add("index_mismatch", f"sharded in the ledger but not in {label}",
                           shard or None, cid)
        # each row's clip: in this shard's ledger clips, else looked up alone (rare)
        clips: dict[str, tuple[str | None, str | None, bool]] = {}
        for cid in sorted(ids):
            if cid in sharded:
                clips[cid] = (*sharded[cid], True)
                continue
            r = self.ledger.db.execute(f"{_SHARDED} WHERE clip_id = ?", (cid,)).fetchone()
            clips[cid] = (r[1], r[3], r[2] == "sharded") if r else (None, None, False)
            if r and r[2] == "sharded":
                self._elsewhere.add(cid)
        videos = self._videos({k for k, _, _ in clips.values() if k})
        decided: dict[str, Any] = {}
        for row in sorted(rows, key=lambda r: r["clip_id"]):
            self.rows += count
            if count and row["license"] in (None, "unknown", "missing"):
                self.unknown += 1
            cid, where = row["clip_id"], row["shard"]
            if (where or "") != shard:
                report.add("index_mismatch", f"{label} holds a row of shard {where!r}",
                           shard, cid)
            item_key, source, is_sharded = clips[cid]
            if not is_sharded:
                report.add("index_mismatch", f"in {label} but not sharded in the ledger",
                           where, cid)
            v = videos.get(item_key) if item_key else None
            state = v["state"] if v is not None else "unknown"
            if state == "removed":
                report.add("removed_source", f"{v['source']} was removed ({v['reason']}: "
                           f"{v['detail']})", where, cid)
                continue
            if state == "failed" and v["stage"] == "policy":
                report.add("quarantined_source", f"{v['source']}: {v['reason']}", where, cid)
                continue
            if not is_sharded:
                continue
            if state != "done":
                report.add("index_mismatch", f"source {source} is {state}", where, cid)
                continue
            if item_key not in decided:
                decided[item_key] = self.gate.decide_row(v)
                self.videos.add(item_key)
            d = decided[item_key]
            if not d.allowed:
                kind = {"opted_out": "opted_out", "taken_down": "removed_source"}.get(
                    d.reason, "not_allowed")
                report.add(kind, f"{v['source']}: {d.reason} ({d.detail})", where, cid)
            elif self.gate.policy is not None and not self.gate.policy.decide(
                    row["license"] or "missing", self.cfg.policy.dataset_terms).allowed:
                report.add("not_allowed", f"index license {row['license']!r} is not allowed "
                           f"under policy {self.gate.policy.name}", where, cid)

    def finish(self, report: Any) -> None:
        """Report the held ledger-side misses and the unknown-license warning."""
        for shard, cid, label in self._held:
            if cid not in self._elsewhere:
                report.add("index_mismatch", f"sharded in the ledger but not in {label}",
                           shard, cid)
        self._held.clear()
        if self.unknown and self.gate.policy is None:
            report.warnings.append(f"{self.unknown} clips have an unknown or missing license "
                                   "(no policy is set, so nothing was gated)")
