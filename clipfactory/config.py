"""Typed configuration: one pydantic model per stage, YAML in and out.

The library takes these models (or plain keyword arguments); only the CLI reads files and
flags. Every field has a default, so an empty YAML file is a valid config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clipfactory.annotate.taxonomy import DEFAULT_CATEGORIES, DEFAULT_PROMPTS, DEFAULT_TEMPLATES
from clipfactory.sinks.buckets import (
    DEFAULT_ASPECT_BINS,
    DEFAULT_DURATION_BINS,
    DEFAULT_RESOLUTION_BINS,
    Bucketing,
)

__all__ = [
    "AestheticConfig",
    "AnalysisConfig",
    "AnnotateConfig",
    "CaptionConfig",
    "CategoryConfig",
    "ClipConfig",
    "Config",
    "ConfigError",
    "CutConfig",
    "DedupConfig",
    "EmbeddingConfig",
    "FetchConfig",
    "FilterConfig",
    "IngestConfig",
    "PolicyConfig",
    "RayConfig",
    "ShardConfig",
    "ShotConfig",
    "describe_errors",
    "load_config",
    "stored_config",
]


# bounds of the numeric settings: a value outside them is a config error when it is read, not a
# failure of every input later (an analysis width of 0 failed each video as undecodable)
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]
MAX_WORKERS = 4096  # worker processes of one run (the process pool's queue is a C int)
NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]  # a fraction, a probability, a 0..1 score
Luma = Annotated[float, Field(ge=0, le=255)]
FrameSide = Annotated[int, Field(ge=16, le=4096)]
GradualFrames = Annotated[int, Field(ge=2)]
Crf = Annotated[int, Field(ge=0, le=63)]
HashBits = Annotated[int, Field(ge=0, le=64)]
# threads of one decoder, encoder or session (0: picked from cores and workers): 100000 hung
Threads = Annotated[int, Field(ge=0, le=256)]
# a time limit: finite (inf overflowed a timer after the run had started); at most 30 days
Seconds = Annotated[float, Field(gt=0, le=30 * 86400, allow_inf_nan=False)]
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")  # x265's too


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestConfig(_Section):
    """What counts as a video file in a folder, and what is absurd."""

    extensions: list[str] = Field(
        default_factory=lambda: [
            ".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
            ".wmv", ".3gp", ".ogv", ".mxf", ".m4a",
            # camera and disc files: AVCHD (.mts/.m2ts), DVD (.vob), DV, ASF, F4V, 3GPP2
            ".mts", ".m2ts", ".vob", ".dv", ".asf", ".f4v", ".3g2",
            # bare H.264/HEVC streams (a Raspberry Pi's or a security camera's recordings)
            ".h264", ".264", ".h265", ".265", ".hevc",
            # animated GIFs (web and reaction clips, TGIF-style sets); a still one is a clip
            # too short to keep (plan/too_short)
            ".gif",
        ]
    )

    @field_validator("extensions")
    @classmethod
    def _dotted(cls, v: list[str]) -> list[str]:
        """``mp4`` means ``.mp4`` (a suffix compares with its dot: ``[mp4]`` matched nothing)."""
        out = [e.strip().lower() for e in v]
        out = [e if e.startswith(".") else f".{e}" for e in out if e.strip(".")]
        if not out:
            raise ValueError("ingest.extensions: at least one file extension, e.g. .mp4")
        return out

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        from clipfactory.sources.layouts import FIELDS

        for field in v:
            if field not in FIELDS:
                raise ValueError(f"ingest.columns: unknown field {field!r}; fields: "
                                 f"{', '.join(FIELDS)}")
        return v

    max_pixels: PosInt = 8192 * 4352  # above 8K DCI is treated as absurd
    max_dimension: PosInt = 16384
    max_duration_s: PosFloat = 24 * 3600.0
    # manifest layout: "auto" detects it from the columns (docs/fetch.md lists them)
    layout: Literal["auto", "generic", "hdvila", "panda70m", "internvid", "webvid"] = "auto"
    # our field -> the manifest's column, e.g. {"url": "contentUrl", "id": "videoid"}
    columns: dict[str, str] = Field(default_factory=dict)
    # each run stats the local files of finished inputs and cuts again those that hold other
    # bytes now, their old clips removed (clipfactory.provenance.replaced). About 8 us per
    # input on a local disk; a mount where a stat costs milliseconds may want it off
    check_replaced: bool = True


class AnalysisConfig(_Section):
    """The single decode pass: how small the analysis frames are, and decoder threads."""

    width: FrameSide = 160  # analysis frames are this wide (height keeps the aspect, even)
    max_height: FrameSide = 160  # cap for portrait / extreme aspect sources
    decode_threads: Threads = 0  # 0 = pick from cores and workers
    exact_hash: bool = True  # hash full-resolution decoded planes per frame (exact dedup)
    # camera and object motion per frame: the decoder's motion vectors (H.264, MPEG-2/4),
    # phase correlation of the analysis frames for other codecs (VP9, AV1, HEVC...)
    motion: bool = True
    # NVDEC (FFmpeg's CUDA hwaccel) for the decode: auto = where a CUDA device opens and NVDEC
    # decodes the stream, else software; always = a video NVDEC cannot decode fails
    # (analyse/nvdec_unavailable); never = software (clipfactory.media.nvdec, docs/gpu.md)
    gpu: Literal["auto", "never", "always"] = "auto"
    # letterbox and pillarbox bars (a 4:3 or 9:16 picture in a 16:9 frame): found in the first
    # second of picture, and brightness, sharpness, motion and camera motion measured inside
    # them; the picture's place is each clip's extra.picture (docs/filters.md)
    black_bars: bool = True


class ShotConfig(_Section):
    """Shot and transition detection on the analysis frames (docs/shots.md).

    ``hybrid`` (default): the built-in detector, and TransNetV2 (shipped as ONNX, run with
    onnxruntime) on the frames around proposed transitions; ``builtin``: cuts, dissolves and
    fades by rules alone; ``content``: hard cuts only (v0); ``transnet``: TransNetV2 on every
    frame.
    """

    detector: Literal["hybrid", "builtin", "content", "transnet"] = "hybrid"
    threshold: Share = 0.3  # absolute floor of the cut score (0..1)
    adaptive_ratio: NonNegFloat = 3.0  # cut score must exceed this multiple of recent activity
    window: PosInt = 8  # frames of context on each side for the adaptive test
    flash_lookahead: NonNegInt = 4  # frames checked for a return to the old shot (flash)
    min_shot_frames: PosInt = 4  # two cuts closer than this keep only the stronger
    gradual: bool = True  # builtin: find dissolves and fades too
    max_residual: NonNegFloat = 0.35  # builtin: how far off a pure mix a dissolve's frames may be
    max_gradual_frames: GradualFrames = 60  # builtin: longest dissolve or fade found whole
    transnet_threshold: Share = 0.5  # hybrid, transnet: transition probability
    # hybrid, transnet: auto (cuda when onnxruntime has it), cpu, cuda or cuda:N (`gpu` ran
    # on the CPU without a word)
    transnet_device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] = "auto"
    transnet_batch: PosInt = 4  # transnet: 100-frame windows per forward pass
    model: str = ""  # hybrid, transnet: a TransNetV2 ONNX file ("" = the one clipfactory ships)
    model_threads: Threads = 1  # hybrid, transnet: onnxruntime threads per worker process
    # hybrid: frames the model reads on each side of a proposed region (the detector holds
    # about max_gradual_frames + 2 x slow_step x context analysis frames: bounded)
    context: Annotated[int, Field(ge=0, le=200)] = 10
    proposal_change: Share = 0.1  # hybrid: how different a mix's two ends must be (0..1)
    proposal_residual: NonNegFloat = 0.25  # hybrid: how close to a pure mix the middle must be
    sure_cut: NonNegFloat = 2.3  # hybrid: built-in cuts scoring below this x threshold are verified
    model_veto: Share = 0.2  # hybrid: ... and dropped when the model's peak there is below this
    # hybrid: a region where the model finds nothing is read again at every slow_step-th
    # frame (a 1-2 s dissolve, or any at 50-60 fps); 1: no second look
    slow_step: Annotated[int, Field(ge=1, le=8)] = 2


class ClipConfig(_Section):
    """Turning shots into clips."""

    min_s: NonNegFloat = 2.0
    max_s: PosFloat = 60.0
    trim_frames: NonNegInt = 0  # frames dropped at each shot edge (margin against soft boundaries)
    gradual_margin: NonNegInt = 3  # frames dropped beside a dissolve or fade (its faintest frames)

    @model_validator(mode="after")
    def _longest_not_below_shortest(self) -> ClipConfig:
        if self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s}) is below min_s ({self.min_s})")
        return self


class FilterConfig(_Section):
    """Signal thresholds; each filter drops a clip with its own reason."""

    enabled: bool = True
    min_brightness: Luma = 20.0  # mean luma (0-255) below this is too dark
    max_dark_fraction: Share = 0.5  # drop when more than this share of frames is black
    black_level: Luma = 16.0  # a frame whose mean luma is below this counts as black
    min_motion: NonNegFloat = 0.5  # mean abs luma change per frame (0-255 scale) below this is static
    # ... and, where camera motion is known, only when the camera moves slower than this
    # (fraction of the frame per second) and objects slower than min_object_motion: a slow
    # pan or a fixed camera watching people walk is not static
    min_camera_motion: NonNegFloat = 0.03
    min_object_motion: NonNegFloat = 0.005
    min_sharpness: NonNegFloat = 80.0  # median variance of the Laplacian (pooled luma) below: blurry
    min_side: NonNegInt = 64  # clips whose smaller display side is below this are too small
    # burned-in text (subtitles, lower thirds, titles, tickers, watermarks): PP-OCRv4's text
    # detector on a few frames of each clip the cheap filters kept; off by default: it costs
    # about 55 ms of CPU per frame (docs/filters.md). Needs `pip install 'clipfactory[text]'`
    text_overlay: bool = False
    text_min_area: Share = 0.002  # persistent text, share of frame
    text_frames: int = Field(default=3, ge=2, le=16)  # frames looked at per clip
    text_max_side: int = Field(default=640, ge=64)  # longer side of the frames given to OCR
    # with annotate.aesthetic.model: clips scoring below this are dropped (low_aesthetic);
    # decided in the embedding stage, after the cut, for clips not yet in a shard
    min_aesthetic: float | None = None


class CutConfig(_Section):
    """How kept clips are cut and encoded (see docs/cutting.md).

    ``mode``:

    - ``exact`` (default): frame-exact smart cut. Only the frames from a clip's first frame to
      the next clean keyframe (and after the last whole GOP) are re-encoded, with an encoder
      matched to the source; every whole GOP inside the clip is copied unchanged. Sources that
      cannot be spliced safely (codec without a splice encoder, 10-bit or 4:2:2/4:4:4, odd
      sizes, rotation metadata, open GOPs, no usable timestamps, containers that cannot be
      remuxed) are re-encoded in full with ``codec``; the clip records why.
    - ``keyframe``: stream copy of the whole GOPs inside the span, no decoding at all; the clip
      shrinks to the GOP boundaries it actually has (recorded), or is dropped
      (``no_keyframe_in_span``) when no whole GOP fits.
    - ``transcode``: every frame re-encoded to the target below (codec, ``max_width`` /
      ``max_height``, ``fps``, ``pix_fmt``, ``crf`` or ``bitrate``).

    ``codec`` names a family (``h264``, ``hevc``, ``av1``, ``vp9``) or an encoder
    (``libx264``, ``libsvtav1``, ``libvpx-vp9``, ``h264_nvenc``...). A family picks the NVENC
    encoder when ``gpu`` allows and one opens on this machine, else the software encoder
    (libx264, libx265, libsvtav1, libvpx-vp9).

    ``deinterlace``: ``auto`` re-encodes a source whose frames are mostly interlaced through
    FFmpeg's ``bwdif``, one progressive frame per frame (``extra.cut.fallback: interlaced``);
    ``always`` every source; ``never`` none.
    """

    mode: Literal["exact", "keyframe", "transcode"] = "exact"
    audio: Literal["keep", "drop"] = "keep"  # keep: the source's audio packets over the span
    codec: str = "h264"  # transcode target, and the full re-encode of unspliceable sources
    preset: str = "veryfast"  # x264/x265 preset; SVT-AV1 preset 10, NVENC p4 when left as is
    edge_preset: str = "ultrafast"  # x264 preset of exact mode's re-encoded edges (short runs)
    crf: Crf = 18  # constant quality (x264/x265 crf, SVT-AV1/VP9 crf, NVENC cq)
    bitrate: str | None = None  # e.g. "4M": average bitrate instead of crf
    pix_fmt: Literal["yuv420p", "yuv420p10le"] = "yuv420p"
    max_width: int | None = Field(default=None, ge=16)  # transcode: scale down to fit, keep
    max_height: int | None = Field(default=None, ge=16)  # aspect, never up
    fps: float | None = Field(default=None, gt=0, le=240)  # transcode: constant output rate
    gpu: Literal["auto", "never", "always"] = "auto"  # NVENC for family codecs
    threads: Threads = 0  # 0 = pick from cores and workers
    # auto: a source whose frames are mostly interlaced (camcorder 1080i, broadcast, DV) is
    # re-encoded deinterlaced (bwdif, one frame per frame); keyframe mode never decodes
    deinterlace: Literal["auto", "always", "never"] = "auto"

    @field_validator("bitrate", mode="before")
    @classmethod
    def _bitrate_text(cls, v: object) -> object:
        """``600000`` in YAML is a number: the bitrate it means (as ``"600000"``)."""
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _encoder_settings(self) -> CutConfig:
        """A codec, preset or bitrate no encoder takes is an error now, not every clip of
        every video dropped as ``cut/encode_failed`` (or failed with a traceback) later."""
        import av

        from clipfactory.media.encoders import FAMILIES, parse_bitrate

        name = self.codec.strip().lower()
        if name not in FAMILIES:
            try:
                codec = av.codec.Codec(self.codec, "w")
            except ValueError:
                raise ValueError(f"cut.codec: unknown codec {self.codec!r}: expected one of "
                                 f"{sorted(FAMILIES)} or an FFmpeg video encoder name") from None
            if codec.type != "video":
                raise ValueError(f"cut.codec: {self.codec!r} is not a video encoder")
        if self.bitrate is not None:
            try:
                parse_bitrate(self.bitrate)
            except ValueError as e:
                raise ValueError(f"cut.bitrate: {e}") from None
        nvenc = tuple(f"p{i}" for i in range(1, 8))
        if not (self.preset in X264_PRESETS or self.preset in nvenc or self.preset.isdigit()):
            raise ValueError(f"cut.preset: {self.preset!r} is not a preset: x264/x265's "
                             f"{', '.join(X264_PRESETS)}; NVENC's p1-p7; SVT-AV1's 0-13")
        if self.edge_preset not in X264_PRESETS:
            raise ValueError(f"cut.edge_preset: {self.edge_preset!r} is not an x264 preset: "
                             f"{', '.join(X264_PRESETS)}")
        return self

class DedupConfig(_Section):
    """Exact (decoded content) and near-duplicate (perceptual hash) grouping."""

    enabled: bool = True
    exact: bool = True
    perceptual: bool = True
    # frames sampled per clip (fixed for an output: clips hashed with other counts are never
    # compared; perceptual: false turns near-duplicate dedup off, not 0 here)
    phash_frames: Annotated[int, Field(ge=1, le=64)] = 5
    max_hamming: HashBits = 10  # per-frame hash distance (of 64 bits) that still counts as the same
    semantic: bool = False  # drop clips whose embeddings nearly match a kept clip's
    # cosine similarity >= 1 - eps is a duplicate; None: drop nothing, write the distribution
    semantic_eps: float | None = Field(default=0.05, ge=0, le=1)
    semantic_cluster_size: int = Field(default=1000, ge=2)  # k-means: clips per cluster


class EmbeddingConfig(_Section):
    """Clip embeddings from a CLIP or SigLIP checkpoint (docs/annotate.md). ``model`` empty:
    no model stage runs (no embeddings, categories or semantic dedup)."""

    model: str = ""  # a save_pretrained folder, or a hub id found in the local HF cache
    revision: str | None = None  # hub ids: a branch, tag or commit (default: main)
    allow_download: bool = False  # hub ids not in the cache are fetched only when true
    frames: int = Field(default=4, ge=1, le=64)  # sampled uniformly over each clip
    batch: PosInt = 32  # clips per batch
    device: str = "auto"  # auto: cuda when torch sees one, else cpu
    workers: PosInt = 1  # local worker processes; Ray: actors
    threads: Threads = 0  # torch threads per worker (0: torch's default)
    cpus: PosFloat = 1.0  # Ray: CPUs per actor
    gpus: float | None = None  # Ray: GPUs per actor (fractions share); None: 1 if any, else 0


class CategoryConfig(_Section):
    """Zero-shot categories, scored by the embedding model's text tower."""

    enabled: bool = True  # needs annotate.embeddings.model
    labels: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    templates: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    # a label's own prompts (default: the shipped ones for the default labels, else templates)
    prompts: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_PROMPTS))

    @model_validator(mode="after")
    def _labels_unique(self) -> CategoryConfig:
        if len(set(self.labels)) != len(self.labels) or any(not x.strip() for x in self.labels):
            raise ValueError("annotate.categories.labels must be distinct, non-empty names")
        # every template names the label (`a video of {}.`): none at all scored no label
        # (every clip failed non_finite_output), two fields stopped the stage's setup, and a
        # template without one gave every label the same prompt
        if not self.templates:
            raise ValueError("annotate.categories.templates: at least one template")
        for t in self.templates:
            try:
                named = t.format("A") != t.format("B")
            except (IndexError, KeyError, ValueError):
                named = False
            if not named:
                raise ValueError(f"annotate.categories.templates: {t!r} must name the label "
                                 "once, as {} (e.g. 'a video of {}.'), and hold no other "
                                 "braces")
        return self


