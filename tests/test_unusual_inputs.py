"""End to end over one folder of unusual-but-valid and broken inputs (and a manifest of some).

Every input gets an exact expected outcome: clips with the right frames (decoded from the shards
and compared with the frames the synthetic source was rendered from), a filter or planning
reason, or a specific video-level rejection. The run must never crash, never write outside its
output folder, and its summary must agree with its Parquet files and its shards.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.media.probe import mp4_top_level_boxes
from clipfactory.pipeline import run
from clipfactory.testing.compare import psnr
from clipfactory.testing.synth import (
    ShotSpec,
    frame_times,
    render_frame,
    write_audio_only,
    write_broken,
    write_video,
)

FPS = 30
MIN_PSNR = 30.0  # two generations of crf-18 coding stay far above this; a wrong frame is < 25


@dataclass(frozen=True)
class Valid:
    """A valid synthetic input: how it was written and the clips it must give."""

    shots: tuple[ShotSpec, ...]
    width: int
    height: int
    kw: dict[str, Any] = field(default_factory=dict)
    spans: tuple[tuple[int, int], ...] = ()  # expected kept clips (frame spans)
    out_size: tuple[int, int] = (0, 0)  # expected (width, height) of the kept clips
    dropped: tuple[tuple[int, int, str, str], ...] = ()  # (start, end, stage, reason)

    @property
    def rotation(self) -> int:
        return int(self.kw.get("rotation", 0))

    def reference(self, index: int) -> np.ndarray:
        """Source frame ``index`` as the clip must show it: an odd last row/column of the
        coded frame cropped off, then turned upright."""
        img = render_frame(self.shots, index, self.width, self.height)
        img = img[: self.height & ~1, : self.width & ~1]
        return np.rot90(img, self.rotation // 90) if self.rotation else img


def _two(seed: int, a: int = 45, b: int = 50) -> tuple[ShotSpec, ...]:
    return (ShotSpec(a, seed=seed), ShotSpec(b, seed=seed + 1))


def _dark_middle(seed: int) -> tuple[ShotSpec, ...]:
    """1.5 s, 3 s dark (dropped), 1.7 s: cutting the last clip seeks over the dark shot."""
    return (ShotSpec(45, seed=seed), ShotSpec(90, "dark", seed + 1), ShotSpec(50, seed=seed + 2))


def _valid(shots: tuple[ShotSpec, ...], width: int, height: int, **kw: Any) -> Valid:
    """Every texture shot is one clip; a dark shot is dropped as too dark."""
    cuts = np.cumsum([0] + [s.frames for s in shots]).tolist()
    spans = list(itertools.pairwise(cuts))
    rot = kw.get("rotation", 0) in (90, 270)
    w, h = (height, width) if rot else (width, height)
    return Valid(shots, width, height, kw,
                 tuple(sp for sp, s in zip(spans, shots, strict=True) if s.kind == "texture"),
                 (w & ~1, h & ~1),
                 tuple((*sp, "filter", "too_dark") for sp, s in zip(spans, shots, strict=True)
                       if s.kind == "dark"))


# name (relative to the media folder) -> what it is; all must be processed into clips
VALID: dict[str, Valid] = {
    "rot90.mp4": _valid(_two(100), 192, 108, rotation=90),
    "rot270.mp4": _valid(_two(110), 192, 108, rotation=270),
    "rot180.mp4": _valid(_two(115), 192, 108, rotation=180),
    "odd rot90.mkv": _valid((ShotSpec(45, seed=155),), 161, 91, pix_fmt="yuv444p", rotation=90),
    "vfr.mp4": _valid(_two(120, 46, 50), 160, 90, vfr=True),
    "tenbit.mkv": _valid(_two(130), 160, 90, pix_fmt="yuv420p10le"),
    "yuv444.mp4": _valid(_two(140), 160, 90, pix_fmt="yuv444p"),
    "odd 444.mp4": _valid((ShotSpec(45, seed=150),), 321, 181, pix_fmt="yuv444p"),
    "strip.mp4": _valid((ShotSpec(45, seed=160),), 1024, 64),  # 16:1, smaller side = min_side
    "av1.mp4": _valid(_two(170), 160, 90, codec="libsvtav1"),
    "vp9.webm": _valid(_two(180), 160, 90, codec="libvpx-vp9"),
    "mpeg4.avi": _valid(_two(190), 160, 90, codec="mpeg4"),
    "mpegts.ts": _valid(_two(200), 160, 90),
    "mpegts bframes.ts": _valid(_dark_middle(270), 160, 90, bframes=2, gop=30),
    "mpeg4 bframes.avi": _valid(_dark_middle(280), 160, 90, codec="mpeg4", bframes=2),
    "with audio.mp4": _valid(_two(210), 160, 90, audio=True),
    "vidéo à tester 01.mp4": _valid(_two(220), 160, 90),
    "日本語.mkv": _valid(_two(230), 160, 90),
    "sub dir/ünïcode ✓.webm": _valid(_two(240), 160, 90, codec="libvpx-vp9"),
    "SHOUTING.MOV": _valid(_two(250), 160, 90),
    "-rf 'quoted' #1.mp4": _valid(_two(260), 160, 90),
    "AVCHD/00001.MTS": _valid(_two(360), 160, 90),  # a camera's MPEG-TS, named as they are
    "disc.vob": _valid(_two(370), 160, 90),  # MPEG-PS
    # two MPEG-TS files joined end to end (`cat a.ts b.ts`): timestamps restart half-way
    "joined.ts": _valid(_two(390) + _two(392), 160, 90),
    # a bare H.264 stream, no container: its rate is in the stream (FFmpeg says 25 fps)
    "raw stream.h264": _valid(_two(410), 160, 90),
    # a one-frame picture track before the video (a cover stored as a video track)
    "cover first.mkv": _valid(_two(400), 160, 90),
    # in a folder outside the input folder, reached through a symlinked folder
    "linked/far away.mp4": _valid(_two(380), 160, 90),
}

# name -> (shots, width, height, expected (stage, reason) of its only clip)
DROPPED: dict[str, tuple[tuple[ShotSpec, ...], int, int, tuple[str, str]]] = {
    "one_frame.mp4": ((ShotSpec(1, seed=300),), 160, 90, ("plan", "too_short")),
    "tiny16.mp4": ((ShotSpec(45, seed=310),), 16, 16, ("filter", "too_small")),
    "wide.mp4": ((ShotSpec(45, seed=320),), 1280, 32, ("filter", "too_small")),
    "tall.mp4": ((ShotSpec(45, seed=330),), 32, 720, ("filter", "too_small")),
}

# name -> (stage, reason) of the video-level rejection
NOT_UTF8 = b"latin1 caf\xe9.mp4"
FAILED: dict[str, tuple[str, str]] = {
    "broken/zero_byte.mp4": ("probe", "empty_file"),
    "broken/text.mp4": ("probe", "not_a_media_file"),
    "broken/no_moov.mp4": ("probe", "truncated_no_index"),
    "broken/audio_only.m4a": ("probe", "no_video_stream"),
    "song with cover.mp4": ("probe", "no_video_stream"),  # audio and its cover art only
    "fake.mp4": ("probe", "not_a_file"),  # a directory named like a video
    "dangling.mp4": ("probe", "missing_file"),  # a symlink to nothing
    "zz link to av1.mp4": ("ingest", "duplicate_source"),  # a symlink to another input
    "loop.mp4": ("probe", "symlink_loop"),  # a symlink to itself: it crashed the scan
    # a valid video whose name is Latin-1 bytes, not UTF-8: recorded with its bytes escaped
    NOT_UTF8.decode("utf-8", "backslashreplace"): ("ingest", "path_not_utf8"),
}


# Partially decodable: processed, but only with frames that really decode.
CUT_PAYLOAD = "broken/cut_payload.mp4"  # write_broken: shots 11, 12, 13 (30 frames), 320x180
CUT_PAYLOAD_SHOTS = (ShotSpec(30, seed=11), ShotSpec(30, seed=12), ShotSpec(30, seed=13))
GARBAGE = "broken/garbage_middle.mp4"  # replaced by our own (distinct content, gop 30)
GARBAGE_SHOTS = (ShotSpec(45, seed=400), ShotSpec(45, seed=401), ShotSpec(45, seed=402))

SAFE_MEMBER = re.compile(r"^[A-Za-z0-9_-]+\.(mp4|json)$")


# -- helpers --------------------------------------------------------------------------------

def _write_garbage_middle(path: Path) -> None:
    """Like ``write_broken``'s garbage_middle (4 KiB of noise mid-mdat), but with keyframes
    every 30 frames so that decoding recovers and later frames can be kept."""
    write_video(path, GARBAGE_SHOTS, width=320, height=180, gop=30)
    data = bytearray(path.read_bytes())
    pos = 0
    for kind, size in mp4_top_level_boxes(path) or []:
        if kind == b"mdat":
            lo, hi = pos + 8, pos + size
            break
        pos += size
    else:
        raise AssertionError("no mdat")
    mid, n = (lo + hi) // 2, min(4096, (hi - lo) // 4)
    data[mid : mid + n] = np.random.default_rng(99).integers(0, 256, n, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _join_ts(path: Path, shots: tuple[ShotSpec, ...], work: Path) -> None:
    """Replace ``path`` with its first two shots and its last two, each written as an MPEG-TS
    file of its own (timestamps from zero) and the two files' bytes joined."""
    work.mkdir()
    parts = [work / "a.ts", work / "b.ts"]
    for part, half in zip(parts, (shots[:2], shots[2:]), strict=True):
        write_video(part, half, fps=FPS, width=160, height=90)
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    shutil.rmtree(work)


