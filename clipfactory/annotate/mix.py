"""``clipfactory mix``: a new dataset whose category shares follow a target.

:func:`plan_mix` is the arithmetic: the largest total whose exact shares the counts allow
(``min(count / share)`` over the target's categories, capped by ``max_clips``), split by
largest remainders so that the achieved shares are the target's to within one clip.
:func:`write_mix` builds DST with the same contract as a run's output: shards (clips copied
byte for byte from the source shards, ``KEY.json`` rewritten for the new shard), a ledger with
every chosen clip's provenance (its source row, policy decision, embedding), ``index.parquet``,
``rejected.parquet`` (the clips left out: ``mix/over_target`` or ``mix/not_in_target``), the
card (target and achieved mix) and ``embeddings/``. The clips chosen within a category are a
uniform sample, deterministic for a seed.

DST is marked unfinished (``.mix-unfinished``, the command's parameters) before anything goes
into it, and the mark goes last. A mix killed part-way is written again from the start by the
same command (the partial DST is cleared); another command refuses the folder and says why.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from clipfactory.atomic import temp_path, write_atomic
from clipfactory.config import stored_config
from clipfactory.ledger import Ledger
from clipfactory.lock import LOCK_FILE, holds_output_lock, output_lock
from clipfactory.records import ClipRecord
from clipfactory.sinks.bucket_writer import BucketedShardWriter
from clipfactory.sinks.refresh import OPTIONAL_MEMBERS, sample_metadata
from clipfactory.sinks.shard_update import rewrite_shard_members
from clipfactory.stages.store import EMBEDDINGS_DIR, PART_SCHEMA, ensure_schema
from clipfactory.worker import file_sha256

__all__ = ["UNFINISHED", "MixError", "parse_target", "plan_mix", "write_mix"]

log = logging.getLogger("clipfactory")
OTHER = "other"  # a target key covering every category the target does not name
UNFINISHED = ".mix-unfinished"  # in DST while a mix is written: the command's parameters


class MixError(ValueError):
    """The target cannot be met or the folders are wrong; nothing was written."""


def parse_target(text: str) -> dict[str, float]:
    """``"driving=0.2,nature=0.3,other=0.5"`` -> shares; they must sum to 1 (within 0.001)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.rpartition("=")
        if not sep or not name.strip():
            raise MixError(f"target entry {part!r} is not label=share")
        try:
            share = float(value)
        except ValueError as e:
            raise MixError(f"target entry {part!r}: {value!r} is not a number") from e
        if not 0 <= share <= 1 or name.strip() in out:
            raise MixError(f"target entry {part!r}: a share is in [0, 1], once per label")
        out[name.strip()] = share
    if not out or abs(sum(out.values()) - 1.0) > 1e-3:
        raise MixError(f"target shares sum to {sum(out.values()):.3f}, not 1 (name the rest "
                       f"'{OTHER}=...' to keep categories the target does not list)")
    return out


def plan_mix(counts: dict[str, int], target: dict[str, float],
             max_clips: int | None = None) -> dict[str, int]:
    """Clips to take per target label (see module doc). ``counts`` per target label."""
    if max_clips is not None and max_clips < 0:
        raise MixError(f"max_clips must be >= 0, got {max_clips}")
    wanted = {k: p for k, p in target.items() if p > 0}
    missing = [k for k in wanted if counts.get(k, 0) == 0]
    if missing:
        raise MixError(f"no clips in categories {missing}; the target cannot be met")
    total = min(math.floor(counts[k] / p + 1e-9) for k, p in wanted.items())
    if max_clips is not None:
        total = min(total, max_clips)
    exact = {k: total * p for k, p in wanted.items()}
    take = {k: min(counts[k], math.floor(x)) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - take[k], reverse=True):
        if sum(take.values()) >= total:
            break
        if take[k] < counts[k]:
            take[k] += 1
    return {k: take.get(k, 0) for k in target}


def _label(c: ClipRecord, target: dict[str, float]) -> str | None:
    cat = c.extra.get("category")
    if cat in target:
        return cat
    return OTHER if OTHER in target and cat else None


def _order(clip_id: str, seed: int) -> int:
    return xxhash.xxh64_intdigest(f"{seed}:{clip_id}".encode())


