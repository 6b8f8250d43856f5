"""Which fetcher handles a URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import Fetcher
from clipfactory.fetch.fsspec_fetch import FsspecFetcher
from clipfactory.fetch.gate import ConsentMode, FetchGate
from clipfactory.fetch.http import HttpFetcher
from clipfactory.fetch.local import LocalFetcher
from clipfactory.fetch.ytdlp import YtDlpFetcher

__all__ = ["Router", "needs_fetch"]


def needs_fetch(source: str) -> bool:
    """True for URLs that must be downloaded (anything with a scheme but ``file://``)."""
    try:
        scheme = urlsplit(source).scheme
    except ValueError:  # `https://[::1/x`: a URL all the same, whose fetch says it is bad
        scheme = source.partition("://")[0] if "://" in source else ""
    return len(scheme) > 1 and scheme.lower() != "file"  # "C:" is a drive, not a scheme


class Router:
    """Picks the fetcher of a URL: yt-dlp for the configured video-site hosts and HLS/DASH
    playlists, plain http(s) for other web URLs, fsspec for object stores, the file itself
    for local paths. The web fetchers share one :class:`~clipfactory.fetch.gate.FetchGate`;
    object stores and local files are the user's own storage and are not gated."""

    def __init__(self, cfg: FetchConfig | None = None, consent: ConsentMode = "enforce") -> None:
        self.cfg = cfg or FetchConfig()
        self.gate = FetchGate(self.cfg, consent)  # one per run: robots.txt cached per host
        self.local = LocalFetcher()
        self.ytdlp = YtDlpFetcher(self.cfg, self.gate)
        self.http = HttpFetcher(self.cfg, self.gate, streams=self.ytdlp)
        self.fsspec = FsspecFetcher(self.cfg)

    def uses_ytdlp(self, url: str) -> bool:
        """A configured video-site host, or an HLS/DASH playlist (``.m3u8``, ``.mpd``; the
        plain fetcher hands over the playlists it only recognises once it has asked)."""
        if urlsplit(url).path.lower().endswith((".m3u8", ".mpd")):
            return True
        host = (urlsplit(url).hostname or "").lower()
        for h in self.cfg.ytdlp_hosts:
            h = h.lower()
            if h == "*" or host == h or host.endswith("." + h):
                return True
        return False

    def for_url(self, url: str) -> Fetcher:
        """The fetcher for ``url``."""
        scheme = urlsplit(url).scheme.lower()
        if not needs_fetch(url):
            return self.local
        if scheme in ("http", "https"):
            return self.ytdlp if self.uses_ytdlp(url) else self.http
        return self.fsspec
