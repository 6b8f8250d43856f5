"""Which stream of a source file is its video."""

from __future__ import annotations

import av

__all__ = ["main_video_stream"]


def main_video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The video a source is about: FFmpeg's best video stream, never a cover picture
    (``attached_pic``: the artwork yt-dlp's ``--embed-thumbnail`` or a tagger adds to a file,
    which can come before the real video); None when there is no other. Every reader of a
    source (probe, analysis, cut, thumbnails, bench) takes this one stream."""
    streams = [s for s in container.streams.video
               if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        return None
    best = container.streams.best("video")
    return best if best in streams else streams[0]
