"""``clipfactory retry DIR``: run again only the inputs that failed, and only when it may help.

By default: inputs whose fetch failed for a reason that can pass (a 429, a 5xx, a dropped or
stalled connection, a paused host, a 403) and whose next retry time has come. ``now`` ignores
the retry time; ``all_failures`` adds every other failed input (a 404, a media error, a
timeout) except manifest rejections and license-policy decisions, which a retry cannot change.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from clipfactory.config import Config, stored_config
from clipfactory.ledger import Ledger
from clipfactory.lock import holds_output_lock

__all__ = ["requeue_changed_files", "requeue_failed", "retry"]

_NEVER = ("ingest", "policy", "takedown")  # decisions about the row, not failures of a try
# a file's content failed these stages (truncated, not media, undecodable, not there)
_FILE_STAGES = ("probe", "analyse")


def requeue_failed(ledger: Ledger, *, now: bool = False, all_failures: bool = False,
                   at: float | None = None) -> list[str]:
    """Move the chosen failed inputs back to pending; returns their item keys."""
    t = time.time() if at is None else at
    keys = []
    for r in ledger.videos("failed"):
        if r["stage"] in _NEVER:
            continue
        due = r["next_retry_at"] is not None and (now or r["next_retry_at"] <= t)
        if due or all_failures:
            keys.append(r["item_key"])
    if keys:
        ledger.set_video_state(keys, "pending")
    return keys


def requeue_changed_files(ledger: Ledger) -> list[str]:
    """Move back to pending the local files that failed as files (probe or analysis: cut
    short, not yet media, undecodable, unreadable, missing) and differ now from what was read
    then (size, modification or change time; a missing file that is there now): the recording
    or download still being written when a run first saw it, the file given read permission,
    the file that has appeared. Every run does
    this before it starts, so a folder run again as files land in it loses none of them. A
    file unchanged since it failed stays failed. Returns the requeued item keys."""
    from clipfactory.worker import file_state

    keys = []
    for r in ledger.iter_videos("failed"):
        if r["stage"] in _FILE_STAGES and r["file_state"] is not None and \
                file_state(r["source"]) not in (r["file_state"], "-"):
            keys.append(r["item_key"])
    if keys:
        ledger.set_video_state(keys, "pending")
    return keys


@holds_output_lock("retry", "output")
def retry(output: str | Path, *, now: bool = False, all_failures: bool = False,
          quiet: bool = True, cfg: Config | None = None,
          allow_private_network: bool = False) -> dict[str, Any]:
    """Requeue (see :func:`requeue_failed`) and run the output again with its own config."""
    from clipfactory.pipeline import run

    out = Path(output)
    path = out / "ledger.sqlite"
    if not path.is_file():
        raise FileNotFoundError(f"no run found in {out}")
    ledger = Ledger(path)
    try:
        keys = requeue_failed(ledger, now=now, all_failures=all_failures)
        waiting = [r["next_retry_at"] for r in ledger.videos("failed")
                   if r["next_retry_at"] is not None]
        stored = ledger.get_meta("config")
    finally:
        ledger.close()
    if cfg is None:
        cfg = stored_config(stored)
    if allow_private_network:
        cfg.fetch.allow_private_network = True
    summary = run(None, out, cfg, quiet=quiet) if keys else {}
    summary["retry"] = {"requeued": len(keys),
                        "next_retry_at": min(waiting) if waiting and not keys else None}
    return summary
