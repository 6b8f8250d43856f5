from clipfactory.fetch.sniff import check_content_type, sniff, video_extension


def test_magic_bytes_of_common_containers(video_bytes):
    assert sniff(video_bytes[:512]) == "mp4"
    assert sniff(b"\x1a\x45\xdf\xa3" + b"\x00" * 40) == "mkv"
    assert sniff(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert sniff(b"FLV\x01\x05") == "flv"
    assert sniff(b"OggS\x00\x02") == "ogv"
    assert sniff(bytes([0x47] + [0] * 187) * 3) == "ts"
    assert sniff(b"\x00\x00\x01\xba\x44") == "mpg"
    assert sniff(b"\xef\xbb\xbf  \n<!DOCTYPE html><html>") == "html"
    assert sniff(b"<html><body>") == "html"
    assert sniff(b"#EXTM3U\n#EXT-X-VERSION:3\n") == "manifest"  # HLS
    assert sniff(b'<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011">') == \
        "manifest"  # DASH
    assert sniff(b'<?xml version="1.0"?><html>') == "html"
    assert sniff(b'{"error": "nope"}') is None
    assert sniff(b"") is None


def test_content_types():
    assert check_content_type("video/mp4") is None
    assert check_content_type("application/octet-stream") is None
    assert check_content_type(None) is None  # the magic bytes decide
    assert check_content_type("text/html; charset=utf-8") == "html_instead_of_video"
    assert check_content_type("application/xhtml+xml") == "html_instead_of_video"
    assert check_content_type("text/plain") == "not_video_content_type"
    assert check_content_type("image/jpeg") == "not_video_content_type"
    for playlist in ("application/vnd.apple.mpegurl", "application/x-mpegURL",
                     "audio/mpegurl", "application/dash+xml"):
        assert check_content_type(playlist) == "stream_manifest"


def test_extension_from_url_or_kind():
    assert video_extension("mp4", "/a/b/clip.MOV") == ".mov"
    assert video_extension("mkv", "/watch") == ".mkv"
    assert video_extension(None, "/x.exe") == ".bin"
