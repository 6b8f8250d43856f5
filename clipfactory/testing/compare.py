"""Small helpers the tests (and anyone checking clips by hand) use to compare video content."""

from __future__ import annotations

import os

import av
import numpy as np

__all__ = ["psnr", "reference_signals", "remux"]


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


def reference_signals(rgb: np.ndarray, prev_gray: np.ndarray | None
                      ) -> tuple[np.ndarray, float, float, float]:
    """(gray, brightness, sharpness, motion) of one frame, one numpy call at a time: the
    definition that :class:`clipfactory.media.framesignals.SignalBatch` must match bit for bit."""
    x = rgb.astype(np.int64)
    gray = ((77 * x[..., 0] + 150 * x[..., 1] + 29 * x[..., 2]) >> 8).astype(np.float32)
    g = gray
    h, w = g.shape[0] & ~1, g.shape[1] & ~1
    if h >= 6 and w >= 6:
        g = (g[:h:2, :w:2] + g[1:h:2, :w:2] + g[:h:2, 1:w:2] + g[1:h:2, 1:w:2]) * 0.25
    c = g[1:-1, 1:-1]
    lap = 4 * c - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    motion = (float(np.abs(gray - prev_gray).mean())
              if prev_gray is not None and prev_gray.shape == gray.shape else 0.0)
    return gray, float(gray.mean()), float(lap.var()), motion
