"""A synthetic clipfactory output of N clips, built in bulk: the dataset ``bench-scale`` measures.

    python -m clipfactory.bench.scale_data OUT --clips 1e6 [--no-captions] [--figures FILE]

The folder is what ``clipfactory run`` leaves behind, so ``run``, ``status``, ``takedown`` and
``audit`` take it as it is: a ledger with N/10 inputs ``done`` (Panda-style manifest rows with
ids) and their clips ``sharded`` (records from :func:`clipfactory.bench.ledger_scale.panda_clip`),
the run's config in ``meta``, each input's policy decision, and real WebDataset shards of 1000
samples registered with their sha256. What the first finalize of such a dataset would derive
from it, at ~0.5 ms a clip (80 minutes at 10^7), is written in bulk with the shards instead:
each shard's index part and statistics (by the workers) and the persistent dedup index (by the
driver, its LSH rows sorted once at the end). Then one ``finalize`` writes the rejected parts,
summary and card.

No video is decoded: every sample's ``KEY.mp4`` is the same tiny H.264 clip (16x16, 2 frames,
~0.9 KB), and each record's ``bytes`` and ``file_sha256`` are those of that clip (the records'
1280x720 is what a Panda clip would be, not the file's). Perceptual and exact hashes are random,
so no two clips are duplicates. Shards are made by worker processes, one shard per task, and
the driver writes the ledger 10^4 clips per transaction: memory stays flat at any N.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipfactory.atomic import write_atomic
from clipfactory.bench.ledger_scale import CLIPS_PER_VIDEO, panda_clip
from clipfactory.config import Config
from clipfactory.dedup import DedupItem
from clipfactory.dedup.store import DedupStore, lsh_keys
from clipfactory.exec.pool import spawn_pool
from clipfactory.ledger import Ledger
from clipfactory.records import SourceItem
from clipfactory.sinks.index import index_table
from clipfactory.sinks.parts import index_part, write_part
from clipfactory.sinks.refresh import sample_metadata
from clipfactory.sinks.shards import _tarinfo
from clipfactory.sinks.stats import kept_stats

__all__ = ["SHARD_CLIPS", "TarBuilder", "build_dataset", "disk_refusal", "estimate_bytes",
           "item", "main", "make_shard", "tiny_clip"]

SHARD_CLIPS = 1000  # clips per shard, as shards.max_count
_VIDEOS_PER_SHARD = SHARD_CLIPS // CLIPS_PER_VIDEO
_SHARDS_PER_TX = 10  # one ledger transaction per 10^4 clips
_BLOCK, _RECORD = tarfile.BLOCKSIZE, tarfile.RECORDSIZE
# measured at 10^5 clips: two ~1.7 KB clip rows fill a 4 KiB page (2.05 KB a clip), the
# persistent dedup tables 0.6 KB, inputs and indexes the rest
LEDGER_BYTES_PER_CLIP = 2900
OUTPUT_BYTES_PER_CLIP = 300  # index parts and compacted index (~70 B a clip each), card...
_LICENSE = "CC-BY-4.0"


def tiny_clip() -> bytes:
    """A valid 16x16, 2-frame H.264 MP4 (~0.9 KB). x264's SEI (its settings as text, ~600
    bytes) is filtered out: at 10^7 samples that is 5 GB more of tar blocks."""
    import av
    from av.bitstream import BitStreamFilterContext

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        packets = []
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 60 + 80 * i, np.uint8),
                                               "rgb24")
            frame.pts = i
            packets += stream.encode(frame)
        packets += stream.encode(None)
        drop_sei = BitStreamFilterContext("filter_units=remove_types=6", stream)
        for p in [*packets, None]:
            for q in drop_sei.filter(p):
                q.stream = stream
                out.mux(q)
    return buf.getvalue()


_TAIL = (b"0" + b"\0" * 100 + b"ustar\x0000").ljust(_BLOCK - 156, b"\0")  # type, magic, NULs
_FIXED_SUM = sum(b"0000644\0" + b"0000000\0" * 2 + b"00000000000\0" + b" " * 8 + _TAIL)


def _header(name: str, size: int) -> bytes:
    """The tar header :class:`~clipfactory.sinks.shards.ShardWriter` writes for a member.

    For a short ASCII name its PAX format is a plain ustar block; built here directly, as
    ``TarInfo.tobuf`` costs more than the rest of a sample."""
    if len(name) > 99 or not name.isascii():
        return _tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    raw, octal = name.encode("ascii"), b"%011o\0" % size
    chksum = _FIXED_SUM + sum(raw) + sum(octal)  # the checksum field counts as spaces
    return (raw.ljust(100, b"\0") + b"0000644\0" + b"0000000\0" * 2 + octal + b"00000000000\0"
            + b"%06o\0 " % chksum + _TAIL)


class TarBuilder:
    """One shard in memory, byte-identical to what ``ShardWriter`` writes for the samples."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.count = 0

    def add(self, key: str, members: dict[str, bytes]) -> None:
        """Append a sample: its members in extension order, as ``ShardWriter`` does."""
        for ext in sorted(members):
            data = members[ext]
            self.parts += (_header(f"{key}.{ext}", len(data)), data,
                           b"\0" * (-len(data) % _BLOCK))
        self.count += 1

    def write(self, path: Path) -> tuple[str, int]:
        """Write the tar (end blocks, record padding) under a temp name, rename it; returns
        (sha256, bytes). Not fsynced: a crashed bench is rebuilt, not resumed."""
        size = sum(map(len, self.parts)) + 2 * _BLOCK
        self.parts.append(b"\0" * (2 * _BLOCK + -size % _RECORD))
        data = b"".join(self.parts)
        write_atomic(path, data)
        return hashlib.sha256(data).hexdigest(), len(data)


