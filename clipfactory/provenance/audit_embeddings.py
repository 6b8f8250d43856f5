"""The embeddings part of ``clipfactory audit``: ``embeddings/`` against the ledger.

Problems: a part the ledger lists is missing or its sha256 differs
(``embedding_part_missing``, ``embedding_part_hash_mismatch``); a part file the ledger does not
know (``orphan_embedding_part``); a vector whose clip the ledger does not know, or that is in
two parts (``orphan_embedding``, ``duplicate_embedding``); a vector the ledger places in a
part that lacks it (``embedding_missing``); a vector of a clip whose source was
taken down, opted out or quarantined (``embedding_of_removed_clip``): a takedown must purge it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from clipfactory.ledger import query_in
from clipfactory.stages.store import EMBEDDINGS_DIR, ensure_schema
from clipfactory.worker import file_sha256

__all__ = ["check_embeddings"]

_REMOVAL_STAGES = ("takedown", "policy")


def _states(ledger: Any, ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """clip_id -> (clip state, clip stage, source state) of the given clips (one part's: the
    whole ledger is never held at once)."""
    return {r[0]: (r[1], r[2], r[3]) for r in query_in(
        ledger.db, "SELECT c.clip_id, c.state, c.stage, v.state FROM clips c JOIN videos v"
        " ON v.item_key = c.item_key WHERE c.clip_id IN ({})", ids)}


def check_embeddings(out: Path, ledger: Any, report: Any) -> None:
    """Add the problems found to ``report`` (an :class:`~clipfactory.provenance.audit.AuditReport`)."""
    ensure_schema(ledger)
    parts = {r[0]: r[1] for r in ledger.db.execute("SELECT name, sha256 FROM embedding_parts")}
    d = out / EMBEDDINGS_DIR
    files = {p.name: p for p in d.glob("*.parquet")} if d.is_dir() else {}
    seen: dict[str, str] = {}
    for name in sorted(set(parts) | set(files)):
        if name not in files:
            report.add("embedding_part_missing", f"embeddings/{name} is listed but not on disk")
            continue
        if name not in parts:
            report.add("orphan_embedding_part", f"embeddings/{name} is unknown to the ledger")
            continue
        if file_sha256(str(files[name])) != parts[name]:
            report.add("embedding_part_hash_mismatch", f"embeddings/{name} changed on disk")
        ids = pq.read_table(files[name], columns=["clip_id"]).column(0).to_pylist()
        state = _states(ledger, sorted(set(ids)))
        for cid in ids:
            if cid in seen:
                report.add("duplicate_embedding", f"in {seen[cid]} and {name}", clip=cid)
            seen[cid] = name
            st = state.get(cid)
            if st is None:
                report.add("orphan_embedding", f"embeddings/{name}: clip unknown to the ledger",
                           clip=cid)
            elif st[2] == "removed" or (st[0] == "dropped" and st[1] in _REMOVAL_STAGES):
                report.add("embedding_of_removed_clip",
                           f"embeddings/{name} still holds the vector of a removed clip",
                           clip=cid)
    for cid, part in ledger.db.execute("SELECT clip_id, part FROM embeddings"):
        if seen.get(cid) != part and part in files:
            report.add("embedding_missing",
                       f"the ledger says embeddings/{part} holds this vector; it does not",
                       clip=cid)
    report.checked["embeddings"] = len(seen)
