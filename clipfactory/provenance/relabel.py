"""A manifest row corrected after its input was cut: the clips take the new license,
attribution and source URL, or leave the dataset if the policy no longer allows them.

A manifest said ``CC-BY-4.0`` and the owner writes that it is ``CC-BY-NC-4.0``; an author's
name was misspelt; a page moved. The user edits the row and runs again. Registering the row
(:meth:`clipfactory.ledger.Ledger.register`) updates the input and records, in the same
commit, what the fields were (the ``relabels`` table). Then, for each such input that is in
the dataset, :func:`apply_relabels`:

- decides it again under the output's policy, with the new license;
- not allowed now: removes it as the policy's re-check does (:func:`remove_inputs`, audit kind
  ``policy``, the input ``failed`` at stage ``policy``);
- allowed: stamps every clip with the new license (normalised and as written), attribution,
  source URL and decision, marks the shards holding them stale (the run's finalize rewrites
  their ``KEY.json`` and the index from the ledger), and appends an audit record of kind
  ``relabelled`` with the values before and after;

all in the order a kill can repeat: the audit record first, then the clips, the stale shards
and the ``relabels`` row in one commit. Inputs not in the dataset (pending, failed) need only
the row: they are cut, or decided again by the gate, with what it says now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from clipfactory.ledger import RELABELLED, Ledger, query_in
from clipfactory.policy.gate import Gate
from clipfactory.provenance.removal import append_audit, remove_inputs
from clipfactory.redact import public_url

__all__ = ["Relabelled", "apply_relabels"]


@dataclass
class Relabelled:
    """Inputs whose clips took corrected labels, and those the policy no longer allows."""

    inputs: list[str] = field(default_factory=list)
    clips: int = 0
    removed: list[str] = field(default_factory=list)


def _shown(k: str, v: str | None) -> str | None:
    return public_url(v) if k == "source_url" else v  # a signed URL's secrets stay out


def apply_relabels(ledger: Ledger, gate: Gate, out: str | Path) -> Relabelled:
    """Bring the clips of every relabelled input in line (see the module docstring)."""
    from clipfactory.stages.store import ensure_schema, mark_stale

    found = Relabelled()
    before = {r[0]: json.loads(r[1]) for r in
              ledger.db.execute("SELECT item_key, before FROM relabels ORDER BY item_key")}
    if not before:
        return found
    ensure_schema(ledger)  # stale_shards
    rows = sorted(query_in(ledger.db, "SELECT * FROM videos WHERE item_key IN ({})", before),
                  key=lambda r: r["seq"])
    for row in rows:
        key = row["item_key"]
        if row["state"] != "done":
            ledger.db.execute("DELETE FROM relabels WHERE item_key = ?", (key,))
            continue
        d = gate.decide_row(row)
        if not d.allowed:
            remove_inputs(out, ledger, [row], {key: f"{d.reason}: {d.detail}"}, kind="policy",
                          reason=f"its manifest row now gives the license {row['license']!r}",
                          state="failed", stage="policy", codes={key: d.reason})
            ledger.record_decisions([gate.decision_row(key, d, row["license"])])
            ledger.db.execute("DELETE FROM relabels WHERE item_key = ?", (key,))
            found.removed.append(key)
            continue
        clips = ledger.clips_of([key])
        raw = gate.raw_license(row["license"])
        for c in clips:
            c.license, c.license_raw = d.license, raw
            c.attribution, c.source_url = row["attribution"], public_url(row["source_url"])
            c.policy_decision, c.policy_reason = d.status, d.reason
        was = before[key]
        append_audit(out, ledger, "relabelled", {
            "reason": "the input's manifest row was corrected",
            "videos": [{"item_key": key, "source": public_url(row["source"]),
                        "video_id": row["video_id"],
                        "before": {k: _shown(k, v) for k, v in was.items()},
                        "after": {k: _shown(k, row[k]) for k in RELABELLED if k in was}}],
            "clips": [c.clip_id for c in clips if c.state in ("staged", "sharded")]})
        with ledger.transaction() as db:
            ledger.write_clips(db, clips)
            mark_stale(db, (c.shard for c in clips if c.state == "sharded" and c.shard))
            ledger.write_decisions(db, [gate.decision_row(key, d, row["license"])])
            db.execute("DELETE FROM relabels WHERE item_key = ?", (key,))
        found.inputs.append(key)
        found.clips += sum(c.state in ("staged", "sharded") for c in clips)
    return found
