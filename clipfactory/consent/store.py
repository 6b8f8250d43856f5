"""Consent evidence in the ledger: what each site said about each input, and when.

One row per (input, signal): whether it refused the input (``enforced``) or was only recorded
(``policy.consent: record``), the URL it was about, where it was said and what it said. A
refusal that later clears (the site changed its robots.txt, a retry got through) is replaced by
what the later fetch saw.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from typing import Any

from clipfactory.consent.checker import REFUSALS
from clipfactory.ledger import Ledger
from clipfactory.redact import public_url, redact_text

__all__ = ["consent_summary", "ensure_consent", "record_consent", "unfinished_purges",
           "write_consent"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consent (
    item_key TEXT NOT NULL,
    signal TEXT NOT NULL,
    enforced INTEGER NOT NULL,
    url TEXT,
    evidence TEXT NOT NULL,
    seen_at TEXT,
    PRIMARY KEY (item_key, signal)
);
"""
_EXAMPLES = 20


def ensure_consent(ledger: Ledger) -> None:
    """The consent table exists (outside a transaction: this commits)."""
    ledger.db.executescript(_SCHEMA)


def record_consent(ledger: Ledger, item_key: str, evidence: Iterable[dict[str, Any]],
                   enforced: bool) -> None:
    """Replace the input's evidence with ``evidence`` (an empty list clears it)."""
    ensure_consent(ledger)
    with ledger.transaction() as db:
        write_consent(db, item_key, evidence, enforced)


def write_consent(db: sqlite3.Connection, item_key: str, evidence: Iterable[dict[str, Any]],
                  enforced: bool) -> None:
    """:func:`record_consent` inside the caller's transaction (the table exists)."""
    rows = [(item_key, e["signal"], int(enforced), e.get("url"), json.dumps(e, sort_keys=True),
             e.get("seen_at")) for e in evidence]
    db.execute("DELETE FROM consent WHERE item_key = ?", (item_key,))
    db.executemany("INSERT OR REPLACE INTO consent VALUES (?,?,?,?,?,?)", rows)


def unfinished_purges(ledger: Ledger) -> dict[str, tuple[str, str]]:
    """Inputs still in the dataset (``done``) with evidence that refused them (``enforced``):
    ``revalidate --purge`` decided to purge them and stopped before it had (only a purge
    records refusing evidence against an input in the dataset; a run's fetch records it
    against an input that then fails). Maps each item key to the refusal's code (its first
    refusing signal, as the purge recorded it) and its detail (as ``revalidate`` says it)."""
    ensure_consent(ledger)
    rows = ledger.db.execute(
        "SELECT c.item_key, c.signal, c.evidence FROM consent c JOIN videos v USING (item_key)"
        " WHERE c.enforced = 1 AND v.state = 'done' ORDER BY v.seq, c.rowid")
    found: dict[str, tuple[str, str]] = {}
    for key, signal, evidence in rows:
        if key in found and found[key][0] in REFUSALS:
            continue
        e = json.loads(evidence)
        detail = f"consent/{signal}: {e.get('where')}: {e.get('value')} ({e.get('url')})"
        if key not in found or signal in REFUSALS:
            found[key] = (signal, detail)
    return found


def consent_summary(ledger: Ledger, mode: str) -> dict[str, Any]:
    """For the summary and the card: the mode, refusals by signal (inputs refused now),
    signals recorded without gating on inputs in the dataset, and a few refusals in full."""
    ensure_consent(ledger)
    refused: Counter[str] = Counter()
    recorded: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    rows = ledger.db.execute(
        "SELECT c.signal, c.enforced, c.evidence, v.state, v.stage, v.source FROM consent c"
        " JOIN videos v USING (item_key) ORDER BY v.seq, c.signal")
    for signal, enforced, evidence, state, stage, source in rows:
        if enforced and stage == "consent" and state in ("failed", "removed"):
            refused[signal] += 1
            if len(examples) < _EXAMPLES:
                # published (summary.json, the card): a signed URL without its secrets
                examples.append({k: public_url(v) if k in ("source", "url") else redact_text(v)
                                 if isinstance(v, str) else v
                                 for k, v in {"source": source, **json.loads(evidence)}.items()})
        elif not enforced and state == "done":
            recorded[signal] += 1
    return {"mode": mode, "refused": dict(sorted(refused.items())),
            "recorded": dict(sorted(recorded.items())), "examples": examples}
