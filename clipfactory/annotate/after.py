"""``clipfactory caption OUT``: annotate an existing dataset after the fact.

The same code as run-time annotation (:class:`~clipfactory.stages.feeder.StageFeeder` over
the clips without an ``ok`` result, or all of them with ``force``); the clips are read from
their shards, and the shards' ``KEY.json`` / ``KEY.txt`` are then rewritten atomically by the
finalize step, with index, card and summary. So captioning can run later, on another machine,
against a GPU server, and a killed run resumes like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipfactory.config import CaptionConfig, stored_config
from clipfactory.lock import holds_output_lock
from clipfactory.provenance.takedown import open_output
from clipfactory.stages import check_stages
from clipfactory.stages.feeder import StageFeeder
from clipfactory.stages.store import ensure_schema

__all__ = ["caption_dataset"]


@holds_output_lock("caption")
def caption_dataset(out: str | Path, captions: CaptionConfig | None = None, *,
                    force: bool = False) -> dict[str, Any]:
    """Caption ``out``'s kept clips; ``captions`` overrides the output's own caption config.
    Returns the new summary (its ``stages`` entry says what was done)."""
    from clipfactory.annotate.captions import CaptionStage
    from clipfactory.pipeline import finalize

    out = Path(out)
    ledger = open_output(out)
    try:
        cfg = stored_config(ledger.get_meta("config"))
        if captions is not None:
            cfg.annotate.captions = captions
        if not cfg.annotate.captions.backend:
            raise ValueError("no captioner configured: set annotate.captions (backend, model, "
                             "base_url) in --config")
        stage = CaptionStage(cfg.annotate.captions)
        check_stages([stage], ledger)
        ensure_schema(ledger)
        if force:
            ledger.db.execute("DELETE FROM annotations WHERE stage = ?", (stage.name,))
        ledger.set_meta("config", cfg.model_dump(mode="json"))
        feeder = StageFeeder([stage], out, ledger, cfg)
        try:
            feeder.start()
            done = feeder.finish()
        finally:
            feeder.close()
        summary = finalize(out, cfg, ledger)
        summary["stages"] = done
        return summary
    finally:
        ledger.close()
