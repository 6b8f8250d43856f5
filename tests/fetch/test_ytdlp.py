"""yt-dlp, for real, against the loopback server: its generic extractor on a direct media URL
and on HTML pages that embed the video."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import FetchError
from clipfactory.fetch.router import Router
from clipfactory.fetch.ytdlp import YtDlpFetcher, _result, classify, ytdlp_format

pytest.importorskip("yt_dlp")
CFG = FetchConfig(ytdlp_hosts=["127.0.0.1"], timeout_s=10, allow_private_network=True)


def test_direct_media_url(server, video_bytes, tmp_path):
    url = server.add("/media/walk.mp4", video_bytes)
    assert isinstance(Router(CFG).for_url(url), YtDlpFetcher)
    res = YtDlpFetcher(CFG).fetch(url, tmp_path, 10**9)
    assert Path(res.path).read_bytes() == video_bytes
    assert res.sha256 == hashlib.sha256(video_bytes).hexdigest()
    p = res.provenance
    assert p["fetcher"] == "yt-dlp" and p["extractor"] == "generic"
    assert p["webpage_url"] == url and p["info"]["id"] == "walk"
    assert "formats" not in p["info"] and "http_headers" not in p["info"]
    assert not list((tmp_path / ".partial").iterdir())


def test_html_page_embedding_a_video(server, video_bytes, tmp_path):
    server.add("/media/walk.mp4", video_bytes)
    page = server.add("/watch/walk.html", b"<html><head><title>A walk</title></head><body>"
                      b'<video src="/media/walk.mp4" width="160" height="90"></video>'
                      b"</body></html>", content_type="text/html; charset=utf-8")
    res = YtDlpFetcher(CFG).fetch(page, tmp_path, 10**9)
    assert Path(res.path).read_bytes() == video_bytes
    assert res.provenance["webpage_url"] == page
    assert res.provenance["title"].startswith("A walk")


def test_structured_page_metadata_is_kept_for_provenance(server, video_bytes, tmp_path):
    media = server.add("/media/walk.mp4", video_bytes)
    ld = {"@context": "https://schema.org", "@type": "VideoObject", "name": "Loopback walk",
          "contentUrl": media, "uploadDate": "2021-05-04",
          "author": {"@type": "Person", "name": "Ann Example"}}
    page = server.add("/watch/ld.html", (
        '<html><head><script type="application/ld+json">' + json.dumps(ld) +
        "</script></head><body>a walk</body></html>").encode(), content_type="text/html")
    res = YtDlpFetcher(CFG).fetch(page, tmp_path, 10**9)
    assert res.provenance["uploader"] == "Ann Example"
    assert res.provenance["upload_date"] == "20210504"
    assert res.provenance["title"] == "Loopback walk"


def test_yt_dlp_errors_are_classified(server, video_bytes, tmp_path):
    with pytest.raises(FetchError) as e:
        YtDlpFetcher(CFG).fetch(server.url("/nothing.html"), tmp_path, 10**9)
    assert e.value.reason == "http_404" and not e.value.retryable
    server.add("/big.mp4", video_bytes)
    with pytest.raises(FetchError) as e:
        YtDlpFetcher(CFG).fetch(server.url("/big.mp4"), tmp_path, 1000)
    assert e.value.reason == "too_large"
    assert classify("ERROR: [youtube] x: Private video. Sign in").reason == "login_required"
    assert classify("ERROR: This video is DRM protected").reason == "drm_protected"
    assert classify("ERROR: HTTP Error 429: Too Many Requests").retryable
    assert classify("ERROR: Unsupported URL: http://x").reason == "ytdlp_unsupported_url"
    live = server.add("/hls/live.m3u8", b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n"
                      b"seg0.ts\n", content_type="application/vnd.apple.mpegurl")
    with pytest.raises(FetchError) as e:  # no ENDLIST: live, which yt-dlp leaves to ffmpeg
        YtDlpFetcher(CFG).fetch(live, tmp_path, 10**9)
    assert e.value.reason == "needs_ffmpeg" and not e.value.retryable


def test_format_prefers_codecs_under_the_height_single_files_only():
    f = ytdlp_format(720, ["avc1", "vp9"])
    assert f.split("/")[:2] == ["bv*[height<=?720][vcodec^=avc1]", "bv*[height<=?720][vcodec^=vp9]"]
    assert "+" not in f


def test_provenance_fields_come_from_the_info_dict(video_file, tmp_path):
    copy = tmp_path / "v.mp4"
    copy.write_bytes(video_file.read_bytes())
    info = {"id": "abc", "license": "Creative Commons Attribution license (reuse allowed)",
            "uploader": "Ann", "channel": "Ann's channel", "upload_date": "20200101",
            "formats": [{"url": "x"}], "http_headers": {"Cookie": "secret"}, "tags": ["a"]}
    res = _result(copy, info, 10**9, None)
    p = res.provenance
    assert p["license"].startswith("Creative Commons") and p["channel"] == "Ann's channel"
    assert p["upload_date"] == "20200101" and p["info"]["tags"] == ["a"]
    assert "formats" not in p["info"] and "http_headers" not in p["info"]


def test_no_evasion_and_only_the_users_cookies(tmp_path):
    from clipfactory.fetch.ytdlp import _Log

    opts = YtDlpFetcher(CFG).options(tmp_path, "k", 100, _Log())
    assert "cookiefile" not in opts and "cookiesfrombrowser" not in opts and "proxy" not in opts
    assert opts["geo_bypass"] is False and opts["allow_unplayable_formats"] is False
    # one format, one fragment at a time: yt-dlp's requests stay in the guarded thread
    assert opts["concurrent_fragment_downloads"] == 1 and "+" not in opts["format"]
    jar = tmp_path / "cookies.txt"
    cfg = FetchConfig(cookies_file=str(jar), allow_private_network=True)
    assert YtDlpFetcher(cfg).options(tmp_path, "k", 100, _Log())["cookiefile"] == str(jar)


@pytest.mark.parametrize("head,signal", [
    ('<meta name="robots" content="noindex, noai">', "noai"),
    ('<meta name="tdm-reservation" content="1">', "tdm_reservation"),
])
def test_a_page_that_reserves_itself_is_refused_before_yt_dlp(server, video_bytes, tmp_path,
                                                              head, signal):
    server.add("/media/walk.mp4", video_bytes)
    page = server.add("/watch/reserved.html", (
        f"<html><head>{head}<title>A walk</title></head><body>"
        '<video src="/media/walk.mp4"></video></body></html>').encode(),
        content_type="text/html")
    with pytest.raises(FetchError) as e:
        YtDlpFetcher(CFG).fetch(page, tmp_path, 10**9)
    assert (e.value.stage, e.value.reason) == ("consent", signal)
    assert e.value.evidence[0]["where"].startswith("<meta name=")
    assert server.routes["/watch/reserved.html"].served == 1  # our one read, not yt-dlp's
    assert server.routes["/media/walk.mp4"].served == 0
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_an_hls_playlist_is_assembled_by_yt_dlp_and_spliced(server, tmp_path):
    """HLS through yt-dlp's own segment downloader (no ffmpeg binary), on a host that is not
    a configured video site: a ``.m3u8`` URL goes to yt-dlp, and a playlist the plain fetcher
    only recognises by its Content-Type is handed over to it. The file yt-dlp writes is the
    segments' MPEG-TS joined, every frame of the source in order, and the smart cut copies
    its whole GOPs (Annex-B H.264) instead of re-encoding the clip."""
    import av

    from clipfactory.config import CutConfig
    from clipfactory.media.cut import cut_clips
    from clipfactory.records import Span
    from clipfactory.testing.synth import ShotSpec, write_video

    site = tmp_path / "site"
    site.mkdir()
    write_video(site / "index.m3u8", [ShotSpec(90, "texture", 31), ShotSpec(90, "texture", 32)],
                width=160, height=90, gop=30, bframes=2,
                _muxer_options={"hls_time": "2", "hls_playlist_type": "vod"})
    segments = sorted(site.glob("*.ts"))
    assert len(segments) >= 3
    for seg in segments:
        server.add(f"/hls/{seg.name}", seg.read_bytes(), content_type="video/mp2t")
    playlist = (site / "index.m3u8").read_bytes()
    url = server.add("/hls/index.m3u8", playlist, content_type="application/vnd.apple.mpegurl")
    anywhere = FetchConfig(timeout_s=10, allow_private_network=True)  # no ytdlp_hosts
    router = Router(anywhere)
    assert isinstance(router.for_url(url), YtDlpFetcher)
    res = router.for_url(url).fetch(url, tmp_path / "dl", 10**9)
    assert res.provenance["fetcher"] == "yt-dlp"
    bare = server.add("/hls/live", playlist, content_type="application/vnd.apple.mpegurl")
    assert not isinstance(router.for_url(bare), YtDlpFetcher)
    handed = router.for_url(bare).fetch(bare, tmp_path / "dl2", 10**9)
    assert handed.provenance["fetcher"] == "yt-dlp"
    assert Path(handed.path).read_bytes() == Path(res.path).read_bytes()

    def frames(paths: list[Path]) -> list[np.ndarray]:
        out = []
        for p in paths:
            with av.open(str(p)) as c:
                out += [f.to_ndarray(format="gray") for f in c.decode(video=0)]
        return out

    want, got = frames(segments), frames([Path(res.path)])
    assert len(got) == len(want) == 180
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    with av.open(res.path) as c:
        assert c.format.name == "mpegts"
        pts = [f.pts for f in c.decode(video=0)]
    clip = cut_clips(res.path, [Span(10, 130)], [str(tmp_path / "c.mp4")], frame_pts=pts,
                     cfg=CutConfig(audio="drop"))[0]
    assert clip.error is None and clip.method == "smart" and clip.copied_frames >= 90
    assert all(np.array_equal(a, b) for a, b in zip(frames([Path(clip.path)])[20:110],
                                                     want[30:120], strict=True))
