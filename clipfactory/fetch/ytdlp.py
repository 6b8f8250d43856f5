"""Pages of video sites through yt-dlp, used as a library.

The format is chosen by height and codec preference among single-file formats (merging split
audio and video would need an ffmpeg binary, which the core does not assume; only the video is
used anyway). yt-dlp's info dict is kept for provenance (``license``, ``uploader``, ``channel``,
``upload_date``, ``webpage_url``, ...). What is never done: DRM-protected formats are not
touched (yt-dlp's ``allow_unplayable_formats`` stays off), no geo-bypass header is faked, no
proxy is set, and cookies are used only from a file the user passes (``fetch.cookies_file``).

Before yt-dlp is called, the page URL passes the :class:`~clipfactory.fetch.gate.FetchGate`:
its host must be public, robots.txt must allow it, tdmrep.json must not reserve it, and the
page itself is read once for ``X-Robots-Tag``/``tdm-reservation`` headers and ``<meta>`` tags.
yt-dlp's own requests (the media URLs an extractor finds on the page, HLS segments, redirect
hops) are not checked against robots.txt, but every host it connects to must be public
(:func:`~clipfactory.fetch.netguard.guarded_resolution`), unless
``fetch.allow_private_network``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from clipfactory.config import FetchConfig
from clipfactory.errors import StorageRefused, storage_refusal
from clipfactory.fetch.base import FetchError, FetchResult, url_key
from clipfactory.fetch.gate import FetchGate
from clipfactory.fetch.netguard import guarded_resolution, private_address_in
from clipfactory.fetch.sniff import hash_and_head, sniff
from clipfactory.wellformed import well_formed

__all__ = ["PROVENANCE_FIELDS", "YtDlpFetcher", "ytdlp_format"]

PROVENANCE_FIELDS = (
    "id", "title", "extractor", "extractor_key", "webpage_url", "original_url", "license",
    "uploader", "uploader_id", "uploader_url", "channel", "channel_id", "channel_url",
    "creator", "upload_date", "release_date", "timestamp", "duration", "width", "height",
    "fps", "vcodec", "acodec", "ext", "format_id", "availability", "age_limit", "live_status",
)
# heavy or sensitive parts of the info dict that are not kept (headers can carry cookies)
_DROP = {"formats", "thumbnails", "subtitles", "automatic_captions", "requested_formats",
         "requested_downloads", "requested_subtitles", "http_headers", "cookies", "fragments",
         "heatmap", "_format_sort_fields", "url", "manifest_url", "entries", "chapters",
         "_version", "filepath", "__files_to_move", "__postprocessors"}
_PERMANENT = (
    (r"unsupported url", "ytdlp_unsupported_url"),
    (r"\bdrm\b", "drm_protected"),
    (r"private video|sign in|log ?in|members[- ]only|age[- ]restricted|confirm your age",
     "login_required"),
    (r"video unavailable|has been removed|no longer available|account .* terminated|"
     r"not available in your country|geo.?restrict", "unavailable"),
    (r"requested format is not available|no video formats found", "no_suitable_format"),
    (r"is live|live event will begin|premieres in", "live_or_upcoming"),
    # yt-dlp's own HLS/DASH downloader hands live streams (and a few stream features) to an
    # ffmpeg binary, which the core does not assume
    (r"ffmpeg could not be found|ffmpeg (is )?not (installed|found)", "needs_ffmpeg"),
)
_REFUSED = "refused: manifest URLs may not reach private networks"  # PrivateAddressError's
_TRANSIENT = r"timed out|timeout|connection|temporar|remote end closed|incompleteread|reset by"


def ytdlp_format(max_height: int, codecs: list[str]) -> str:
    """A yt-dlp format string: the preferred codecs at or below ``max_height`` first, then any
    codec, then the smallest format above the limit. Single files only (no ``+`` merges)."""
    h = f"[height<=?{max_height}]"
    parts = [f"bv*{h}[vcodec^={c}]" for c in codecs]
    parts += [f"bv*{h}", f"b{h}", "wv*", "w"]
    return "/".join(parts)


class _Log:
    """Collects yt-dlp's messages instead of printing them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, msg: str) -> None:
        if "max-filesize" in msg:  # yt-dlp reports a refused size on its screen channel
            self.lines.append(msg)

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.lines.append(msg)

    def error(self, msg: str) -> None:
        self.lines.append(msg)


def _status_of(exc: BaseException | None) -> tuple[int | None, Any]:
    """The HTTP status (and headers) behind a yt-dlp error, if one caused it."""
    seen = 0
    while exc is not None and seen < 8:
        status = getattr(exc, "status", None) or getattr(exc, "code", None)
        if isinstance(status, int) and 100 <= status < 600:
            resp = getattr(exc, "response", None)
            return status, getattr(resp, "headers", None) or getattr(exc, "headers", None)
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
        seen += 1
    return None, None


def classify(message: str, exc: BaseException | None = None) -> FetchError:
    """Turn a yt-dlp error into a :class:`FetchError` with a specific reason."""
    from clipfactory.fetch.http import _error_for_status

    status, headers = _status_of(exc)
    if status is None:
        m = re.search(r"HTTP Error (\d{3})", message)
        status = int(m.group(1)) if m else None
    detail = message.replace("ERROR: ", "")[:500]
    if status is not None and status >= 400:
        err = _error_for_status(status, headers or {}, "")
        err.detail = detail
        return err
    low = message.lower()
    for pattern, reason in _PERMANENT:
        if re.search(pattern, low):
            return FetchError(reason, detail)
    if re.search(_TRANSIENT, low):
        return FetchError("connection_error", detail, retryable=True)
    return FetchError("ytdlp_error", detail)


