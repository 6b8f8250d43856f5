"""Clip identity: everything a run decided about each clip, down to its decoded frames.

:func:`capture` runs the pipeline on a folder (or files) into a fresh output and records, per
source, its sha256 and outcome, and per clip (kept and dropped) its span, state and drop
reason; for every clip with a file, the xxh3-64 plane digest of each frame that file decodes
to (:func:`clipfactory.media.digest.plane_digest`). :func:`compare` lists what differs between
two such records. A change meant to be invisible in the output (a faster analysis pass or
cutter) must leave the record of the project's corpora unchanged (docs/cutting.md): the same
sources, spans, states and reasons, and every clip frame either the recorded one or now the
source's own frame bit for bit (an edge frame that used to be re-encoded and is now copied)::

    python -m clipfactory.bench.identity capture FOLDER --json golden.json   # before
    python -m clipfactory.bench.identity check FOLDER --json golden.json     # after

Decoder and encoder threads are pinned to one, so the record depends only on the code, the
inputs and the FFmpeg/x264 build (recorded under ``env``; sources' bytes under ``sha256``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from clipfactory.config import Config, load_config
from clipfactory.ledger import Ledger
from clipfactory.media.digest import plane_digest
from clipfactory.records import ClipRecord
from clipfactory.testing.compare import psnr

__all__ = ["capture", "clip_files", "compare", "encoder_build", "main"]

VERSION = 2
MIN_PSNR = 35.0  # dB: re-encoded clip edges against their source (docs/cutting.md)


def encoder_build() -> dict[str, str]:
    """The libavcodec version and the libx264 build (from the SEI x264 writes into its output):
    the re-encoded clip edges, and generated corpora, depend on both."""
    cc = av.CodecContext.create("libx264", "w")
    cc.width, cc.height, cc.pix_fmt, cc.time_base = 16, 16, "yuv420p", Fraction(1, 25)
    cc.options = {"preset": "ultrafast"}
    cc.thread_count = 1
    frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), "rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in [*cc.encode(frame), *cc.encode(None)])
    m = re.search(rb"x264 - core (.{1,40}?) - H\.264", data)
    return {"libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            "x264": m.group(1).decode() if m else "unknown"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _against_source(source: Path, items: list[tuple[ClipRecord, bytes]]
                    ) -> dict[str, dict[str, Any]]:
    """Per clip file: the digest of every frame it decodes to (``frames``), which of them are
    the source's own frame bit for bit (``source_mask``, ``source_exact``: copied GOPs) and
    the lowest luma PSNR against the source of the others (``reencoded_psnr``, None when
    every frame is exact). The source is decoded once, each clip in step with its span, so
    memory does not grow with clip length."""
    out = {c.clip_id: {"frames": [], "source_mask": "", "reencoded_psnr": None}
           for c, _ in items}
    pending = sorted(items, key=lambda x: x[0].start_frame, reverse=True)
    active: list[tuple[ClipRecord, Iterator[av.VideoFrame], av.container.InputContainer]] = []

    def close(entry: tuple[ClipRecord, Iterator[av.VideoFrame], Any]) -> None:
        clip, it, container = entry
        rec = out[clip.clip_id]
        rec["frames"] += [f"{plane_digest(f):016x}" for f in it]  # past the span: a mismatch
        container.close()

    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        stream.codec_context.thread_count = 1
        for i, frame in enumerate(src.decode(stream)):
            for entry in [e for e in active if e[0].end_frame <= i]:
                active.remove(entry)
                close(entry)
            while pending and pending[-1][0].start_frame <= i:
                clip, data = pending.pop()
                container = av.open(io.BytesIO(data))
                container.streams.video[0].codec_context.thread_count = 1
                active.append((clip, iter(container.decode(video=0)), container))
            if not active:
                continue
            want, gray = plane_digest(frame), None
            for clip, it, _ in active:
                got = next(it, None)
                if got is None:
                    continue  # the clip is short: its frame count tells
                rec = out[clip.clip_id]
                digest = plane_digest(got)
                rec["frames"].append(f"{digest:016x}")
                rec["source_mask"] += "1" if digest == want else "0"
                if digest != want:
                    gray = frame.to_ndarray(format="gray") if gray is None else gray
                    db = round(psnr(got.to_ndarray(format="gray"), gray), 2)
                    low = rec["reencoded_psnr"]
                    rec["reencoded_psnr"] = db if low is None else min(low, db)
        for entry in active:
            close(entry)
    for rec in out.values():
        rec["source_exact"] = rec["source_mask"].count("1")
    return out


def clip_files(out: Path, clips: list[ClipRecord]) -> Iterator[tuple[ClipRecord, bytes]]:
    """Each clip with a file, and its bytes: the shard member ``KEY.mp4`` or the staged file
    (read one at a time: an output can be larger than memory)."""
    by_shard: dict[str, list[ClipRecord]] = {}
    for c in clips:
        if c.shard:
            by_shard.setdefault(c.shard, []).append(c)
        elif c.staged_path and Path(c.staged_path).is_file():
            yield c, Path(c.staged_path).read_bytes()
    for shard, members in sorted(by_shard.items()):
        with tarfile.open(out / "shards" / shard) as tar:
            for c in members:
                f = tar.extractfile(f"{c.key}.mp4")
                if f is None:
                    raise FileNotFoundError(f"{shard}: no {c.key}.mp4")
                yield c, f.read()


def capture(inputs: str | Path | Sequence[str | Path], out_dir: str | Path,
            cfg: Config | None = None) -> dict[str, Any]:
    """Run the pipeline on ``inputs`` (a folder, one file, or files: one run each, in order)
    into ``out_dir``, which must not hold an output yet, and return the identity record."""
    from clipfactory.pipeline import run  # the pipeline's heavy imports only when capturing

    out = Path(out_dir)
    if (out / "ledger.sqlite").exists():
        raise ValueError(f"{out} already holds an output: a capture needs a fresh folder")
    cfg = (cfg or Config()).model_copy(deep=True)
    cfg.analysis.decode_threads = 1  # deterministic: one decoder and one encoder thread
    cfg.cut.threads = 1
    paths = [Path(inputs)] if isinstance(inputs, str | Path) else [Path(p) for p in inputs]
    for p in paths:
        run(p, out, cfg)
    root = paths[0].resolve() if len(paths) == 1 and paths[0].is_dir() else None

    def name(source: str) -> str:
        return Path(source).relative_to(root).as_posix() if root else Path(source).name

    ledger = Ledger(out / "ledger.sqlite")
    try:
        videos = ledger.videos()
        clips = ledger.clips()
    finally:
        ledger.close()
    files: dict[str, list[tuple[ClipRecord, bytes]]] = {}
    for c, data in clip_files(out, [c for c in clips if c.state in ("staged", "sharded")]):
        files.setdefault(c.source, []).append((c, data))
    frames: dict[str, dict[str, Any]] = {}
    for source, items in files.items():
        frames.update(_against_source(Path(source), items))
    span_of = {c.clip_id: f"{name(c.source)}[{c.start_frame},{c.end_frame})" for c in clips}
    sources: dict[str, Any] = {}
    for v in videos:
        n = name(v["source"])
        if n in sources:
            raise ValueError(f"two inputs are named {n}: give them distinct names")
        path = Path(v["source"])
        sources[n] = {"sha256": _sha256(path) if path.is_file() else None, "state": v["state"],
                      "stage": v["stage"], "reason": v["reason"], "frames": v["frames"],
                      "clips": []}
    for c in clips:
        row: dict[str, Any] = {
            "start_frame": c.start_frame, "end_frame": c.end_frame, "state": c.state,
            "stage": c.stage, "reason": c.reason, "exact_hash": c.exact_hash,
            "duplicate_of": span_of.get(c.duplicate_of or "", c.duplicate_of)}
        row.update(frames.get(c.clip_id, {}))
        sources[name(c.source)]["clips"].append(row)
    for s in sources.values():
        s["clips"].sort(key=lambda r: (r["start_frame"], r["end_frame"], r["state"]))
    return {"version": VERSION, "env": encoder_build(),
            "sources": dict(sorted(sources.items()))}


def _span(r: dict[str, Any]) -> str:
    return f"[{r['start_frame']},{r['end_frame']})"


def _compare_clip(where: str, e: dict[str, Any], a: dict[str, Any]) -> list[str]:
    diffs = [f"{where}: {k} {e.get(k)!r} -> {a.get(k)!r}"
             for k in ("state", "stage", "reason", "duplicate_of", "exact_hash")
             if e.get(k) != a.get(k)]
    ef, af = e.get("frames"), a.get("frames")
    if ef is None or af is None:
        if (ef is None) != (af is None):
            diffs.append(f"{where}: clip file {'gone' if af is None else 'new'}")
    elif ef != af:
        # a frame may change only towards its source: to the source's own frame bit for bit
        # (an edge frame that was re-encoded and is now copied), or, re-encoded before and
        # after (a re-encoded run that now starts elsewhere), to another encode of it within
        # MIN_PSNR of the source. A copied frame that is now re-encoded is a difference.
        em, am = e.get("source_mask") or "", a.get("source_mask") or ""
        changed = [i for i, (x, y) in enumerate(zip(ef, af, strict=False)) if x != y
                   and not (i < len(am) and am[i] == "1")
                   and not (i < len(em) and em[i] == "0" and am[i:i + 1] == "0")]
        reencoded = [i for i, (x, y) in enumerate(zip(ef, af, strict=False)) if x != y
                     and i < len(em) and em[i] == "0" and am[i:i + 1] == "0"]
        low = a.get("reencoded_psnr")
        if reencoded and (low is None or low < MIN_PSNR):
            diffs.append(f"{where}: re-encoded frames at {low} dB from the source, below "
                         f"{MIN_PSNR}")
        if changed or len(ef) != len(af):
            first = changed[0] if changed else min(len(ef), len(af))
            msg = (f"{where}: {len(changed)} decoded frame(s) differ, the first at clip frame "
                   f"{first} (source frame {e['start_frame'] + first})")
            if len(ef) != len(af):
                msg += f"; {len(ef)} -> {len(af)} frames"
            if "source_exact" in e and "source_exact" in a:
                msg += (f"; frames bit-identical to the source's: {e['source_exact']} -> "
                        f"{a['source_exact']} of {len(af)}")
            diffs.append(msg)
    return diffs


def _compare_clips(src: str, expected: list[dict[str, Any]],
                   actual: list[dict[str, Any]]) -> list[str]:
    key = lambda r: (r["start_frame"], r["end_frame"])  # noqa: E731
    exp, act = {key(r): r for r in expected}, {key(r): r for r in actual}
    diffs: list[str] = []
    for k in sorted(exp.keys() & act.keys()):
        diffs += _compare_clip(f"{src} clip {_span(exp[k])}", exp[k], act[k])
    missing, extra = sorted(exp.keys() - act.keys()), sorted(act.keys() - exp.keys())
    for k in missing:  # a span that moved: the new span overlapping it
        moved = [x for x in extra if x[0] < k[1] and k[0] < x[1]]
        if moved:
            diffs.append(f"{src}: span {_span(exp[k])} -> "
                         + ", ".join(_span(act[x]) for x in moved))
        else:
            diffs.append(f"{src}: clip {_span(exp[k])} ({exp[k]['state']}) missing")
    matched = {x for k in missing for x in extra if x[0] < k[1] and k[0] < x[1]}
    diffs += [f"{src}: extra clip {_span(act[x])} ({act[x]['state']})"
              for x in extra if x not in matched]
    return diffs


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Human-readable differences between two identity records (empty: identical clips)."""
    diffs: list[str] = []
    es, as_ = expected["sources"], actual["sources"]
    diffs += [f"{n}: source missing" for n in sorted(es.keys() - as_.keys())]
    diffs += [f"{n}: extra source" for n in sorted(as_.keys() - es.keys())]
    for n in sorted(es.keys() & as_.keys()):
        e, a = es[n], as_[n]
        diffs += [f"{n}: {k} {e[k]!r} -> {a[k]!r}"
                  for k in ("sha256", "state", "stage", "reason", "frames") if e[k] != a[k]]
        diffs += _compare_clips(n, e["clips"], a["clips"])
    return diffs


