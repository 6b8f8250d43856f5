"""How the SQLite ledger behaves at 10^5 to 10^7 clips: the measurements behind its limits.

    python -m clipfactory.bench.ledger_scale --clips 1e5,1e6,1e7 --dir /tmp/ledger-scale

For each size, a ledger is filled through the run's own write path (``Ledger.register`` for
the inputs, then ``Ledger.record`` once per video with its clips in one transaction, as the
driver does), with Panda-style clip records (10 clips per video, scores, 8 perceptual hashes,
a caption, cut and fetch provenance; ~1.3 KB of JSON each), all of them sharded. Then, each in
a fresh process (so that its peak RSS is its own):

The clips and inputs beyond the first 10^5 clips are written in bulk (same rows) so that 10^7
builds in minutes; the insert rate is that of the run's path.

- ``status``: :meth:`Ledger.counts` (what ``clipfactory status`` prints);
- ``resume``: 100 new inputs registered, then :meth:`Ledger.pending` (what a run starts with);
- ``finalize load``: :meth:`Ledger.clips` of every sharded clip, what ``finalize`` does today
  (skipped above ``--max-load`` clips: it would not fit in memory; the figure printed then is
  the extrapolation from the largest size measured).

It prints the insert rate, each step's wall time and peak RSS, and the ledger's size on disk.
Timings are of this machine and this run: they go in docs, never in tests.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from clipfactory.ledger import Ledger
from clipfactory.memory import peak_rss_mib
from clipfactory.records import ClipRecord, SourceItem, VideoResult

__all__ = ["CLIPS_PER_VIDEO", "fill", "main", "measure", "panda_clip"]

CLIPS_PER_VIDEO = 10


def panda_clip(v: int, k: int, item_key: str) -> ClipRecord:
    """Clip ``k`` of input ``v``: a Panda-style record (~1.3 KB of JSON), sharded."""
    start = k * 240
    key = f"v{v:09d}_{start:07d}_{start + 240:07d}"
    return ClipRecord(
        clip_id=key, key=key, item_key=item_key, video_id=f"v{v:09d}",
        source=f"https://videos.example.org/watch/{v:09d}", start_frame=start,
        end_frame=start + 240, start_s=start / 30, end_s=(start + 240) / 30, fps=30.0,
        width=1280, height=720, source_url=f"https://videos.example.org/watch/{v:09d}",
        source_sha256=f"{v:064x}", license="CC-BY-4.0", attribution=f"Channel {v % 50_000}",
        license_raw="Creative Commons Attribution license (reuse allowed)",
        policy_decision="allowed", policy_reason="allowed:CC-BY-4.0", state="sharded",
        scores={"brightness.mean": 112.5, "motion.mean": 3.25, "motion.camera": 0.012,
                "motion.object": 0.004, "sharpness.median": 812.0, "dark.fraction": 0.0,
                "aesthetic": 5.1},
        exact_hash=f"{(v * 131 + k):032x}", phash=[(v * 7919 + k * 104729 + i) & (2**63 - 1)
                                                    for i in range(8)],
        bytes=1_800_000, file_sha256=f"{(v * 31 + k):064x}",
        shard=f"shard-{(v * CLIPS_PER_VIDEO + k) // 1000:06d}.tar",
        extra={"caption": "A person walks along a beach at sunset while waves roll in and the "
                          "camera slowly pans to the right.",
               "caption_model": "source", "camera_motion": "pan_right",
               "cut": {"method": "smart", "copied_frames": 200, "audio": False,
                       "codec": "h264", "fallback": None, "note": None, "pix_fmt": "yuv420p"},
               "fetch": {"fetcher": "yt-dlp", "uploader": f"Channel {v % 50_000}",
                         "upload_date": "20210504", "extractor": "youtube"}})


def fill(path: Path, clips: int, recorded: int = 100_000) -> dict[str, float]:
    """A ledger of ``clips`` sharded clips at ``path``; returns the write figures.

    The first ``recorded`` clips go through ``Ledger.record`` one video at a time (the insert
    rate printed is theirs); the rest are written in bulk (the same rows, 10^4 videos per
    transaction), which only makes the large sizes quicker to build."""
    videos = max(1, clips // CLIPS_PER_VIDEO)
    ledger = Ledger(path)
    try:
        items = [SourceItem(item_key=f"id:v{v:09d}", source=f"https://videos.example.org/"
                            f"watch/{v:09d}", id=f"v{v:09d}", license="CC-BY-4.0")
                 for v in range(videos)]
        t0 = time.perf_counter()
        ledger.register(iter(items))
        register_s = time.perf_counter() - t0
        slow = min(videos, max(1, recorded // CLIPS_PER_VIDEO))
        t0 = time.perf_counter()
        for v, item in enumerate(items[:slow]):
            cs = [panda_clip(v, k, item.item_key) for k in range(CLIPS_PER_VIDEO)]
            ledger.record(VideoResult(item=item, video_id=item.id,
                                      source_sha256=f"{v:064x}", clips=cs,
                                      decoded_frames=2400, analysed_s=80.0))
        record_s = time.perf_counter() - t0
        for lo in range(slow, videos, 10_000):
            chunk = items[lo:lo + 10_000]
            with ledger.transaction() as db:
                db.executemany(
                    "UPDATE videos SET state='done', video_id=?, source_sha256=?, frames=2400,"
                    " analysed_s=80.0, attempts=1 WHERE item_key=?",
                    [(it.id, f"{lo + i:064x}", it.item_key) for i, it in enumerate(chunk)])
                db.executemany(
                    "INSERT INTO clips (clip_id, item_key, state, stage, reason, shard, record)"
                    " VALUES (?,?,?,?,?,?,?)",
                    [(c.clip_id, c.item_key, c.state, None, None, c.shard,
                      json.dumps(c.to_dict()))
                     for i, it in enumerate(chunk)
                     for c in (panda_clip(lo + i, k, it.item_key) for k in range(CLIPS_PER_VIDEO))])
        ledger.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        ledger.close()
    return {"videos": videos, "register_s": register_s, "record_s": record_s,
            "clips_per_s": slow * CLIPS_PER_VIDEO / record_s}


def _step(name: str, path: str, q: mp.Queue) -> None:
    t0 = time.perf_counter()
    ledger = Ledger(path)
    try:
        if name == "status":
            ledger.counts()
        elif name == "resume":
            ledger.register(SourceItem(item_key=f"id:new{i}", source=f"/new/{i}.mp4")
                            for i in range(100))
            if ledger.pending_count() != 100 or sum(1 for _ in ledger.pending()) != 100:
                raise RuntimeError("resume step: expected 100 pending inputs")
        elif name == "finalize load":
            ledger.clips("sharded")
    finally:
        ledger.close()
    q.put((time.perf_counter() - t0, peak_rss_mib()))


def measure(path: Path, name: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one step, in a fresh process."""
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_step, args=(name, str(path), q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="1e5,1e6", help="comma-separated sizes")
    ap.add_argument("--dir", default="bench-out/ledger-scale")
    ap.add_argument("--max-load", type=float, default=2e6,
                    help="largest size whose full clip load is measured")
    ap.add_argument("--keep", action="store_true", help="keep the ledgers")
    a = ap.parse_args(argv)
    root = Path(a.dir)
    rows: list[dict[str, Any]] = []
    for n in (int(float(x)) for x in a.clips.split(",") if x.strip()):
        d = root / f"n{n}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        path = d / "ledger.sqlite"
        row: dict[str, Any] = {"clips": n, **fill(path, n)}
        row["bytes"] = sum(f.stat().st_size for f in d.iterdir())
        for name in ("status", "resume", "finalize load"):
            if name == "finalize load" and n > a.max_load:
                row[name] = None
                continue
            row[name] = measure(path, name)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
    print(f"\n{'clips':>10} {'insert clips/s':>15} {'size GiB':>9} {'status s':>9} "
          f"{'MiB':>6} {'resume s':>9} {'MiB':>6} {'load all s':>11} {'MiB':>7}")
    for r in rows:
        load = r["finalize load"]
        print(f"{r['clips']:>10} {r['clips_per_s']:>15.0f} {r['bytes'] / 2**30:>9.2f} "
              f"{r['status'][0]:>9.2f} {r['status'][1]:>6.0f} {r['resume'][0]:>9.2f} "
              f"{r['resume'][1]:>6.0f} " + (f"{load[0]:>11.1f} {load[1]:>7.0f}" if load else
                                            f"{'skipped':>11} {'':>7}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