class CaptionConfig(_Section):
    """Captions from a vision-language model (docs/captions.md). ``backend`` empty: off.

    ``openai``: any OpenAI-compatible chat-completions server at ``base_url`` (vLLM, SGLang,
    llama.cpp, TGI, a hosted API); ``transformers``: a local VLM folder in process.
    """

    backend: Literal["", "openai", "transformers"] = ""
    base_url: str = "http://127.0.0.1:8000/v1"  # openai: the user's own endpoint, any address
    model: str = ""  # openai: the served model name; transformers: a local folder
    api_key_env: str | None = None  # openai: NAME of the variable holding the key (never the key)
    prompt: str = "detailed"  # one_sentence | detailed | camera, or the prompt text itself
    params: dict[str, float | int | str] = Field(
        default_factory=lambda: {"temperature": 0.1, "max_tokens": 512})  # decoding
    fps: float = Field(default=2.0, gt=0, le=30)  # frames sampled per second of clip
    max_frames: int = Field(default=32, ge=1, le=256)  # per request; longer clips get windows
    max_side: int = Field(default=768, ge=32)  # longer side of a frame sent, aspect kept
    send: Literal["images", "video"] = "images"  # video: one MP4 per window (vLLM video_url)
    windows: bool = True  # long clips: a caption per window too (caption_windows)
    concurrency: PosInt = 8  # openai: requests in flight per endpoint
    timeout_s: Seconds = 120.0
    max_attempts: PosInt = 4  # 5xx, 429, timeouts: retried with backoff
    backoff_base_s: NonNegFloat = 1.0
    max_wait_s: NonNegFloat = 300.0  # a longer Retry-After fails the clip now
    batch: PosInt = 8  # clips per batch (the requests of a batch run at once)
    workers: PosInt = 1
    device: str = "auto"  # transformers
    cpus: PosFloat = 1.0  # Ray: per actor
    gpus: float | None = None  # Ray: per actor; None: 1 for transformers when the cluster has any

    @model_validator(mode="after")
    def _needs_model(self) -> CaptionConfig:
        if self.backend and not self.model:
            raise ValueError("annotate.captions.model is required with a backend")
        return self


