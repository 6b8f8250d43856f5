"""The ledger-scale bench builds a valid ledger: the bulk rows equal what ``record`` writes."""

from __future__ import annotations

from clipfactory.bench.ledger_scale import fill, measure, panda_clip
from clipfactory.ledger import Ledger


def test_fill_writes_a_ledger_the_run_can_read(tmp_path):
    path = tmp_path / "ledger.sqlite"
    figures = fill(path, 300, recorded=100)  # 10 videos through record(), 20 in bulk
    assert figures["videos"] == 30
    ledger = Ledger(path)
    try:
        counts = ledger.counts()
        assert counts["videos"]["done"] == 30 and counts["clips"]["kept"] == 300
        by_id = {c.clip_id: c for c in ledger.clips("sharded")}
        recorded, bulk = panda_clip(3, 4, "id:v000000003"), panda_clip(25, 9, "id:v000000025")
        assert by_id[recorded.clip_id].to_dict() == recorded.to_dict()
        assert by_id[bulk.clip_id].to_dict() == bulk.to_dict()
        done = {r["item_key"]: r for r in ledger.videos("done")}
        assert done["id:v000000025"]["source_sha256"] == f"{25:064x}"
    finally:
        ledger.close()
    wall, mib = measure(path, "resume")
    assert wall > 0 and mib > 0
    ledger = Ledger(path)
    try:
        assert ledger.pending_count() == 100  # the step registered 100 new inputs
    finally:
        ledger.close()