def item(v: int) -> SourceItem:
    """Input ``v``: a manifest row with an id, as a Panda-70M manifest gives it."""
    url = f"https://videos.example.org/watch/{v:09d}"
    return SourceItem(item_key=f"id:v{v:09d}", source=url, id=f"v{v:09d}", source_url=url,
                      license=_LICENSE, attribution=f"Channel {v % 50_000}")


@dataclass(frozen=True)
class _Spec:
    """What a worker needs to make any shard of the dataset."""

    clips: int
    shard_dir: str
    clip: bytes
    decision: tuple[str | None, str, str]  # license id, policy status, policy reason
    captions: bool
    seed: int


def make_shard(spec: _Spec, index: int) -> tuple[tuple, list[tuple], list[tuple]]:
    """Write shard ``index`` (inputs ``100 * index`` onwards); return its ``shards`` row and
    the ``videos`` and ``clips`` rows to write. Seeded per shard: any order gives the same."""
    name = f"shard-{index:06d}.tar"
    rng = random.Random(spec.seed * 1_000_003 + index)
    sha = hashlib.sha256(spec.clip).hexdigest()
    tar, video_rows, clip_rows, kept = TarBuilder(), [], [], []
    lo = index * _VIDEOS_PER_SHARD
    for v in range(lo, min(lo + _VIDEOS_PER_SHARD, -(-spec.clips // CLIPS_PER_VIDEO))):
        for k in range(min(CLIPS_PER_VIDEO, spec.clips - v * CLIPS_PER_VIDEO)):
            c = panda_clip(v, k, f"id:v{v:09d}")
            c.phash = [rng.getrandbits(64) for _ in range(5)]  # random: no near duplicates
            c.exact_hash = f"{rng.getrandbits(128):032x}"
            c.bytes, c.file_sha256, c.shard = len(spec.clip), sha, name
            c.license, c.license_raw = spec.decision[0], _LICENSE  # as the gate stamps them
            c.policy_decision, c.policy_reason = spec.decision[1:]
            if not spec.captions:
                del c.extra["caption"], c.extra["caption_model"]
            tar.add(c.key, {"mp4": spec.clip, **sample_metadata(c)})
            # json.dumps(c.to_dict()) without asdict's deep copy (3x faster)
            record = json.dumps({**vars(c), "num_frames": c.num_frames})
            clip_rows.append((c.clip_id, c.item_key, "sharded", None, None, name, record))
            kept.append(c)
        video_rows.append((f"v{v:09d}", f"{v:064x}", time.time(), f"id:v{v:09d}"))
    shard = (name, *tar.write(Path(spec.shard_dir) / name), tar.count)
    # what the first finalize would derive from the shard, made here in parallel: its index
    # part and statistics, and the clips' rows for the persistent dedup index
    out = Path(spec.shard_dir).parent
    write_part(index_table(kept), index_part(out, name))
    derived = (json.dumps(kept_stats(kept)),
               [(DedupItem(c.clip_id, c.exact_hash, tuple(c.phash), c.width, c.height,
                           c.num_frames), lsh_keys(c.phash)) for c in kept])
    return shard, video_rows, clip_rows, derived


def estimate_bytes(clips: int, captions: bool = True, clip_bytes: int = 934) -> int:
    """Disk a dataset of ``clips`` needs: shard samples (a 512-byte header and whole blocks
    for each of the mp4, json and txt members), ledger, and the derived outputs."""
    sample = 512 + -(-clip_bytes // 512) * 512 + (512 + 2048 + 1024 if captions else 512 + 1536)
    return clips * (sample + LEDGER_BYTES_PER_CLIP + OUTPUT_BYTES_PER_CLIP)


def disk_refusal(where: str | Path, need: int) -> str | None:
    """Why ``need`` bytes will not fit on the disk of ``where`` (None when they will, with
    2 GiB to spare)."""
    p = Path(where).resolve()
    while not p.exists():
        p = p.parent
    free = shutil.disk_usage(p).free
    if need + (2 << 30) <= free:
        return None
    return (f"~{need / 2**30:.1f} GiB needed (estimate), {p} has {free / 2**30:.1f} GiB free "
            "(2 GiB kept spare)")


def _shards(spec: _Spec, count: int, workers: int) -> Iterator[tuple]:
    """Every shard's rows in order; ``workers`` processes make them, a few ahead at most."""
    if workers <= 1:
        yield from (make_shard(spec, i) for i in range(count))
        return
    # spawn, not fork: the driver holds an open SQLite connection
    with spawn_pool(workers) as pool:
        ahead: deque[Future] = deque()
        for i in range(count):
            ahead.append(pool.submit(make_shard, spec, i))
            if len(ahead) > 2 * workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def _write_ledger(ledger: Ledger, batch: list[tuple], decision: tuple,
                  load_dedup: Callable[[Iterable[tuple[DedupItem, list[int]]]], int]) -> None:
    """One transaction of shards: inputs done, clips sharded; then the shards registered with
    their parts' hashes and statistics, and the clips loaded into the dedup index."""
    with ledger.transaction() as db:
        db.executemany(
            "UPDATE videos SET state='done', video_id=?, source_sha256=?, frames=2400,"
            " duration_s=80.0, analysed_s=80.0, attempts=1, updated_at=? WHERE item_key=?",
            [r for _, videos, _, _ in batch for r in videos])
        db.executemany(
            "INSERT INTO clips (clip_id, item_key, state, stage, reason, shard, record)"
            " VALUES (?,?,?,?,?,?,?)", [r for _, _, clips, _ in batch for r in clips])
    ledger.record_decisions((r[3], *decision) for _, videos, _, _ in batch for r in videos)
    ledger.add_shards([shard for shard, _, _, _ in batch], [])
    with ledger.transaction() as db:
        db.executemany("UPDATE shards SET part_sha = sha256, stats = ? WHERE name = ?",
                       [(stats, shard[0]) for shard, _, _, (stats, _) in batch])
    load_dedup(pair for _, _, _, (_, pairs) in batch for pair in pairs)


def build_dataset(out: str | Path, clips: int, cfg: Config | None = None, *,
                  captions: bool = True, workers: int | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Write a dataset of ``clips`` clips into a new folder ``out`` (module docstring);
    returns the figures: seconds for ledger and shards, and for the first finalize."""
    from clipfactory.pipeline import finalize
    from clipfactory.provenance.ingest import build_gate

    out = Path(out)
    cfg = cfg or Config()
    (out / "shards").mkdir(parents=True)
    videos = -(-clips // CLIPS_PER_VIDEO)
    shards = -(-videos // _VIDEOS_PER_SHARD)
    workers = (os.cpu_count() or 1) if workers is None and shards > 20 else workers or 0
    t0 = time.perf_counter()
    ledger = Ledger(out / "ledger.sqlite")
    try:
        ledger.set_meta("config", cfg.model_dump(mode="json"))  # as `clipfactory run` does
        ledger.register(item(v) for v in range(videos))
        gate = build_gate(ledger, cfg.policy)
        d = gate.decide_item(item(0))  # every input has the same license: one decision
        decision = gate.decision_row("", d, _LICENSE)[1:]
        spec = _Spec(clips, str(out / "shards"), tiny_clip(), (d.license, d.status, d.reason),
                     captions, seed)
        batch: list[tuple] = []
        with DedupStore(ledger).bulk(cfg.dedup) as load_dedup:
            for rows in _shards(spec, shards, workers):
                batch.append(rows)
                if len(batch) == _SHARDS_PER_TX:
                    _write_ledger(ledger, batch, decision, load_dedup)
                    batch = []
            if batch:
                _write_ledger(ledger, batch, decision, load_dedup)
        ledger.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        write_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        finalize(out, cfg, ledger)
        finalize_s = time.perf_counter() - t1
    finally:
        ledger.close()
    return {"clips": clips, "videos": videos, "shards": shards, "write_s": round(write_s, 3),
            "clips_per_s": round(clips / write_s), "finalize_s": round(finalize_s, 3),
            "bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file()),
            "ledger_bytes": (out / "ledger.sqlite").stat().st_size}


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output folder to create (absent or empty)")
    ap.add_argument("--clips", type=float, required=True)
    ap.add_argument("--no-captions", action="store_true",
                    help="no caption (no KEY.txt): 1.5 KB less disk a clip")
    ap.add_argument("--workers", type=int, default=None, help="shard-making processes")
    ap.add_argument("--figures", default=None, help="also write the figures here as JSON")
    a = ap.parse_args(argv)
    out, clips = Path(a.out), int(a.clips)
    if out.exists() and any(out.iterdir()):
        print(f"scale_data: {out} is not empty", file=sys.stderr)
        return 2
    refusal = disk_refusal(out, estimate_bytes(clips, not a.no_captions))
    if refusal:
        print(f"scale_data: {clips} clips: {refusal}", file=sys.stderr)
        return 2
    figures = build_dataset(out, clips, captions=not a.no_captions, workers=a.workers)
    print(json.dumps(figures))
    if a.figures:
        Path(a.figures).write_text(json.dumps(figures), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
