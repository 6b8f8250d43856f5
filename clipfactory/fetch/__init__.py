"""Fetching sources: local paths, http(s), yt-dlp pages and fsspec object stores, politely.

See docs/fetch.md. The driver uses :class:`~clipfactory.fetch.stage.FetchStage`; the parts
(fetchers, :class:`Politeness`, :class:`Prefetcher`) are usable on their own.
"""

from clipfactory.fetch.base import Fetcher, FetchError, FetchResult
from clipfactory.fetch.polite import HostPause, Politeness, host_key
from clipfactory.fetch.prefetch import FetchFailure, Prefetcher
from clipfactory.fetch.router import Router, needs_fetch

__all__ = ["FetchError", "FetchFailure", "FetchResult", "Fetcher", "HostPause", "Politeness",
           "Prefetcher", "Router", "host_key", "needs_fetch"]
