"""Is this a video? Content-type and magic-byte checks on the first bytes of a transfer.

A server that answers a video URL with a login page, an error page or a JSON body usually says
``200 OK``: the bytes are checked before a transfer is allowed to continue, so an HTML page is
rejected after a few hundred bytes instead of being downloaded, probed and failed later.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["SNIFF_BYTES", "check_content_type", "hash_and_head", "sniff", "video_extension"]

SNIFF_BYTES = 512
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid")
_VIDEO_TYPES = ("video/", "application/octet-stream", "binary/octet-stream", "application/mp4",
                "application/x-matroska", "application/ogg", "application/mxf",
                "application/vnd.rn-realmedia", "application/x-mpegts", "audio/mp4")
_HTML_TYPES = ("text/html", "application/xhtml")
# HLS and DASH playlists: the video is in the segments they list, which yt-dlp assembles
_MANIFEST_TYPES = ("application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl",
                   "audio/x-mpegurl", "application/dash+xml")
_HTML_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<!--", b"<script",
                b"<meta", b"<title")


def check_content_type(content_type: str | None) -> str | None:
    """A rejection reason for a Content-Type that cannot be a video file, else None.

    No Content-Type at all is allowed (the magic bytes decide)."""
    if not content_type:
        return None
    ct = content_type.split(";")[0].strip().lower()
    if ct.startswith(_MANIFEST_TYPES):
        return "stream_manifest"
    if ct.startswith(_HTML_TYPES):
        return "html_instead_of_video"
    if ct.startswith(_VIDEO_TYPES):
        return None
    return "not_video_content_type"


def sniff(head: bytes) -> str | None:
    """The container family of a file from its first bytes: ``mp4``, ``mkv`` (EBML: Matroska
    and WebM), ``avi``, ``flv``, ``ts``, ``mpg``, ``ogv``, ``asf``, ``manifest`` (an HLS or
    DASH playlist), ``html`` or None."""
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "mkv"
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpg"
    if head.startswith(b"OggS"):
        return "ogv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "ts"
    if len(head) > 0 and len(head) < 377 and head[0] == 0x47 and len(head) % 188 == 0:
        return "ts"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"#extm3u") or (text.startswith(b"<?xml") and b"<mpd" in text):
        return "manifest"
    if text.startswith(_HTML_STARTS):
        return "html"
    return None


def video_extension(kind: str | None, url_path: str = "") -> str:
    """A file extension for a sniffed kind (the URL's own, when it has a known one)."""
    known = {"mp4": ".mp4", "mkv": ".mkv", "avi": ".avi", "flv": ".flv", "mpg": ".mpg",
             "ogv": ".ogv", "asf": ".wmv", "ts": ".ts"}
    suffix = url_path.rsplit("/", 1)[-1].rsplit(".", 1)
    if len(suffix) == 2 and 1 <= len(suffix[1]) <= 4 and suffix[1].isalnum():
        ext = "." + suffix[1].lower()
        if ext in (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".flv", ".ts", ".mpg",
                   ".mpeg", ".ogv", ".wmv", ".3gp", ".mxf"):
            return ext
    return known.get(kind or "", ".bin")


def hash_and_head(path: str | Path) -> tuple[str, bytes]:
    """SHA-256 of a finished download and its first :data:`SNIFF_BYTES`, in one read."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        h.update(head)
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest(), head