def _with_cover(path: Path, work: Path) -> None:
    """Give the file ``path`` a 64x64 JPEG cover picture, its own streams copied after it:
    Matroska gets a one-frame MJPEG video track ahead of the video; MP4 the cover as
    ``attached_pic``, which FFmpeg lists as a video stream too (M4A takes no MJPEG).
    ``work``: a scratch folder."""
    work.mkdir()
    src = work / path.name
    os.replace(path, src)
    picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24")
    picture = picture.reformat(format="yuvj420p")
    picture.pts = 0
    with av.open(str(src)) as inp, av.open(str(path), "w") as out:
        cover = out.add_stream("mjpeg", rate=1)
        cover.width = cover.height = 64
        cover.pix_fmt = "yuvj420p"
        if path.suffix != ".mkv":
            cover.disposition = av.stream.Disposition.attached_pic
        copies = {s.index: out.add_stream_from_template(s) for s in inp.streams
                  if s.type in ("video", "audio")}
        for packet in [*cover.encode(picture), *cover.encode(None)]:
            packet.stream = cover
            out.mux(packet)
        for packet in inp.demux(*[inp.streams[i] for i in copies]):
            if packet.dts is not None:
                packet.stream = copies[packet.stream.index]
                out.mux(packet)
    shutil.rmtree(work)


