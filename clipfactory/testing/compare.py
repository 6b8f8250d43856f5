"""Small helpers the tests (and anyone checking clips by hand) use to compare video content."""

from __future__ import annotations

import os

import av
import numpy as np

__all__ = ["psnr", "remux"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images of the same shape, in dB (inf if equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def remux(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy the first video stream's packets into another container: new bytes, same frames."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s_in = i.streams.video[0]
        s_out = o.add_stream_from_template(s_in)
        for pkt in i.demux(s_in):
            if pkt.dts is not None:
                pkt.stream = s_out
                o.mux(pkt)