class AestheticConfig(_Section):
    """A LAION-style aesthetic predictor on the clip embeddings (docs/annotate.md)."""

    model: str = ""  # a local .pth/.safetensors/.npz MLP file; "" = off


class AnnotateConfig(_Section):
    """Clip-level model stages (docs/annotate.md)."""

    embeddings: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    aesthetic: AestheticConfig = Field(default_factory=AestheticConfig)
    captions: CaptionConfig = Field(default_factory=CaptionConfig)
    categories: CategoryConfig = Field(default_factory=CategoryConfig)
    part_rows: PosInt = 10000  # embeddings per Parquet part (and commit)


class ShardConfig(_Section):
    """WebDataset shards, flat or one folder per bucket (docs/shards.md)."""

    max_count: PosInt = 1000
    max_bytes: PosInt = 1 << 30
    keep_staging: bool = False  # keep the staged clip files after they are sharded
    # [] = flat shards/shard-NNNNNN.tar; any of resolution, aspect, duration in the order
    # given: shards/720p_16x9_5-10s/shard-NNNNNN.tar, each bucket numbering its own shards
    bucket_by: list[Literal["resolution", "aspect", "duration"]] = Field(default_factory=list)
    # class name -> minimum short side in pixels (below the smallest: "lt<smallest>")
    resolution_bins: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_RESOLUTION_BINS))
    aspect_bins: list[str] = Field(default_factory=lambda: list(DEFAULT_ASPECT_BINS))  # nearest
    duration_bins: list[float] = Field(  # edges in seconds: 0-5s, 5-10s, 10-30s, 30s+
        default_factory=lambda: list(DEFAULT_DURATION_BINS))
    max_open_buckets: PosInt = 8  # shards open at once in a streaming write
    # index.parquet and rejected.parquet are rewritten by every run while the dataset keeps at
    # most this many clips; above, the parts in index/ and rejected/ are the index and
    # `clipfactory compact` writes the single files on demand (docs/scale.md)
    compact_max_clips: NonNegInt = 200_000

    @field_validator("aspect_bins", mode="before")
    @classmethod
    def _quoted_ratios(cls, v: object) -> object:
        for x in v if isinstance(v, list) else ():
            if isinstance(x, int | float) and not isinstance(x, bool):
                raise ValueError(f"shards.aspect_bins: {x!r} is not a ratio; quote ratios in "
                                 "YAML ('16:9'): unquoted, YAML reads 16:9 as the base-60 "
                                 "number 969")
        return v

    @model_validator(mode="after")
    def _valid_buckets(self) -> ShardConfig:
        self.bucketing()  # raises ValueError with the offending key and value
        return self

    def bucketing(self) -> Bucketing:
        """The bucket maths this config describes (:mod:`clipfactory.sinks.buckets`)."""
        return Bucketing(tuple(self.bucket_by), dict(self.resolution_bins),
                         tuple(self.aspect_bins), tuple(self.duration_bins))


