"""Plain records that travel between stages and processes: no I/O, no pixels.

Everything here is a small dataclass of scalars, strings and short lists so that it pickles
cheaply between worker processes (or Ray tasks) and maps onto ledger rows and Parquet columns.
Per-model or per-filter values live in namespaced dicts (``scores["motion.mean"]``) rather
than one field each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ClipRecord",
    "Rejection",
    "SourceItem",
    "Span",
    "Transition",
    "VideoInfo",
    "VideoResult",
]


@dataclass(frozen=True)
class SourceItem:
    """One input row: a file (or URL) plus what the manifest says about it.

    ``item_key`` identifies the row in the ledger (resume key); ``id`` is the manifest's own id
    verbatim, or ``None`` when the manifest gave none (the video id is then derived from the
    content hash after fetching).
    """

    item_key: str
    source: str
    id: str | None = None
    source_url: str | None = None
    license: str | None = None
    attribution: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Several spans of one video (Panda-70M, HD-VILA-100M): (start_s, end_s, caption or None).
    # The video is fetched and decoded once; clips are cut only inside these spans, and
    # ``start_s``/``end_s`` then hold their hull.
    spans: tuple[tuple[float, float, str | None], ...] = ()
    # Where a fetched remote ``source`` lies on this machine (``source`` keeps the URL).
    local_path: str | None = None
    # What the fetcher learned (HTTP headers, yt-dlp's info: license, uploader, channel, ...).
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoInfo:
    """What probing a file tells us, before any full decode.

    ``width``/``height`` are the coded size; ``display_width``/``display_height`` apply the
    rotation metadata (90/270 swap them). ``frames`` is the container's estimate and may be 0
    or wrong; the analysis pass counts the decodable frames for real.
    """

    path: str
    container: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    fps: float
    duration_s: float
    frames: int
    rotation: int = 0
    bit_depth: int = 8
    has_audio: bool = False
    size_bytes: int = 0

    @property
    def display_width(self) -> int:
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        return self.width if self.rotation in (90, 270) else self.height


@dataclass(frozen=True)
class Transition:
    """A shot transition between two shots, in source frame numbers.

    ``start_frame`` is the last frame wholly in the outgoing shot and ``end_frame`` the first
    frame wholly in the incoming shot; a hard cut has ``end_frame == start_frame + 1``. The
    frames strictly between are the transition itself and belong to no clip.
    """

    kind: str  # "cut" | "dissolve" | "fade" | "damage"
    start_frame: int
    end_frame: int
    score: float = 0.0


@dataclass(frozen=True)
class Span:
    """A half-open range of source frames ``[start_frame, end_frame)``."""

    start_frame: int
    end_frame: int

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass
class ClipRecord:
    """A planned clip and everything decided about it.

    A clip starts as a candidate (``state="candidate"``); filters may drop it
    (``state="dropped"`` with ``stage`` and ``reason``); the cutter stages it
    (``state="staged"``, ``staged_path`` set); the global steps either put it in a shard
    (``state="sharded"``) or drop it as a duplicate.
    """

    clip_id: str
    key: str
    item_key: str
    video_id: str
    source: str
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    fps: float
    width: int
    height: int
    source_url: str | None = None
    source_sha256: str | None = None
    license: str | None = None  # normalised id (clipfactory.policy.licenses)
    attribution: str | None = None
    license_raw: str | None = None  # the license text as the source gave it
    policy_decision: str | None = None  # "allowed" or "ungated" (no policy chosen)
    policy_reason: str | None = None  # e.g. "allowed:CC-BY-4.0" (see policy.Decision)
    state: str = "candidate"
    stage: str | None = None
    reason: str | None = None
    duplicate_of: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    exact_hash: str | None = None
    phash: list[int] = field(default_factory=list)
    staged_path: str | None = None
    bytes: int = 0
    file_sha256: str | None = None
    shard: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # frames in the clip file when they are not the span's (transcode mode resampled to ``fps``)
    file_frames: int | None = None

    @property
    def num_frames(self) -> int:
        """Frames in the clip file: the span's, except where transcode mode resampled it."""
        return self.end_frame - self.start_frame if self.file_frames is None else \
            self.file_frames

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def drop(self, stage: str, reason: str) -> None:
        self.state, self.stage, self.reason = "dropped", stage, reason

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["num_frames"] = self.num_frames
        return d


@dataclass(frozen=True)
class Rejection:
    """A whole input that produced no clips, and why (``stage`` + a specific ``reason``)."""

    item_key: str
    source: str
    stage: str
    reason: str
    detail: str = ""
    video_id: str | None = None


@dataclass
class VideoResult:
    """What one worker returns for one input: the probe, the clips (kept and dropped) or the
    rejection, plus the accounting that throughput is computed from."""

    item: SourceItem
    video_id: str | None = None
    source_sha256: str | None = None
    info: VideoInfo | None = None
    clips: list[ClipRecord] = field(default_factory=list)
    rejection: Rejection | None = None
    # (what, detail): the output's disk refused a write, "full" or "read-only"
    # (clipfactory.errors.StorageRefused): nothing of this input is recorded, it stays pending,
    # and the run stops
    halt: tuple[str, str] | None = None
    # the local file's "size:mtime_ns:ctime_ns" before it was read ("-" when it was not
    # there): a failure is tried again once the file differs (clipfactory.fetch.retry)
    file_state: str | None = None
    decoded_frames: int = 0
    decoder: str = ""  # what decoded the analysis pass: "software" | "nvdec"
    analysed_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    sys_s: float = 0.0  # the part of cpu_s spent in the kernel
    page_faults: int = 0  # minor and major, the whole worker process while on this video
    timings: dict[str, float] = field(default_factory=dict)
    # CPU seconds per stage (clipfactory.media.stagetime) when Config.stage_times is on
    cpu_split: dict[str, float] = field(default_factory=dict)
    # the worker process's peak RSS so far (VmHWM), read when this video was done
    peak_rss_mib: float = 0.0