def _decoded_pts(path: str | Path) -> tuple[list[int], float]:
    """pts of every frame a plain decode yields (failed packets skipped, like the analysis
    pass), and the stream's time base."""
    pts: list[int] = []
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        try:
            for packet in c.demux(vs):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue
                pts.extend(f.pts for f in frames)
        except av.FFmpegError:
            pass
        return pts, float(vs.time_base)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass
class Clip:
    frames: list[np.ndarray]  # RGB
    times: list[float]  # seconds
    pix_fmts: set[str]
    rotations: set[int]  # display rotation metadata left on the frames
    audio_streams: int


@dataclass
class Result:
    out: Path
    summary: dict[str, Any]
    index: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    members: dict[str, dict[str, bytes]]  # key -> {ext: bytes} over all shards

    def rows(self, source: Path) -> list[dict[str, Any]]:
        real = os.path.realpath(source)  # a source is recorded by its real path
        return sorted((r for r in self.index if r["source"] == real),
                      key=lambda r: r["start_frame"])

    def item_rejections(self, item_key: str) -> list[dict[str, Any]]:
        return [r for r in self.rejected if r["item_key"] == item_key]

    def rejections(self, source: Path, kind: str) -> list[dict[str, Any]]:
        real = os.path.realpath(source)
        return [r for r in self.rejected if r["source"] == real and r["kind"] == kind]

    def clip(self, row: dict[str, Any]) -> Clip:
        """A clip as read back from its shard."""
        with av.open(io.BytesIO(self.members[row["key"]]["mp4"])) as c:
            vs = c.streams.video[0]
            frames = list(c.decode(vs))
            return Clip([f.to_ndarray(format="rgb24") for f in frames],
                        [float(f.pts * vs.time_base) for f in frames],
                        {f.format.name for f in frames}, {f.rotation for f in frames},
                        len(c.streams.audio))