@holds_output_lock("mix (source)", "src")
def write_mix(src: str | Path, dst: str | Path, target: dict[str, float], *,
              max_clips: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Build DST from SRC's kept clips (see module doc); returns DST's summary."""
    src, dst = Path(src), Path(dst)
    if not (src / "ledger.sqlite").is_file():
        raise MixError(f"{src} is not a clipfactory output (no ledger.sqlite)")
    params = {"source": str(src.resolve()), "target": target, "max_clips": max_clips,
              "seed": seed}
    _may_write(dst, params)
    sl = Ledger(src / "ledger.sqlite")
    try:
        kept = sl.clips("sharded")
        by_label: dict[str, list[ClipRecord]] = {}
        for c in kept:
            lab = _label(c, target)
            if lab is not None:
                by_label.setdefault(lab, []).append(c)
        if not any(c.extra.get("category") for c in kept):
            raise MixError(f"{src} has no categorised clips: run it with "
                           "annotate.embeddings.model and categories on")
        plan = plan_mix({k: len(v) for k, v in by_label.items()}, target, max_clips)
        chosen: list[ClipRecord] = []
        for lab, n in plan.items():
            chosen += sorted(by_label.get(lab, []), key=lambda c: _order(c.clip_id, seed))[:n]
        left = [c for c in kept if c.clip_id not in {x.clip_id for x in chosen}]
        n = sum(plan.values())
        meta = {**params, "clips": n, "available": {k: len(v) for k, v in by_label.items()},
                "achieved": {k: (v / n if n else 0.0) for k, v in plan.items()},
                "counts": dict(plan)}
        with output_lock(dst, "mix", create=True):  # created only now: a refusal writes nothing
            if _may_write(dst, params):  # under the lock: nobody else is writing it
                log.warning("%s: clearing the mix a killed command left unfinished, to write "
                            "it again", dst)
                for p in dst.iterdir():
                    if p.name in (LOCK_FILE, UNFINISHED):
                        continue
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
            _mark_unfinished(dst, params)
            summary = _write(src, dst, sl, chosen, left, target, meta)
            (dst / UNFINISHED).unlink()
            return summary
    finally:
        sl.close()


def _may_write(dst: Path, params: dict[str, Any]) -> bool:
    """Whether DST holds an unfinished mix of the same parameters (to clear); ``MixError``
    when it holds anything else."""
    mark_tmp = temp_path(dst / UNFINISHED).name  # a mark killed while it was written
    if not dst.exists() or not any(p.name not in (LOCK_FILE, mark_tmp) for p in dst.iterdir()):
        return False
    mark = dst / UNFINISHED
    if not mark.is_file():
        raise MixError(f"{dst} exists and is not empty; a mix is written to a new folder")
    try:
        was = json.loads(mark.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        was = None
    if was != json.loads(json.dumps(params)):
        raise MixError(f"{dst} holds an unfinished mix with other parameters ({was}); run "
                       "that mix again to finish it, or remove the folder")
    return True


def _mark_unfinished(dst: Path, params: dict[str, Any]) -> None:
    write_atomic(dst / UNFINISHED, json.dumps(params, sort_keys=True), durable=True)


def _write(src: Path, dst: Path, sl: Ledger, chosen: list[ClipRecord],
           left: list[ClipRecord], target: dict[str, float], meta: dict[str, Any]
           ) -> dict[str, Any]:
    """DST's ledger, shards and embeddings, then its index, rejected list and card."""
    from clipfactory.pipeline import finalize

    dl = Ledger(dst / "ledger.sqlite")
    try:
        _copy_rows(sl, dl, chosen, left, target)
        _copy_shards(src, dst, dl, chosen)
        _copy_embeddings(src, sl, dl, dst, chosen)
        dl.set_meta("mix", meta)
        cfg = stored_config(dl.get_meta("config"))
        cfg.skip = sorted(set(cfg.skip) | {"dedup"})  # SRC's decisions stand
        return finalize(dst, cfg, dl)
    finally:
        dl.close()


def _copy_rows(sl: Ledger, dl: Ledger, chosen: list[ClipRecord], left: list[ClipRecord],
               target: dict[str, float]) -> None:
    keys = sorted({c.item_key for c in chosen} | {c.item_key for c in left})
    ensure_schema(sl)
    ensure_schema(dl)
    dl.set_meta("config", sl.get_meta("config"))
    dl.db.execute("ATTACH DATABASE ? AS src", (str(sl.path),))
    try:
        with dl.transaction() as db:
            for table in ("videos", "decisions"):
                cols = [r[1] for r in db.execute(f"PRAGMA src.table_info({table})")]
                mine = {r[1] for r in db.execute(f"PRAGMA main.table_info({table})")}
                cols = [c for c in cols if c in mine]
                for i in range(0, len(keys), 500):
                    chunk = keys[i:i + 500]
                    db.execute(f"INSERT OR REPLACE INTO main.{table} ({','.join(cols)}) SELECT "
                               f"{','.join(cols)} FROM src.{table} WHERE item_key IN ("
                               + ",".join("?" * len(chunk)) + ")", chunk)
            rows = []
            for c in left:
                c.drop("mix", "over_target" if _label(c, target) else "not_in_target")
                c.shard = None
                rows.append(c)
            db.executemany(
                "INSERT INTO clips (clip_id, item_key, state, stage, reason, shard, record)"
                " VALUES (?,?,?,?,?,?,?)",
                [(c.clip_id, c.item_key, c.state, c.stage, c.reason, c.shard,
                  json.dumps(c.to_dict())) for c in rows])
            ids = [c.clip_id for c in chosen]
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                db.execute("INSERT INTO main.annotations SELECT * FROM src.annotations WHERE"
                           " clip_id IN (" + ",".join("?" * len(chunk)) + ")", chunk)
    finally:
        dl.db.execute("DETACH DATABASE src")


def _copy_shards(src: Path, dst: Path, dl: Ledger, chosen: list[ClipRecord]) -> None:
    """Copy the chosen samples (every member: clip, caption...) shard by shard, each source
    shard read once in order; then write their metadata, which names the new shard. With
    ``shards.bucket_by`` each clip goes to its bucket's folder; the samples arrive in source
    order, so the writer keeps at most ``shards.max_open_buckets`` shards open."""
    by_shard: dict[str, dict[str, ClipRecord]] = {}
    for c in chosen:
        by_shard.setdefault(c.shard or "", {})[c.key] = c
    cfg = stored_config(dl.get_meta("config"))
    bucketing = cfg.shards.bucketing()
    placed: list[ClipRecord] = []
    with BucketedShardWriter(dst / "shards", max_count=cfg.shards.max_count,
                             max_bytes=cfg.shards.max_bytes,
                             max_open=cfg.shards.max_open_buckets) as writer:
        for shard in sorted(by_shard):
            want = by_shard[shard]
            with tarfile.open(src / "shards" / shard) as tar:
                members: dict[str, dict[str, bytes]] = {}
                for m in tar:
                    key, _, ext = m.name.partition(".")
                    fh = tar.extractfile(m) if key in want and m.isfile() else None
                    if fh is not None:
                        members.setdefault(key, {})[ext] = fh.read()
            for key, parts in members.items():
                c = want[key]
                c.state, c.stage, c.reason = "sharded", None, None
                bucket = bucketing.bucket(c.width, c.height, c.duration_s)
                c.shard = writer.add(bucket, key, parts)
                placed.append(c)
        infos = writer.close()
    by_new: dict[str, list[ClipRecord]] = {}
    for c in placed:
        by_new.setdefault(c.shard or "", []).append(c)
    infos = [dataclasses.replace(  # the ledger's name is the path under shards/
        rewrite_shard_members(dst / "shards" / i.name,
                              {c.key: sample_metadata(c) for c in by_new[i.name]},
                              optional=OPTIONAL_MEMBERS), name=i.name)
             for i in infos]
    with dl.transaction() as db:
        db.executemany(
            "INSERT OR REPLACE INTO clips (clip_id, item_key, state, stage, reason, shard, record)"
            " VALUES (?,?,?,?,?,?,?)",
            [(c.clip_id, c.item_key, c.state, c.stage, c.reason, c.shard,
              json.dumps(c.to_dict())) for c in placed])
    dl.add_shards([(i.name, i.sha256, i.bytes, i.count) for i in infos], [])


def _copy_embeddings(src: Path, sl: Ledger, dl: Ledger, dst: Path,
                     chosen: list[ClipRecord]) -> None:
    ids = {c.clip_id for c in chosen}
    parts = [r[0] for r in sl.db.execute("SELECT name FROM embedding_parts ORDER BY name")]
    tables = []
    for name in parts:
        t = pq.read_table(src / EMBEDDINGS_DIR / name)
        mask = pa.array([cid in ids for cid in t.column("clip_id").to_pylist()])
        tables.append(t.filter(mask))
    if not tables or not sum(t.num_rows for t in tables):
        return
    table = pa.concat_tables(tables).cast(PART_SCHEMA)
    (dst / EMBEDDINGS_DIR).mkdir(exist_ok=True)
    path = dst / EMBEDDINGS_DIR / "part-000000.parquet"
    pq.write_table(table, path, compression="zstd")
    rows = []
    for r in sl.db.execute("SELECT * FROM embeddings"):
        if r["clip_id"] in ids:
            rows.append((r["clip_id"], r["stage"], r["model"], r["revision"], r["dim"], r["vec"],
                         path.name, r["pixels"], r["frames"]))
    with dl.transaction() as db:
        db.execute("INSERT INTO embedding_parts (name, rows, sha256, created_at) VALUES"
                   " (?,?,?,strftime('%s','now'))",
                   (path.name, table.num_rows, file_sha256(str(path))))
        db.executemany("INSERT INTO embeddings (clip_id, stage, model, revision, dim, vec, part,"
                       " pixels, frames) VALUES (?,?,?,?,?,?,?,?,?)", rows)