def main(argv: list[str] | None = None) -> int:
    """``capture`` writes a record; ``check`` captures again and exits 1 when it differs."""
    ap = argparse.ArgumentParser(prog="python -m clipfactory.bench.identity",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["capture", "check"])
    ap.add_argument("input", nargs="+", help="a folder, or video files")
    ap.add_argument("--json", required=True, help="the record: written (capture), read (check)")
    ap.add_argument("--config", help="a YAML config (threads are pinned to one anyway)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", help="the pipeline's output folder (default: a temporary one)")
    a = ap.parse_args(argv)
    import clipfactory

    print(f"clipfactory from {Path(clipfactory.__file__).parent}", file=sys.stderr)
    cfg = load_config(a.config, workers=a.workers)
    inputs = a.input[0] if len(a.input) == 1 else a.input
    with tempfile.TemporaryDirectory(prefix="clip-identity-") as tmp:
        record = capture(inputs, a.out or Path(tmp) / "out", cfg)
    n = sum(len(s["clips"]) for s in record["sources"].values())
    if a.command == "capture":
        Path(a.json).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"{len(record['sources'])} sources, {n} clips -> {a.json}")
        return 0
    expected = json.loads(Path(a.json).read_text(encoding="utf-8"))
    diffs = compare(expected, record)
    if expected.get("env") != record["env"]:
        print(f"note: recorded with {expected.get('env')}, now {record['env']}: re-encoded "
              "frames may differ for that reason alone", file=sys.stderr)
    for d in diffs:
        print(d)
    print(f"{len(record['sources'])} sources, {n} clips: "
          + (f"{len(diffs)} difference(s)" if diffs else "identical"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