def _load(out: Path, summary: dict[str, Any]) -> Result:
    members: dict[str, dict[str, bytes]] = {}
    for shard in sorted((out / "shards").iterdir()):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                assert m.isfile(), m.name
                key, ext = m.name.split(".", 1)
                members.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return Result(out, summary, pq.read_table(out / "index.parquet").to_pylist(),
                  pq.read_table(out / "rejected.parquet").to_pylist(), members)


def _cfg() -> Config:
    cfg = Config(workers=1)
    cfg.clips.min_s = 1.0
    return cfg


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("unusual")


@pytest.fixture(scope="module")
def media(sandbox: Path) -> Path:
    d = sandbox / "media"
    (d / "sub dir").mkdir(parents=True)
    (d / "AVCHD").mkdir()
    (d / "linked").mkdir()
    for name, v in VALID.items():
        write_video(d / name, v.shots, fps=FPS, width=v.width, height=v.height, **v.kw)
    for name, (shots, w, h, _) in DROPPED.items():
        write_video(d / name, shots, fps=FPS, width=w, height=h)
    _join_ts(d / "joined.ts", VALID["joined.ts"].shots, sandbox / "parts")
    _with_cover(d / "cover first.mkv", sandbox / "parts")
    write_audio_only(d / "song with cover.mp4")
    _with_cover(d / "song with cover.mp4", sandbox / "parts")
    write_broken(d / "broken")
    _write_garbage_middle(d / GARBAGE)
    write_video(d / "latin1.tmp.mp4", [ShotSpec(45, seed=500)], width=160, height=90)
    os.rename(os.fsencode(d / "latin1.tmp.mp4"), os.fsencode(d) + b"/" + NOT_UTF8)
    (d / "fake.mp4").mkdir()
    os.symlink(d / "no_such_video.mp4", d / "dangling.mp4")
    os.symlink("av1.mp4", d / "zz link to av1.mp4")
    os.symlink("loop.mp4", d / "loop.mp4")
    # the linked folder's videos live outside the input folder; a link back up the tree must
    # not list anything twice; a hidden folder (a USB disk's trash) is not searched
    os.rename(d / "linked", sandbox / "elsewhere")
    os.symlink(sandbox / "elsewhere", d / "linked")
    os.symlink("..", d / "sub dir" / "up")
    (d / ".Trash-1000" / "files").mkdir(parents=True)
    write_video(d / ".Trash-1000" / "files" / "deleted.mp4", [ShotSpec(45, seed=510)],
                width=160, height=90)
    return d


@pytest.fixture(scope="module")
def manifest(sandbox: Path, media: Path) -> Path:
    rows = [
        {"path": "../media/rot90.mp4", "id": "rot 90 ok",
         "license": "CC-BY-4.0", "author": "Ann"},
        {"path": "../media/av1.mp4", "id": "../x"},
        {"path": "../media/mpeg4.avi", "id": "rot 90 ok"},  # the first row's id again
        {"path": "../media/not_there.mp4", "id": "gone"},
        {"path": str(media / "vidéo à tester 01.mp4"), "id": "vidéo à tester"},
        {"path": "../media/日本語.mkv", "id": "日本語"},
        {"path": "../media/vfr.mp4", "id": "span", "start": 0.82, "end": 2.92},
        {"path": f"file://{media / 'mpegts.ts'}", "id": "ts"},
        {"path": "../media/yuv444.mp4", "id": "late", "start": 100},
    ]
    d = sandbox / "manifests"
    d.mkdir()
    m = d / "list.jsonl"
    m.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                 encoding="utf-8")
    return m