class PolicyConfig(_Section):
    """License policy, dataset terms and opt-outs (see docs/provenance.md).

    ``name`` None means "not set": a run over an existing output keeps the policy that output
    was made with; ``"none"`` turns gating off explicitly. Without a policy nothing is gated,
    but every clip's license is still normalised and recorded.
    """

    name: Literal["none", "commercial", "research", "custom"] | None = None
    allow: list[str] = Field(default_factory=list)  # ids, aliases, families or globs
    deny: list[str] = Field(default_factory=list)
    allow_unknown: bool = False  # let unknown and missing licenses through
    dataset_terms: str | None = None  # e.g. "research-only" or an id: applies on top
    declared_license: str | None = None  # license of inputs that carry none (folders)
    opt_out_file: str | None = None
    # sites' machine-readable AI-training reservations (robots.txt, X-Robots-Tag noai,
    # TDMRep): "enforce" refuses the item as consent/<signal>; "record" keeps the evidence
    # without gating (for a licence that overrides the reservation); see docs/consent.md
    consent: Literal["enforce", "record"] = "enforce"

    @model_validator(mode="after")
    def _lists_need_a_policy(self) -> PolicyConfig:
        if (self.allow or self.deny) and self.name in (None, "none"):
            raise ValueError("policy.allow/deny need a policy name (commercial, research or "
                             "custom)")
        if self.name == "custom" and not self.allow and not self.allow_unknown:
            raise ValueError("a custom policy needs an allow list")
        return self


