"""Putting staged clips into shards, flat or bucketed, and sweeping what a crash left.

A shard's name is its path under ``shards/``: ``shard-000003.tar`` in the flat layout,
``720p_16x9_5-10s/shard-000003.tar`` with ``shards.bucket_by``. That name is what the ledger,
the index's ``shard`` column, takedown, audit and the annotation refresh use, so every one of
them works on either layout (or on a dataset whose bucketing changed between runs: the clips
already sharded stay where they are, new ones follow the new config).

Clips are sorted by bucket, then clip id, and each bucket is written in turn, group by group,
each group one shard registered with its clips in one ledger transaction. Only one tar is open
at any time, however many buckets there are; a killed run finds its last registered shard and
carries on from the next group, so a resumed run gives the same shards as an uninterrupted one.

A clip's staged file is deleted only after its shard is registered (or its drop recorded): a
kill in between leaves a file no clip owns, never a clip without its file. The next finalize
removes such files (:func:`remove_orphan_staged`); ``clipfactory audit`` reports them with the
same test (:func:`unowned_staged_files`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.records import ClipRecord
from clipfactory.sinks.buckets import next_indices, parse_shard_name, shard_name
from clipfactory.sinks.refresh import sample_metadata
from clipfactory.sinks.shards import ShardWriter

__all__ = ["locate_staged", "prune_staging_dirs", "relocate_staged", "remove_orphan_shards",
           "remove_orphan_staged", "remove_staged_files", "shard_groups", "staged_place",
           "unowned_staged_files", "write_staged_shards"]

log = logging.getLogger("clipfactory")


def remove_orphan_shards(shard_dir: Path, ledger: Ledger) -> None:
    """Delete shard files the ledger does not know (a crash between rename and commit) and
    temp files, in every bucket folder; bucket folders left empty go too."""
    known = {s["name"] for s in ledger.shards()}
    for f in sorted(shard_dir.rglob("*"), reverse=True):
        rel = f.relative_to(shard_dir).as_posix()
        if f.is_dir():
            if not any(f.iterdir()):
                f.rmdir()
        elif f.name.startswith(".") or (f.suffix == ".tar" and rel not in known):
            f.unlink()


def staged_place(path: str) -> tuple[str, str]:
    """Where a staged clip file sits inside ``staging/``: (its video's folder, its name). Every
    staged file is ``staging/FOLDER/KEY.mp4``, so this names it wherever the output folder is
    (or was, when the path was recorded)."""
    head, name = os.path.split(path)
    return os.path.basename(head), name


def unowned_staged_files(staging: Path, ledger: Ledger, owned: Iterable[str] = ()
                         ) -> list[Path]:
    """Clip files under ``staging/`` that no staged or sharded clip owns, sorted. A clip owns
    the file at its path's place (:func:`staged_place`): no path is resolved.

    ``owned`` are staged paths the caller already holds (finalize has every staged clip in
    hand): the ledger is read only when files remain beyond those, and then streamed, keeping
    only the files on disk in memory."""
    files: dict[tuple[str, str], str] = {}  # place -> the folder it lies in
    if staging.is_dir():
        for folder, _, names in os.walk(staging):
            parent = os.path.basename(folder)
            for name in names:
                if name.endswith(".mp4"):
                    files[parent, name] = folder
    for path in owned:
        files.pop(staged_place(path), None)
    if not files:
        return []
    for (path,) in ledger.db.execute("SELECT json_extract(record, '$.staged_path') FROM clips"
                                     " WHERE state IN ('staged', 'sharded')"):
        if path:
            files.pop(staged_place(path), None)
    return sorted(Path(folder, name) for (_, name), folder in files.items())


def locate_staged(clip: ClipRecord, staging: Path) -> bool:
    """Whether a staged clip's file is there. Where the recorded path does not reach it but the
    file lies at its place in this ``staging/`` (a path recorded relative to another working
    directory, or an output folder moved between a killed run and its resume), the clip's
    ``staged_path`` is pointed there (the caller records the change)."""
    p = clip.staged_path
    if not p:
        return False
    if os.path.isabs(p) and os.path.isfile(p):
        return True
    here = staging.joinpath(*staged_place(p))
    if here.is_file():
        clip.staged_path = str(here)
        return True
    return False


def relocate_staged(staging: Path, ledger: Ledger) -> int:
    """Point every staged clip whose recorded path misses its file at the file's place in this
    ``staging/`` (:func:`locate_staged`), before anything reads the files (a run's start: the
    model stages read clips left unannotated). Returns how many moved."""
    moved = []
    for c in ledger.clips("staged"):
        before = c.staged_path
        if locate_staged(c, staging) and c.staged_path != before:
            moved.append(c)
    if moved:
        ledger.update_clips(moved)
        log.info("staging: %d staged clips found at a new path (output moved, or recorded "
                 "relative to another directory)", len(moved))
    return len(moved)


def remove_orphan_staged(staging: Path, ledger: Ledger, staged: list[ClipRecord]) -> int:
    """Delete staged clip files no clip owns: those of clips sharded or dropped by a run killed
    before it deleted them. Run where no worker is writing (finalize). Returns how many."""
    gone = unowned_staged_files(staging, ledger, (str(c.staged_path) for c in staged
                                                  if c.staged_path))
    if gone:
        remove_staged_files(str(f) for f in gone)
        prune_staging_dirs(staging)  # video folders with nothing left in them
        log.info("staging: removed %d clip files no clip owns (left by a killed run)",
                 len(gone))
    return len(gone)


def remove_staged_files(paths: Iterable[str]) -> None:
    """Delete staged clip files whose clips the ledger has already sharded or dropped. Call it
    after that commit: a kill before it then leaves files no clip owns, which the next finalize
    removes (:func:`remove_orphan_staged`), never a clip without its file."""
    for path in paths:
        Path(path).unlink(missing_ok=True)


def prune_staging_dirs(staging: Path) -> None:
    """Remove the video folders in ``staging/`` that hold nothing."""
    if not staging.is_dir():
        return
    for d in sorted((p for p in staging.iterdir() if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def shard_groups(clips: list[ClipRecord], max_count: int, max_bytes: int
                 ) -> list[list[ClipRecord]]:
    """Consecutive runs of ``clips`` that fill one shard each (by count and clip bytes)."""
    groups: list[list[ClipRecord]] = []
    size = 0
    for c in clips:
        if not groups or len(groups[-1]) >= max_count or (groups[-1] and size + c.bytes > max_bytes):
            groups.append([])
            size = 0
        groups[-1].append(c)
        size += c.bytes
    return groups


def write_staged_shards(staged: list[ClipRecord], ledger: Ledger, cfg: Config, shard_dir: Path,
                        after_shard: Callable[[list[str]], None] | None = None) -> list[str]:
    """Pack staged clips into new shards, bucket by bucket; returns the new shard names.

    Each shard is registered with its clips at once. ``after_shard`` gets the staged paths of
    a shard's clips once it is registered (the caller deletes them unless
    ``shards.keep_staging``).
    """
    nxt = next_indices(s["name"] for s in ledger.shards())
    bucketing = cfg.shards.bucketing()
    by_bucket: dict[str, list[ClipRecord]] = {}
    for c in staged:
        by_bucket.setdefault(bucketing.bucket(c.width, c.height, c.duration_s) or "", []).append(c)
    written: list[str] = []
    for bucket in sorted(by_bucket):
        order = sorted(by_bucket[bucket], key=lambda c: c.clip_id)
        index = nxt.get(bucket or None, 0)
        directory = shard_dir / bucket if bucket else shard_dir
        for group in shard_groups(order, cfg.shards.max_count, cfg.shards.max_bytes):
            name = shard_name(bucket or None, index)
            paths = [str(c.staged_path) for c in group]
            with ShardWriter(directory, start_index=index, max_count=len(group) + 1,
                             max_bytes=1 << 62) as writer:
                for c, path in zip(group, paths, strict=True):
                    c.state, c.stage, c.reason, c.shard = "sharded", None, None, name
                    if not cfg.shards.keep_staging:
                        c.staged_path = None
                    writer.add(c.key, {"mp4": path, **sample_metadata(c)})
                infos = writer.close()
            if len(infos) != 1 or parse_shard_name(infos[0].name)[1] != index:
                raise RuntimeError(f"shard writer produced {[i.name for i in infos]}, wanted "
                                   f"{name}")
            ledger.add_shards([(name, infos[0].sha256, infos[0].bytes, infos[0].count)], group)
            written.append(name)
            if after_shard is not None:
                after_shard(paths)
            index += 1
    return written