@pytest.fixture(scope="module")
def runs(sandbox: Path, media: Path, manifest: Path) -> dict[str, Any]:
    """Both runs, from an empty working directory and an empty TMPDIR that must stay empty."""
    cwd, tmp = sandbox / "cwd", sandbox / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    before = {"media": _snapshot(media), "manifests": _snapshot(manifest.parent)}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setenv("TMPDIR", str(tmp))  # spawned workers pick it up
        mp.setattr(tempfile, "tempdir", str(tmp))
        folder = run(media, sandbox / "out", _cfg())
        listed = run(manifest, sandbox / "out_manifest", _cfg())
    after = {"media": _snapshot(media), "manifests": _snapshot(manifest.parent)}
    return {
        "folder": _load(sandbox / "out", folder),
        "manifest": _load(sandbox / "out_manifest", listed),
        "before": before, "after": after, "cwd": cwd, "tmp": tmp, "sandbox": sandbox,
    }


@pytest.fixture(scope="module")
def folder(runs: dict[str, Any]) -> Result:
    return runs["folder"]


@pytest.fixture(scope="module")
def listed(runs: dict[str, Any]) -> Result:
    return runs["manifest"]


def _check_clip_content(res: Result, row: dict[str, Any], v: Valid,
                        source_index: list[int] | None = None) -> list[float]:
    """Frame count, size, and every frame = its source frame (and unlike its neighbours)."""
    clip = res.clip(row)
    frames, times = clip.frames, clip.times
    assert len(frames) == row["num_frames"] == row["end_frame"] - row["start_frame"]
    w, h = v.out_size
    assert frames[0].shape == (h, w, 3)
    assert clip.pix_fmts == {"yuv420p"} and clip.rotations == {0}  # upright 8-bit 4:2:0
    total = sum(s.frames for s in v.shots)
    for k, img in enumerate(frames):
        i = row["start_frame"] + k
        src = source_index[i] if source_index is not None else i
        own = psnr(img, v.reference(src))
        assert own >= MIN_PSNR, (row["key"], k, own)
        for n in (src - 1, src + 1):
            if 0 <= n < total:
                assert psnr(img, v.reference(n)) < own - 4.0, (row["key"], k, n)
    assert times[0] == 0 and all(b > a for a, b in itertools.pairwise(times))
    return times


# -- valid inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(VALID))
def test_valid_input_is_cut_frame_exact(folder: Result, media: Path, name: str) -> None:
    v = VALID[name]
    rows = folder.rows(media / name)
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == list(v.spans)
    assert [(r["kind"], r["start_frame"], r["end_frame"], r["stage"], r["reason"])
            for r in folder.item_rejections(f"file:{name}")] == [
        ("clip", *d) for d in v.dropped]
    for r in rows:
        assert (r["width"], r["height"]) == v.out_size
        assert r["num_frames"] == r["end_frame"] - r["start_frame"]
        assert r["fps"] == pytest.approx(FPS, rel=0.02)
        _check_clip_content(folder, r, v)


