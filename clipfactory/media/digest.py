"""Exact-dedup fingerprints of decoded frames: a 64-bit hash of a frame's visible pixels.

The digest is the same whichever decoder produced the frame: NVDEC's frames arrive semi-planar
(``nv12``, ``p010le``, ``p016le``: one interleaved UV plane) where a software decoder gives the
planar layout (``yuv420p``...), so those are hashed as their planar equivalent (Y, then U, then V;
``p010le`` keeps its 10 bits in the high bits of each sample, ``yuv420p10le`` in the low bits).
"""

from __future__ import annotations

import av
import numpy as np
import xxhash

__all__ = ["plane_digest"]

_PACKED = ("yuyv", "uyvy", "yvyu", "nv", "p010", "p016", "rgb", "bgr", "argb", "abgr", "0rgb")
# semi-planar 4:2:0 -> (bytes per sample, right shift that gives the planar sample)
_SEMI_PLANAR = {"nv12": (1, 0), "p010le": (2, 6), "p016le": (2, 0)}


def plane_digest(frame: av.VideoFrame) -> int:
    """64-bit xxh3 of the visible bytes of every plane (line padding excluded): identical decoded
    content gives identical digests whatever the container or the decoder's buffer alignment.
    xxh3 runs at memory speed (~0.03 ms for a 640x360 frame, 15x less than blake2b); this is
    a content fingerprint for dedup, not a security boundary."""
    h = xxhash.xxh3_64()
    name = frame.format.name
    if name in _SEMI_PLANAR:
        _semi_planar(frame, h, *_SEMI_PLANAR[name])
        return h.intdigest()
    if name.startswith(_PACKED) or not name.startswith(("yuv", "gray", "gbrp")):
        h.update(frame.to_ndarray(format="rgb24").data)  # rare layouts: hash a canonical form
        return h.intdigest()
    bytes_per_sample = 2 if max(c.bits for c in frame.format.components) > 8 else 1
    for plane in frame.planes:
        row = plane.width * bytes_per_sample
        if plane.line_size == row:
            h.update(memoryview(plane)[: row * plane.height])
        else:
            data = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height, :row]
            h.update(np.ascontiguousarray(data).data)
    return h.intdigest()


def _rows(plane: av.video.plane.VideoPlane, row_bytes: int) -> np.ndarray:
    """The visible bytes of ``plane`` as a (height, row_bytes) view (no copy)."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height, :row_bytes]


def _semi_planar(frame: av.VideoFrame, h: xxhash.xxh3_64, size: int, shift: int) -> None:
    """Hash a semi-planar frame exactly as its planar twin: Y, then U, then V. Each interleaved
    (U, V) pair is read as one little-endian integer twice the sample's width: U is its low
    half (a truncating cast), V its high half (a shift), two contiguous passes instead of
    strided copies: 0.20 ms for a 1080p frame, against 0.09 ms for its yuv420p twin."""
    luma, chroma = frame.planes[0], frame.planes[1]
    sample, pair = (np.dtype("<u2"), np.dtype("<u4")) if size == 2 else (np.dtype(np.uint8),
                                                                         np.dtype("<u2"))
    y = _rows(luma, luma.width * size).view(sample)
    uv = _rows(chroma, chroma.width * 2 * size).view(pair)
    u = uv.astype(sample)
    v = np.right_shift(uv, 8 * size, out=np.empty(uv.shape, sample), casting="unsafe")
    for part in (y, u, v):
        h.update(np.ascontiguousarray(part >> shift if shift else part).data)
