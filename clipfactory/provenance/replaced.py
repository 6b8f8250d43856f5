"""Input files replaced since they were cut: their clips go, and they are cut again.

A folder is run again after a file in it was re-encoded, downloaded again, trimmed or swapped
for another under the same name. The clips in the dataset were cut from bytes that are no
longer there, and each names a source (path and SHA-256) that now holds something else, while
the new content would never be read: the input is ``done``.

Every run therefore looks, before it starts, at the local files of its finished inputs:
- size, modification and change time, recorded when the file was read, tell that a file may
  have changed; only then is the file read again, and its SHA-256 tells whether it did;
- the same bytes (a ``touch``, a copy, a restore from backup): only the recorded state is
  updated, nothing is cut again;
- new bytes: every clip of the input leaves the dataset through the one removal path
  (:func:`clipfactory.provenance.removal.remove_inputs`: shards, embeddings, captions, an
  audit record of kind ``replaced``), and the input goes back to ``pending``: this run cuts
  it again, from its new content, under the policy in force;
- inputs set aside as the same bytes as a replaced one (``ingest/duplicate_source``) go back
  to ``pending`` too: the content they hold is no longer in the dataset under the other name.

A file that is gone is left alone: its clips were cut from what it held, and a disk that is
not mounted says nothing about the content. Fetched URLs are not files here (``revalidate``
checks them upstream). A run killed at any point repeats what was left: the recorded state
changes only when the input is cut again.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from clipfactory.ledger import Ledger, query_in
from clipfactory.provenance.removal import remove_inputs
from clipfactory.sources.rows import REMOTE_PREFIXES

__all__ = ["REPLACED", "Replaced", "requeue_replaced_files"]

REPLACED = "source_replaced"  # the code on the input and on its removed clips
_REASON = "the file was replaced since it was cut"
_COLUMNS = "seq, item_key, state, reason, source, file_state, source_sha256"


@dataclass
class Replaced:
    """What :func:`requeue_replaced_files` found: inputs cut again (with the clips they lost
    and the inputs requeued with them), and files changed on disk but not in content."""

    inputs: list[str] = field(default_factory=list)
    clips: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    same_bytes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.inputs or self.duplicates or self.same_bytes)


def _candidate(row: sqlite3.Row) -> bool:
    """A finished input, or one set aside as a duplicate, read from a local file."""
    return ((row["state"] == "done" or row["reason"] == "duplicate_source")
            and row["file_state"] is not None
            and not str(row["source"]).lower().startswith(REMOTE_PREFIXES))


def requeue_replaced_files(ledger: Ledger, out: str | Path) -> Replaced:
    """Find the finished inputs whose files hold other bytes now, remove their clips and
    requeue them (see the module docstring)."""
    from clipfactory.worker import file_sha256, file_state

    found = Replaced()
    changed: list[tuple[sqlite3.Row, str]] = []
    last: tuple[str, str] | None = None  # the rows of one file's spans are consecutive
    # paged, with only the columns the check reads (a row's probe info would be most of it)
    for r in ledger.iter_videos("done", "failed", chunk=20000, columns=_COLUMNS):
        if not _candidate(r):
            continue
        path = r["source"]
        if last is None or last[0] != path:
            last = (path, file_state(path))
        now = last[1]
        if now in (r["file_state"], "-"):
            continue
        changed.append((r, now))
    hashes: dict[str, str | None] = {}  # of the changed files only: one read each
    replaced, same = [], []
    for r, now in changed:
        path = r["source"]
        if path not in hashes:
            try:
                hashes[path] = file_sha256(path)
            except OSError:  # unreadable now: a later run, once it is, decides
                hashes[path] = None
        sha = hashes[path]
        if sha is None:
            continue
        if sha == r["source_sha256"]:
            same.append((r["item_key"], now))
        else:
            replaced.append(r)
    if same:
        ledger.set_file_states(same)
        found.same_bytes = [k for k, _ in same]
    done = [r for r in replaced if r["state"] == "done"]
    dups = [r["item_key"] for r in replaced if r["state"] != "done"]
    # what was set aside as the same bytes as a replaced input is no longer in the dataset
    old = sorted({r["source_sha256"] for r in done if r["source_sha256"]})
    dups += [d["item_key"] for d in query_in(
        ledger.db, "SELECT item_key, state, reason FROM videos WHERE source_sha256 IN ({})",
        old) if d["state"] == "failed" and d["reason"] == "duplicate_source"]
    found.duplicates = list(dict.fromkeys(dups))
    if found.duplicates:
        ledger.set_video_state(found.duplicates, "pending")
    if done:
        keys = [r["item_key"] for r in done]
        done = list(query_in(ledger.db, "SELECT * FROM videos WHERE item_key IN ({})"
                             " ORDER BY seq", keys))  # what the audit record cites
        removal = remove_inputs(out, ledger, done, dict.fromkeys(keys, "file changed on disk"),
                                kind="replaced", reason=_REASON, state="pending",
                                stage="ingest", codes=dict.fromkeys(keys, REPLACED))
        found.inputs, found.clips = keys, removal.clips
    return found
