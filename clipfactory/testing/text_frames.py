"""Test footage with burned-in text: a few RGB frames of one panning shot, seeded.

Every kind is a camera panning over a smooth noise texture (a crop window that moves ``step``
pixels per sampled frame), so the picture changes between frames the way it does in real footage
sampled seconds apart. On top of it, drawn with Pillow's built-in scalable font:

- ``clean``: nothing.
- ``subtitles``: white text with a dark outline, bottom centre; the line changes between frames.
- ``lower_third``: a coloured bar with a name and a role, bottom left.
- ``title``: a big centred title.
- ``ticker``: a band across the bottom whose text scrolls left (the band stays put).
- ``watermark``: a small semi-transparent logo, top right.
- ``sign``: a street sign painted INTO the texture: it moves with the pan (scene text).
- ``static_sign``: the same sign in a shot where nothing moves (camera and scene still).

:func:`render` returns ``n`` frames of ``size`` (640x360 by default) as ``[h, w, 3]`` uint8 arrays.
Only numpy and Pillow (>= 10.1, with FreeType: ``ImageFont.load_default(size=...)``) are used.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["KINDS", "SIZE", "font", "pan_frames", "render", "texture"]

SIZE = (640, 360)
STEP = (56, 8)  # camera motion between two sampled frames, in pixels (x, y)

SUBTITLE_LINES = (
    "I never thought we'd make it this far.",
    "Neither did I, but here we are.",
    "Let's get inside before the storm hits.",
    "Grab the lantern and follow me.",
)
TICKER_TEXT = ("BREAKING: harbour reopens after storm  |  MARKETS: index up 1.2%  |  "
               "WEATHER: sunny spells, light winds  |  SPORT: city win 3-1  |  ")

Drawer = Callable[[ImageDraw.ImageDraw, int, int, int], None]


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` pixels (needs no file and no network)."""
    f = ImageFont.load_default(size=size)
    if not isinstance(f, ImageFont.FreeTypeFont):
        raise RuntimeError("Pillow without FreeType: ImageFont.load_default(size=...) ignores the "
                           "size (install a Pillow wheel >= 10.1)")
    return f


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, muted colour noise texture ``[height, width, 3]`` uint8: three octaves of
    random grids upscaled bicubically (no text-like strokes in it)."""
    rng = np.random.default_rng([seed, 7321])
    acc = np.zeros((height, width, 3), np.float32)
    for cells, amp in ((5, 1.0), (11, 0.5), (23, 0.25)):
        gh, gw = cells, max(2, cells * width // max(height, 1))
        grid = rng.random((gh, gw, 3)).astype(np.float32)
        for c in range(3):
            layer = Image.fromarray(grid[:, :, c], mode="F").resize((width, height),
                                                                    Image.Resampling.BICUBIC)
            acc[:, :, c] += amp * np.asarray(layer)
    grey = acc.mean(axis=2, keepdims=True)
    acc = grey + 0.6 * (acc - grey)  # muted colours, like most footage
    lo, hi = np.percentile(acc, 1), np.percentile(acc, 99)
    return np.clip((acc - lo) / (hi - lo) * 170 + 40, 0, 255).astype(np.uint8)


def _paint_sign(tex: np.ndarray, x: int, y: int) -> None:
    """A green street sign with white lettering, painted into ``tex`` in place."""
    img = Image.fromarray(tex)
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((x, y, x + 236, y + 64), radius=8, fill=(22, 92, 52),
                        outline=(235, 235, 235), width=3)
    d.text((x + 118, y + 33), "MAIN STREET", font=font(34), fill=(245, 245, 245), anchor="mm")
    tex[:] = np.asarray(img)


def pan_frames(n: int = 3, *, seed: int = 0, size: tuple[int, int] = SIZE,
               step: tuple[int, int] = STEP, sign: bool = False) -> list[np.ndarray]:
    """``n`` frames of a camera panning over :func:`texture` by ``step`` pixels per frame; with
    ``sign``, a street sign painted into the scene (so it moves with the pan)."""
    w, h = size
    sx, sy = step
    tw, th = w + abs(sx) * max(n - 1, 0) + 2, h + abs(sy) * max(n - 1, 0) + 2
    tex = texture(tw, th, seed)
    x0, y0 = (tw - w - 1 if sx < 0 else 0), (th - h - 1 if sy < 0 else 0)
    if sign:  # in view in every frame: roughly centred in the middle frame
        mid = (n - 1) // 2
        _paint_sign(tex, x0 + sx * mid + w // 2 - 118, y0 + sy * mid + h // 3 - 32)
    return [tex[y0 + sy * t:y0 + sy * t + h, x0 + sx * t:x0 + sx * t + w].copy()
            for t in range(n)]


def _subtitles(d: ImageDraw.ImageDraw, t: int, w: int, h: int) -> None:
    d.text((w // 2, h - 28), SUBTITLE_LINES[t % len(SUBTITLE_LINES)], font=font(24),
           fill=(255, 255, 255, 255), anchor="ms", stroke_width=2, stroke_fill=(0, 0, 0, 255))


def _lower_third(d: ImageDraw.ImageDraw, t: int, w: int, h: int) -> None:
    d.rectangle((24, h - 92, 300, h - 56), fill=(20, 70, 160, 235))
    d.rectangle((24, h - 56, 240, h - 32), fill=(240, 240, 240, 235))
    d.text((36, h - 74), "Dr. Amara Okafor", font=font(24), fill=(255, 255, 255, 255),
           anchor="lm")
    d.text((36, h - 44), "Marine biologist", font=font(16), fill=(20, 20, 20, 255), anchor="lm")


def _title(d: ImageDraw.ImageDraw, t: int, w: int, h: int) -> None:
    d.text((w // 2 + 3, h // 2 + 3), "THE LAST HARBOUR", font=font(56), fill=(0, 0, 0, 160),
           anchor="mm")
    d.text((w // 2, h // 2), "THE LAST HARBOUR", font=font(56), fill=(255, 250, 235, 255),
           anchor="mm")


def _ticker(d: ImageDraw.ImageDraw, t: int, w: int, h: int) -> None:
    d.rectangle((0, h - 34, w, h), fill=(150, 20, 30, 255))
    f = font(20)
    period = int(d.textlength(TICKER_TEXT, font=f))
    x = -((90 * t) % period)  # scrolls left 90 px per frame: not with the camera (56 px)
    while x < w:
        d.text((x, h - 17), TICKER_TEXT, font=f, fill=(255, 255, 255, 255), anchor="lm")
        x += period


def _watermark(d: ImageDraw.ImageDraw, t: int, w: int, h: int) -> None:
    d.text((w - 16, 16), "harbourTV", font=font(22), fill=(255, 255, 255, 150), anchor="rt",
           stroke_width=1, stroke_fill=(0, 0, 0, 90))


OVERLAYS: dict[str, Drawer] = {
    "subtitles": _subtitles,
    "lower_third": _lower_third,
    "title": _title,
    "ticker": _ticker,
    "watermark": _watermark,
}
KINDS = ("clean", *OVERLAYS, "sign", "static_sign")


def render(kind: str, n: int = 3, *, seed: int = 0, size: tuple[int, int] = SIZE,
           step: tuple[int, int] = STEP) -> list[np.ndarray]:
    """``n`` RGB frames ``[h, w, 3]`` uint8 of one shot of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    if kind == "static_sign":
        return pan_frames(n, seed=seed, size=size, step=(0, 0), sign=True)
    frames = pan_frames(n, seed=seed, size=size, step=step, sign=kind == "sign")
    draw = OVERLAYS.get(kind)
    if draw is None:
        return frames
    out = []
    for t, frame in enumerate(frames):
        layer = Image.new("RGBA", size, (0, 0, 0, 0))
        draw(ImageDraw.Draw(layer), t, *size)
        img = Image.alpha_composite(Image.fromarray(frame).convert("RGBA"), layer)
        out.append(np.asarray(img.convert("RGB")))
    return out