class FetchConfig(_Section):
    """Fetching remote sources politely (see docs/fetch.md)."""

    concurrency: PosInt = 8  # downloads in flight in total
    per_host: PosInt = 2  # requests in flight per host
    rate_per_host: NonNegFloat = 1.0  # new requests per second per host (token bucket); 0 = no limit
    burst: PosInt = 2  # tokens a quiet host accumulates
    max_attempts: PosInt = 4  # tries of one item within a run (resumed transfers do not count)
    backoff_base_s: NonNegFloat = 2.0  # exponential backoff with jitter: base * 2^n, capped
    backoff_max_s: NonNegFloat = 120.0
    max_wait_s: NonNegFloat = 300.0  # a Retry-After longer than this fails the item until then
    pause_after: PosInt = 3  # consecutive 429/403 from a host pause it ...
    pause_s: NonNegFloat = 1800.0  # ... for this long (or the Retry-After, if longer)
    retry_delay_s: NonNegFloat = 600.0  # next_retry_at of a failed item: this * 2^(attempts-1)
    timeout_s: Seconds = 30.0  # connect / idle read timeout
    min_speed_bps: NonNegFloat = 0.0  # abort a transfer slower than this (bytes/s) over ...
    min_speed_window_s: NonNegFloat = 30.0  # ... this window; 0 speed = never abort for slowness
    max_bytes: PosInt = 8 << 30  # size limit of one source
    disk_budget_bytes: NonNegInt = 50 << 30  # fetched sources on disk ahead of processing
    keep_sources: bool = False  # keep fetched files after their clips are cut
    sources_dir: str | None = None  # default: OUTPUT/sources
    user_agent: str = "clipfactory/0.1 (video dataset builder; polite fetcher)"
    # manifest URLs may not reach loopback/private/link-local/reserved addresses (SSRF);
    # True allows them (tests on loopback servers, deliberate intranet sources)
    allow_private_network: bool = False
    cookies_file: str | None = None  # Netscape cookies.txt; only ever what the user passes
    ytdlp_hosts: list[str] = Field(default_factory=lambda: [
        "youtube.com", "youtu.be", "vimeo.com", "dailymotion.com"])  # "*" = every http URL
    max_height: PosInt = 720  # yt-dlp format choice
    codecs: list[str] = Field(default_factory=lambda: ["avc1", "vp9", "av01"])
    ytdlp_format: str | None = None  # a yt-dlp format string overrides the two above
    # fsspec options (s3://, gs://, hf://); may hold credentials, so never written to the output
    storage_options: dict[str, str] = Field(default_factory=dict, exclude=True)


