"""``clipfactory takedown``: remove sources, and every clip derived from them, from a dataset.

Sources are matched by URL, local path, video id, or any opt-out rule (see
:mod:`clipfactory.policy.optout`) against every input the ledger knows, whatever its state.
Matched inputs are marked ``removed``: a later run over the same input skips them, and the
rules are kept in the ledger so the same source under another row, or the same bytes under
another name, never comes back. Shards, ``index.parquet``, ``rejected.parquet``, the summary
and the card are rewritten; the audit record goes to the ledger and ``audit.jsonl``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from clipfactory.config import stored_config
from clipfactory.ledger import Ledger, query_in
from clipfactory.lock import holds_output_lock
from clipfactory.policy.optout import OptOutList, Rule, facts_of_row, parse_rule
from clipfactory.provenance.ingest import keep_takedown_rules
from clipfactory.provenance.removal import Removal, remove_inputs

__all__ = ["open_output", "refresh_outputs", "takedown", "takedown_rules"]

log = logging.getLogger("clipfactory")


def open_output(out: str | Path) -> Ledger:
    """The ledger of an existing output folder (``FileNotFoundError`` if there is none)."""
    path = Path(out) / "ledger.sqlite"
    if not path.is_file():
        raise FileNotFoundError(f"no clipfactory output in {out} (ledger.sqlite missing)")
    return Ledger(path)


def takedown_rules(sources: Iterable[str] = (), video_ids: Iterable[str] = (),
                   opt_out_file: str | Path | None = None) -> OptOutList:
    """Rules for the takedown flags: ``--source`` is a URL or a local path, ``--video-id`` an
    id, and ``--opt-out-file`` any rules."""
    rules: list[Rule] = []
    for s in sources:
        text = s.strip()
        rule = parse_rule(text if "://" in text else f"path:{text}")
        if rule is not None:
            rules.append(rule)
    rules += [Rule("id", v.strip(), f"id:{v.strip()}") for v in video_ids if v.strip()]
    listed = OptOutList.from_file(opt_out_file) if opt_out_file else OptOutList()
    return OptOutList(rules) + listed


def refresh_outputs(out: str | Path, ledger: Ledger) -> dict:
    """Rewrite index, rejected, summary and card from the ledger (the run's own config)."""
    from clipfactory.pipeline import finalize

    cfg = stored_config(ledger.get_meta("config"))
    return finalize(out, cfg, ledger)


def _same_bytes(ledger: Ledger, hashes: list[str]) -> list:
    """Inputs whose content hash is one of ``hashes`` (an index lookup, in seq order)."""
    rows = query_in(ledger.db, "SELECT * FROM videos WHERE source_sha256 IN ({})", hashes)
    return sorted(rows, key=lambda r: r["seq"])


@holds_output_lock("takedown")
def takedown(out: str | Path, rules: OptOutList, reason: str, *,
             refresh: bool = True) -> Removal:
    """Remove every input matching ``rules`` (see the module docstring); returns the record.

    With no match nothing is removed, but the rules are still kept (so the sources are never
    ingested later) and the request is recorded in the audit log.
    """
    if not reason.strip():
        raise ValueError("a takedown needs a reason")
    if not len(rules):
        raise ValueError("a takedown needs at least one source, video id or rule")
    out = Path(out)
    ledger = open_output(out)
    try:
        keep_takedown_rules(ledger, (r.canonical for r in rules.rules), reason)
        rows, why = [], {}
        for r in ledger.iter_videos():  # paged: memory stays bounded at any dataset size
            if r["state"] != "removed" and (rule := rules.match(facts_of_row(r))) is not None:
                rows.append(r)
                why[r["item_key"]] = rule.text
        # the same bytes under another row (a re-upload, a copy) go too
        hashes = {r["source_sha256"]: r["item_key"] for r in rows if r["source_sha256"]}
        for r in _same_bytes(ledger, sorted(hashes)):
            if r["item_key"] not in why and r["state"] != "removed":
                rows.append(r)
                why[r["item_key"]] = f"same content as {hashes[r['source_sha256']]}"
        codes = dict.fromkeys(why, "taken_down")
        removal = remove_inputs(out, ledger, rows, why, kind="takedown", reason=reason,
                                state="removed", stage="takedown", codes=codes,
                                rules=[r.text for r in rules.rules])
        log.info("takedown: %d inputs, %d clips, %d shards rewritten (%s)", len(rows),
                 len(removal.clips), len(removal.shards), reason)
        if refresh:
            refresh_outputs(out, ledger)
        return removal
    finally:
        ledger.close()