class YtDlpFetcher:
    """Fetch a page URL with yt-dlp (see the module docstring)."""

    def __init__(self, cfg: FetchConfig | None = None, gate: FetchGate | None = None) -> None:
        self.cfg = cfg or FetchConfig()
        self.gate = gate or FetchGate(self.cfg)

    def options(self, dest_dir: Path, key: str, max_bytes: int, log: _Log) -> dict[str, Any]:
        """The YoutubeDL parameters of one download."""
        cfg = self.cfg
        opts: dict[str, Any] = {
            "format": cfg.ytdlp_format or ytdlp_format(cfg.max_height, cfg.codecs),
            "outtmpl": {"default": f"{key}.%(ext)s"},
            "paths": {"home": str(dest_dir), "temp": str(dest_dir / ".partial")},
            "noplaylist": True, "quiet": True, "no_warnings": True, "noprogress": True,
            "logger": log, "max_filesize": max_bytes, "socket_timeout": cfg.timeout_s,
            "retries": 0, "fragment_retries": 3, "extractor_retries": 0,
            # one format, one fragment at a time: every request stays in the calling thread,
            # where guarded_resolution checks it (yt-dlp's fragment threads would not be)
            "concurrent_fragment_downloads": 1, "continuedl": True, "cachedir": False,
            "allow_unplayable_formats": False, "geo_bypass": False, "updatetime": False,
            "http_headers": {"User-Agent": cfg.user_agent},
        }
        if cfg.cookies_file:
            opts["cookiefile"] = cfg.cookies_file
        return opts

    def fetch(self, url: str, dest_dir: Path, max_bytes: int,
              expected_sha256: str | None = None) -> FetchResult:
        """One yt-dlp download of ``url`` into ``dest_dir``; raises :class:`FetchError`."""
        try:
            import yt_dlp
        except ImportError:
            raise FetchError("ytdlp_missing", "pip install 'clipfactory[fetch]' (yt-dlp) to "
                             "fetch pages of video sites") from None
        dest_dir = Path(dest_dir)
        self.gate.start()
        self.gate.before(url)
        self.gate.page(url)
        (dest_dir / ".partial").mkdir(parents=True, exist_ok=True)
        log = _Log()
        try:  # every host yt-dlp connects to (page, media, segments, redirects) is checked
            with guarded_resolution(not self.cfg.allow_private_network), \
                    yt_dlp.YoutubeDL(self.options(dest_dir, url_key(url), max_bytes, log)) as ydl:
                info = well_formed(ydl.sanitize_info(ydl.extract_info(url, download=True)))
        except yt_dlp.utils.DownloadError as e:
            cause = e.exc_info[1] if getattr(e, "exc_info", None) else None
            what = storage_refusal(cause)
            if what is not None:  # yt-dlp's words hide it: keep the cause in the chain
                raise StorageRefused(f"yt-dlp: {e}", what) from cause
            hit = private_address_in(cause)
            if hit is not None or _REFUSED in str(e):
                raise FetchError("private_address", str(hit or e)) from None
            raise classify(str(e), cause) from None
        if info.get("_type") in ("playlist", "multi_video"):
            raise FetchError("playlist_not_video", "the URL names several videos")
        downloads = info.get("requested_downloads") or []
        path = Path(downloads[0]["filepath"]) if downloads and downloads[0].get("filepath") \
            else None
        if path is None or not path.is_file():
            if any("max-filesize" in line or "larger than" in line for line in log.lines):
                raise FetchError("too_large", f"over the limit of {max_bytes} bytes")
            raise FetchError("ytdlp_error", "; ".join(log.lines)[-500:] or "no file written")
        res = _result(path, info, max_bytes, expected_sha256)
        if self.gate.evidence():
            res.provenance["consent"] = self.gate.evidence()
        return res


def _result(path: Path, info: dict[str, Any], max_bytes: int,
            expected_sha256: str | None) -> FetchResult:
    size = path.stat().st_size
    if size > max_bytes:
        path.unlink(missing_ok=True)
        raise FetchError("too_large", f"{size} bytes, limit {max_bytes}")
    digest, head = hash_and_head(path)
    kind = sniff(head)
    if kind is None or kind == "html":
        path.unlink(missing_ok=True)
        raise FetchError("html_instead_of_video" if kind == "html" else "not_video_content",
                         f"first bytes {head[:16]!r} are not a video container")
    if expected_sha256 and digest != expected_sha256.lower():
        path.unlink(missing_ok=True)
        raise FetchError("checksum_mismatch", f"sha256 {digest} != {expected_sha256}")
    prov: dict[str, Any] = {"fetcher": "yt-dlp", "bytes": size}
    prov.update({k: info[k] for k in PROVENANCE_FIELDS if info.get(k) is not None})
    prov["info"] = {k: v for k, v in info.items() if k not in _DROP and not k.startswith("__")}
    return FetchResult(str(path), size, digest, None, prov)