class RayConfig(_Section):
    """Running on a Ray cluster (``executor: ray``; see docs/ray.md)."""

    cpus_per_video: NonNegFloat = 1.0  # CPUs Ray reserves for one video (decoder/encoder threads)
    gpus_per_video: NonNegFloat = 0.0  # > 0 runs videos on GPU actors; fractions share a GPU
    max_in_flight: NonNegInt = 0  # videos submitted and not yet recorded; 0 = 2x the cluster's slots
    max_retries: NonNegInt = 3  # re-runs of a video whose worker or node died, then failed
    actors: bool = False  # force an actor pool (also chosen for GPUs and model detectors)
    num_actors: NonNegInt = 0  # actor pool size; 0 = as many as the cluster's resources fit


class Config(_Section):
    """The whole run."""

    # worker processes, one video each; "auto": one per usable CPU (affinity and cgroup quota),
    # no more than memory holds at 512 MiB each (clipfactory.exec.cores.default_workers). At
    # most MAX_WORKERS: a pool that size is already more than one machine runs
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] | Literal["auto"] = "auto"
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # None: RAY_ADDRESS, else a private local instance
    # a video still running after this is failed (0 = never; finite, at most 30 days)
    video_timeout_s: Annotated[float, Field(ge=0, le=30 * 86400, allow_inf_nan=False)] = 3600.0
    skip: list[Literal["filters", "dedup"]] = Field(default_factory=list)
    # per-stage CPU split of the per-video work in summary.json (throughput.cpu_split);
    # clipfactory bench turns it on. Costs ~1 % (a thread-CPU clock read per stage and frame)
    stage_times: bool = False
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    shots: ShotConfig = Field(default_factory=ShotConfig)
    clips: ClipConfig = Field(default_factory=ClipConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    cut: CutConfig = Field(default_factory=CutConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    shards: ShardConfig = Field(default_factory=ShardConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)

    @model_validator(mode="after")
    def _semantic_needs_embeddings(self) -> Config:
        if self.dedup.semantic and not self.annotate.embeddings.model:
            raise ValueError("dedup.semantic needs an embedding model "
                             "(annotate.embeddings.model)")
        if self.annotate.aesthetic.model and not self.annotate.embeddings.model:
            raise ValueError("annotate.aesthetic needs an embedding model "
                             "(annotate.embeddings.model: a CLIP ViT-L/14 for LAION's)")
        if self.filters.min_aesthetic is not None and not self.annotate.aesthetic.model:
            raise ValueError("filters.min_aesthetic needs annotate.aesthetic.model")
        if self.ray_address and self.executor != "ray":  # it ran locally without a word
            raise ValueError("ray_address is set but executor is 'local': add executor: ray "
                             "(the --ray-address flag implies it)")
        return self

    @property
    def worker_count(self) -> int:
        """``workers`` as a number, ``auto`` resolved on this machine."""
        from clipfactory.exec.cores import resolve_workers  # exec imports this module

        return resolve_workers(self.workers)

    @property
    def filters_on(self) -> bool:
        return self.filters.enabled and "filters" not in self.skip

    @property
    def dedup_on(self) -> bool:
        return self.dedup.enabled and "dedup" not in self.skip

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def stored_config(data: dict[str, Any] | None) -> Config:
    """The config an output's ledger holds (the last run's), for the commands that read an
    output back (takedown, audit, revalidate, retry, caption, mix, compact). A setting that
    a later version refuses (``dedup.phash_frames: 0``, ``ray_address`` without
    ``executor: ray``...) takes its default, with a warning: the output stays one that can be
    taken down and audited, where the whole command stopped with a validation traceback."""
    import copy
    import logging

    data = copy.deepcopy(data or {})
    dropped: list[str] = []
    for _ in range(32):  # a few settings at most; each pass drops the ones refused
        try:
            cfg = Config.model_validate(data)
        except ValidationError as e:
            progress = False
            for problem in e.errors():
                loc = [str(x) for x in problem["loc"]]
                if not loc and "ray_address" in data:  # the one check across sections
                    loc = ["ray_address"]
                node: Any = data
                for k in loc[:-1]:
                    node = node.get(k) if isinstance(node, dict) else None
                if loc and isinstance(node, dict) and loc[-1] in node:
                    del node[loc[-1]]
                    dropped.append(".".join(loc))
                    progress = True
            if not progress:
                raise
            continue
        if dropped:
            logging.getLogger("clipfactory").warning(
                "this output's stored config holds settings this version refuses; they take "
                "their defaults here: %s", ", ".join(dict.fromkeys(dropped)))
        return cfg
    raise ValueError("the output's stored config cannot be read")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last,
    and a whole section written twice vanished without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges by design
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
            except TypeError:  # an unhashable key: the mapping's own check says so
                break
            if dup:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the setting {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class ConfigError(ValueError):
    """A config that cannot be used: the file unreadable or not YAML, or settings that are
    unknown or out of range, each named (``section.key: what is wrong``)."""


def load_config(path: str | Path | None = None, **overrides: object) -> Config:
    """Read a YAML config (or start from defaults) and apply top-level overrides; raises
    :class:`ConfigError` saying what is wrong."""
    data: dict = {}
    where = str(path) if path is not None else "the settings"
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the config file {path}: {e}") from None
        try:
            loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file must hold a mapping, got "
                              f"{type(loaded).__name__}")
        data = loaded or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_errors(e, where)) from None


def describe_errors(err: ValidationError, where: str) -> str:
    """One line per wrong setting, named as in the YAML (``clips.min_s``)."""
    lines = []
    for problem in err.errors():
        name = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"  {name}: unknown setting (`clipfactory config` prints them all)")
        elif problem["type"] == "value_error":  # a check of ours: its own words
            text = str(problem.get("ctx", {}).get("error", problem["msg"]))
            lines.append(f"  {text}" if text.startswith((f"{name}:", f"{name}."))
                         else f"  {name}: {text}")
        else:
            lines.append(f"  {name}: {problem['msg']}, got {problem.get('input')!r}")
    n = len(lines)
    return f"{where}: {n} setting{'s' if n > 1 else ''} wrong:\n" + "\n".join(lines)