@pytest.mark.parametrize("name", ["rot90.mp4", "rot270.mp4"])
def test_rotated_source_gives_upright_clips(folder: Result, media: Path, name: str) -> None:
    v = VALID[name]
    rows = folder.rows(media / name)
    assert rows and all((r["width"], r["height"]) == (v.height, v.width) for r in rows)
    frames = folder.clip(rows[0]).frames
    upright = np.rot90(render_frame(v.shots, 0, v.width, v.height), v.rotation // 90)
    turned_wrong_way = np.rot90(upright, 2)
    assert psnr(frames[0], upright) >= MIN_PSNR
    assert psnr(frames[0], turned_wrong_way) < psnr(frames[0], upright) - 10


def test_vfr_clip_times_follow_real_timestamps(folder: Result, media: Path) -> None:
    v = VALID["vfr.mp4"]
    total = sum(s.frames for s in v.shots)
    times = frame_times(total, FPS, vfr=True)
    rows = folder.rows(media / "vfr.mp4")
    assert rows[0]["end_frame"] == rows[1]["start_frame"] == 46
    assert times[46] != pytest.approx(46 / FPS, abs=1e-3)  # the test means something
    for r in rows:
        assert r["start_s"] == pytest.approx(times[r["start_frame"]], abs=1e-4)
        if r["end_frame"] < total:
            assert r["end_s"] == pytest.approx(times[r["end_frame"]], abs=1e-4)
        else:
            assert r["end_s"] == pytest.approx(times[-1] + 1 / r["fps"], abs=1e-4)
        assert r["duration_s"] == pytest.approx(r["end_s"] - r["start_s"], abs=1e-5)
        clip_times = _check_clip_content(folder, r, v)
        want = np.array(times[r["start_frame"] : r["end_frame"]]) - times[r["start_frame"]]
        assert np.allclose(clip_times, want, atol=2e-3)  # VFR stays VFR in the clip


def test_audio_track_is_carried_into_clips(folder: Result, media: Path) -> None:
    rows = folder.rows(media / "with audio.mp4")
    assert len(rows) == 2  # cut.audio defaults to keep: the clip has the span's audio
    assert all(folder.clip(r).audio_streams == 1 and r["has_audio"] for r in rows)
    assert all(r["cut_method"] == "smart" for r in rows)


def test_unicode_file_names_keep_their_source_path(folder: Result, media: Path) -> None:
    for name in ("vidéo à tester 01.mp4", "日本語.mkv", "sub dir/ünïcode ✓.webm"):
        rows = folder.rows(media / name)
        assert rows, name
        assert all(Path(r["source"]).is_file() for r in rows)
        assert all(re.fullmatch(r"[A-Za-z0-9_-]+", r["key"]) for r in rows)


# -- inputs whose clips are dropped ---------------------------------------------------------

@pytest.mark.parametrize("name", list(DROPPED))
def test_unusable_clip_is_dropped_with_its_reason(folder: Result, media: Path,
                                                  name: str) -> None:
    shots, _, _, (stage, reason) = DROPPED[name]
    assert folder.rows(media / name) == []
    clips = folder.item_rejections(f"file:{name}")
    assert all(c["kind"] == "clip" for c in clips)
    assert [(c["stage"], c["reason"]) for c in clips] == [(stage, reason)]
    assert (clips[0]["start_frame"], clips[0]["end_frame"]) == (0, shots[0].frames)


# -- broken inputs --------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FAILED))
def test_broken_input_is_rejected_with_a_specific_reason(folder: Result, media: Path,
                                                         name: str) -> None:
    stage, reason = FAILED[name]
    mine = folder.item_rejections(f"file:{name}")
    assert [(r["kind"], r["stage"], r["reason"]) for r in mine] == [("video", stage, reason)]
    assert mine[0]["detail"]


def test_truncated_payload_keeps_only_decodable_frames(folder: Result, media: Path) -> None:
    path = media / CUT_PAYLOAD
    decodable = len(_decoded_pts(path)[0])
    assert 0 < decodable < 90
    rows = folder.rows(path)
    assert rows, "the decodable first shot should give a clip"
    assert not folder.rejections(path, "video")
    for r in rows + folder.rejections(path, "clip"):
        assert r["end_frame"] <= decodable, r
    v = Valid(CUT_PAYLOAD_SHOTS, 320, 180, out_size=(320, 180))
    for r in rows:
        _check_clip_content(folder, r, v)


def test_garbage_frames_are_never_inside_a_kept_clip(folder: Result, media: Path) -> None:
    path = media / GARBAGE
    pts, tb = _decoded_pts(path)
    source_index = [round((p - pts[0]) * tb * FPS) for p in pts]
    total = sum(s.frames for s in GARBAGE_SHOTS)
    assert len(source_index) < total  # the damage really lost packets
    rows = folder.rows(path)
    assert not folder.rejections(path, "video")
    v = Valid(GARBAGE_SHOTS, 320, 180, out_size=(320, 180))
    for r in rows:
        # no frame missing inside a clip, and every frame is the undamaged source frame
        got = source_index[r["start_frame"] : r["end_frame"]]
        assert got == list(range(got[0], got[0] + len(got))), r["key"]
        _check_clip_content(folder, r, v, source_index)
    lost = next(i for i, s in enumerate(source_index) if s != i)
    assert any(r["end_frame"] <= lost for r in rows), "frames before the damage are usable"
    assert any(r["start_frame"] > lost for r in rows), "decoding recovers at a keyframe"


# -- the run as a whole ---------------------------------------------------------------------

def test_every_input_has_exactly_one_outcome(folder: Result) -> None:
    db = sqlite3.connect(f"file:{folder.out / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        states = dict(db.execute("SELECT item_key, state FROM videos").fetchall())
    finally:
        db.close()
    want = {f"file:{n}": "done" for n in [*VALID, *DROPPED, CUT_PAYLOAD, GARBAGE]}
    want.update({f"file:{n}": "failed" for n in FAILED})
    assert states == want
    counts = folder.summary["counts"]
    failed = sum(v == "failed" for v in states.values())
    assert counts["videos"]["pending"] == 0
    assert counts["videos"]["failed"] == failed
    assert counts["videos"]["done"] == len(states) - failed
    assert not [r for r in folder.rejected if r["stage"] in ("internal", "cut", "finalize")]
    assert counts["clips"]["staged"] == 0


@pytest.mark.parametrize("which", ["folder", "manifest"])
def test_summary_shards_and_parquet_agree(runs: dict[str, Any], which: str) -> None:
    res: Result = runs[which]
    out, counts = res.out, res.summary["counts"]
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == res.summary
    videos = [r for r in res.rejected if r["kind"] == "video"]
    clips = [r for r in res.rejected if r["kind"] == "clip"]
    assert counts["clips"]["kept"] == len(res.index)
    assert counts["clips"]["dropped"] == len(clips)
    assert counts["videos"]["failed"] == len(videos)
    assert counts["dropped_by_reason"] == dict(Counter(f"{r['stage']}/{r['reason']}"
                                                       for r in clips))
    assert counts["failed_by_reason"] == dict(Counter(f"{r['stage']}/{r['reason']}"
                                                      for r in videos))
    assert sum(s["count"] for s in res.summary["shards"]) == len(res.index)
    on_disk = sorted(p.name for p in (out / "shards").iterdir())
    assert on_disk == sorted(s["name"] for s in res.summary["shards"])
    for s in res.summary["shards"]:
        assert (out / "shards" / s["name"]).stat().st_size == s["bytes"]
    assert counts["hours_out"] == pytest.approx(
        sum(r["end_s"] - r["start_s"] for r in res.index) / 3600, rel=1e-6)
    # one sample per index row, with exactly its mp4 and json, named only [A-Za-z0-9_-]
    assert sorted(res.members) == sorted(r["key"] for r in res.index)
    for row in res.index:
        files = res.members[row["key"]]
        assert sorted(files) == ["json", "mp4"]
        assert all(SAFE_MEMBER.match(f"{row['key']}.{ext}") for ext in files)
        meta = json.loads(files["json"])
        assert {k: meta[k] for k in ("clip_id", "start_frame", "end_frame", "source")} == \
               {k: row[k] for k in ("clip_id", "start_frame", "end_frame", "source")}
    for name in ("index.parquet", "rejected.parquet", "summary.json", "ledger.sqlite",
                 "README.md"):
        assert (out / name).is_file(), name
    leftovers = [p for p in out.rglob("*") if p.is_file() and (
        p.name.startswith(".") or "staging" in p.relative_to(out).parts)]
    assert leftovers == []


def test_nothing_is_written_outside_the_output_folders(runs: dict[str, Any]) -> None:
    assert runs["after"] == runs["before"]
    assert list(runs["cwd"].iterdir()) == []
    assert list(runs["tmp"].iterdir()) == []
    top = sorted(p.name for p in runs["sandbox"].iterdir())
    assert top == ["cwd", "elsewhere", "manifests", "media", "out", "out_manifest", "tmp"]


# -- manifest -------------------------------------------------------------------------------

def _video_rejection(res: Result, n: int) -> dict[str, Any]:
    rows = [r for r in res.rejected if r["kind"] == "video" and r["item_key"].endswith(f":{n}")]
    assert len(rows) == 1, rows
    return rows[0]


def test_manifest_rejects_hostile_and_duplicate_ids_and_missing_paths(listed: Result,
                                                                      media: Path) -> None:
    hostile = _video_rejection(listed, 2)
    assert (hostile["stage"], hostile["reason"], hostile["video_id"]) == (
        "ingest", "invalid_id", "../x")
    dup = _video_rejection(listed, 3)
    assert (dup["stage"], dup["reason"]) == ("ingest", "duplicate_id")
    gone = [r for r in listed.rejected if r["kind"] == "video" and r["video_id"] == "gone"]
    assert [(r["stage"], r["reason"], r["source"]) for r in gone] == [
        ("probe", "missing_file", str(media / "not_there.mp4"))]
    # the rejected rows gave no clips; the first row with that id did
    assert not [r for r in listed.index if r["source"] in (str(media / "av1.mp4"),
                                                           str(media / "mpeg4.avi"))]
    late = [r for r in listed.rejected if r["kind"] == "video" and r["video_id"] == "late"]
    assert [(r["stage"], r["reason"]) for r in late] == [("plan", "span_outside_video")]
    assert [r["video_id"] for r in listed.rows(media / "mpegts.ts")] == ["ts", "ts"]
    videos = listed.summary["counts"]["videos"]
    assert {k: videos[k] for k in ("total", "done", "failed", "pending")} == {
        "total": 9, "done": 5, "failed": 4, "pending": 0}


def test_manifest_ids_metadata_and_keys(listed: Result, media: Path) -> None:
    rot = listed.rows(media / "rot90.mp4")
    assert len(rot) == 2
    assert {(r["video_id"], r["license"], r["attribution"]) for r in rot} == {
        ("rot 90 ok", "CC-BY-4.0", "Ann")}
    for _name, vid in (("vidéo à tester 01.mp4", "vidéo à tester"), ("日本語.mkv", "日本語")):
        rows = listed.rows(media / _name)
        assert len(rows) == 2 and {r["video_id"] for r in rows} == {vid}
    keys = [r["key"] for r in listed.index]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)
    v = VALID["rot90.mp4"]
    for r in rot:
        _check_clip_content(listed, r, v)


def test_manifest_span_row_clips_lie_within_the_span(listed: Result, media: Path) -> None:
    v = VALID["vfr.mp4"]
    times = frame_times(sum(s.frames for s in v.shots), FPS, vfr=True)
    start, end = 0.82, 2.92
    rows = listed.rows(media / "vfr.mp4")
    dropped = listed.rejections(media / "vfr.mp4", "clip")
    assert rows, "the second shot (1.52 s .. 2.92 s) is long enough to keep"
    for r in rows + dropped:
        assert r["video_id"] == "span"
        # every frame starts inside [start, end); only the last one may show past ``end``
        frame_t = times[r["start_frame"] : r["end_frame"]]
        assert min(frame_t) >= start - 1e-6 and max(frame_t) < end, r
        assert r["start_s"] == pytest.approx(frame_t[0], abs=1e-4)
        assert frame_t[-1] < r["end_s"] <= times[r["end_frame"]] + 1e-4, r
    first_in = next(i for i, t in enumerate(times) if t >= start - 1e-6)
    last_in = max(i for i, t in enumerate(times) if t < end - 1e-6)
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == [(46, last_in + 1)]
    assert [(r["stage"], r["reason"], r["start_frame"], r["end_frame"]) for r in dropped] == [
        ("plan", "too_short", first_in, 46)]
    for r in rows:
        _check_clip_content(listed, r, v)


def test_manifest_span_last_clip_ends_at_the_next_frames_time(listed: Result,
                                                              media: Path) -> None:
    """The same frames get the same times with or without a span: end_s is the real start
    time of the next source frame (VFR here), as in the folder run."""
    times = frame_times(sum(s.frames for s in VALID["vfr.mp4"].shots), FPS, vfr=True)
    rows = listed.rows(media / "vfr.mp4")
    assert rows
    for r in rows:
        assert r["end_s"] == pytest.approx(times[r["end_frame"]], abs=1e-4), r
