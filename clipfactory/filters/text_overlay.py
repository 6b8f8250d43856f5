"""Burned-in text (subtitles, lower thirds, titles, tickers, watermarks) in a clip's frames.

Detection is PP-OCRv4's DB text detector (``ch_PP-OCRv4_det_infer.onnx``, Apache-2.0) from the
``rapidocr-onnxruntime`` wheel (``pip install 'clipfactory[text]'``); only that ONNX file is used,
with onnxruntime (the rapidocr package is never imported: it pulls OpenCV). Preprocessing as in
rapidocr's ``ch_ppocr_det``: BGR order, ``(pixel / 255 - 0.5) / 0.5``, NCHW float32, sides
multiples of 32; but where rapidocr scales the short side UP to 736, the long side is scaled to
``max_side`` (640): burned-in text is large, and the cost per frame stays fixed. The output is a
text probability per input pixel, marking the shrunk core of each text line (DB), not its box.

Overlay rule (:func:`overlay_score`): text at the same place in frames sampled at different times
of one shot is overlay; text that moves with the picture is scene text. Masks are compared on a
grid of 1/4 of the model input's side, dilated by one cell; a cell is *persistent* when it is text
in nearly all frames (``n - n // 4`` of ``n``). The camera's shift between frames is estimated on
the same grid (phase correlation of luma, checked against the picture outside text), and each
persistent region is tested both ways: masks compared in place, and after following the camera.
A region the camera explains clearly better (a sign in a slow pan still overlaps itself) is scene
text and does not count.

Limits: scene text in a shot where the picture does not move counts as overlay (then
:attr:`TextScore.camera_shift` is 0, so a caller can tell); camera motion is a translation, so
zooms and rotations fall back to the in-place rule; text scrolling exactly with the camera counts
as scene text; with one frame every text region counts.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["TextDetector", "TextModelError", "TextScore", "find_det_model", "is_overlay",
           "overlay_score"]

DET_MODEL = "ch_PP-OCRv4_det_infer.onnx"
GRID = 4  # a mask cell is GRID x GRID pixels of the model input


class TextModelError(RuntimeError):
    """The text detection model is missing, unreadable or not the expected graph."""


def find_det_model() -> Path:
    """The PP-OCRv4 detection ONNX file inside the installed ``rapidocr_onnxruntime`` package
    (located without importing the package)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise TextModelError("text detection model: package rapidocr-onnxruntime is not "
                             "installed (pip install 'clipfactory[text]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / DET_MODEL
    if not path.is_file():
        raise TextModelError(f"text detection model: {path} is missing from the installed "
                             "rapidocr-onnxruntime (reinstall: pip install 'clipfactory[text]')")
    return path


@lru_cache(maxsize=4)
def _session(path: str, threads: int) -> Any:
    """One onnxruntime session per (file, threads) and process."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(path, opts, providers=providers)
    except Exception as e:  # a truncated or foreign file: onnxruntime's own words
        raise TextModelError(f"text detection model {path}: cannot be loaded as ONNX: "
                             f"{str(e).strip().splitlines()[-1][:300]}") from e
    ins, outs = session.get_inputs(), session.get_outputs()
    if len(ins) != 1 or len(ins[0].shape) != 4 or ins[0].shape[1] != 3 or len(outs) != 1:
        raise TextModelError(f"text detection model {path}: expected one [n, 3, h, w] input and "
                             f"one output (a DB text detector), got "
                             f"{[(i.name, i.shape) for i in ins]} -> {[o.name for o in outs]}")
    return session


def _resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    """``rgb`` resized to ``w`` x ``h`` (Pillow: antialiased bilinear)."""
    from PIL import Image

    if rgb.shape[:2] == (h, w):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


class TextDetector:
    """PP-OCRv4 text detection: a text probability map per frame, and a coarse text mask."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None, threads: int = 1,
                 max_side: int = 640) -> None:
        path = os.fspath(model_path) if model_path is not None else str(find_det_model())
        if not Path(path).is_file():
            raise TextModelError(f"text detection model {path}: no such file")
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32, got {max_side}")
        self.path, self.max_side = path, max_side
        self.session = _session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """Model input ``(height, width)`` for an ``h`` x ``w`` frame: the long side scaled to
        ``max_side`` (up or down), each side rounded to a multiple of 32."""
        scale = self.max_side / max(h, w)
        return (max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32))

    def text_map(self, rgb: np.ndarray) -> np.ndarray:
        """Text probability ``[H, W]`` float32 in [0, 1] for an ``[h, w, 3]`` uint8 RGB frame, at
        the model input size :meth:`input_size` (640x360 -> 352x640); it covers the whole frame
        (aspect stretched by at most the rounding to 32)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an [h, w, 3] uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        mh, mw = self.input_size(*rgb.shape[:2])
        x = _resize(rgb, mw, mh)[:, :, ::-1].astype(np.float32)  # BGR, as the model was trained
        x = (x * (1 / 127.5) - 1.0).transpose(2, 0, 1)[None]  # (x / 255 - 0.5) / 0.5
        try:
            out = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0]
        except Exception as e:  # onnxruntime raises its own types; say what failed
            raise TextModelError(f"text detection model {self.path}: inference failed: {e}") from e
        return np.asarray(out, np.float32).reshape(mh, mw)

    def text_mask(self, rgb: np.ndarray, threshold: float = 0.3) -> np.ndarray:
        """Boolean text mask ``[H / 4, W / 4]`` (88x160 for 640x360): a cell is text when any
        probability in its 4x4 block of :meth:`text_map` exceeds ``threshold`` (0.3, the DB
        binarisation threshold rapidocr uses). Frames of the same size give the same grid."""
        prob = self.text_map(rgb)
        h, w = prob.shape
        return prob.reshape(h // GRID, GRID, w // GRID, GRID).max(axis=(1, 3)) > threshold


class MaskDetector(Protocol):
    """What :func:`overlay_score` needs: a coarse boolean text mask per frame."""

    def text_mask(self, rgb: np.ndarray, threshold: float = 0.3) -> np.ndarray: ...


@dataclass(frozen=True)
class TextScore:
    """Burned-in text in one clip. Areas are fractions of the frame; boxes are normalised
    ``(x0, y0, x1, y1)``, one per persistent text region counted as overlay."""

    area: float  # persistent (overlay) text
    any_text_area: float  # mean per-frame text, overlay and scene text alike
    persistent_boxes: tuple[tuple[float, float, float, float], ...]
    frames: int
    scene_text_area: float = 0.0  # persistent in place, but better explained by the camera
    camera_shift: float = 0.0  # largest camera move seen, in frame widths (0: none or not run)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    return np.logical_or.reduce([p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])


def _overlap(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], ...]:
    """``(dst, src)`` slices with ``dst`` = ``src`` moved by ``(dy, dx)`` on an ``h`` x ``w`` grid."""
    return ((slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))),
            (slice(max(-dy, 0), h - max(dy, 0)), slice(max(-dx, 0), w - max(dx, 0))))


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by ``(dy, dx)`` cells, zeros shifted in."""
    out = np.zeros_like(mask)
    if abs(dy) < mask.shape[0] and abs(dx) < mask.shape[1]:
        dst, src = _overlap(*mask.shape, dy, dx)
        out[dst] = mask[src]
    return out


def _mismatch(a: np.ndarray, b: np.ndarray, text: np.ndarray, dy: int, dx: int) -> float:
    """Mean ``|b(y, x) - a(y - dy, x - dx)|`` over the overlap, text cells left out (inf when
    under a quarter of the grid is left to compare)."""
    h, w = a.shape
    if abs(dy) >= h or abs(dx) >= w:
        return float("inf")
    dst, src = _overlap(h, w, dy, dx)
    keep = ~text[dst] & ~text[src]
    return float(np.abs(b[dst] - a[src])[keep].mean()) if keep.sum() >= h * w / 4 else np.inf


def _camera_step(a: np.ndarray, b: np.ndarray, text: np.ndarray, peaks: int = 3,
                 reach: int = 2) -> tuple[int, int]:
    """The camera's shift ``(dy, dx)``, ``b(y, x) ~ a(y - dy, x - dx)``, or (0, 0). Overlays
    correlate at zero shift, so the phase correlation's zero peak is left out; its best peaks,
    refined by matching the picture outside ``text``, must beat no motion clearly."""
    h, w = a.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    cross = np.fft.rfft2((b - b.mean()) * win) * np.conj(np.fft.rfft2((a - a.mean()) * win))
    corr = np.fft.irfft2(cross / np.sqrt(np.abs(cross) + 1e-9), s=(h, w))
    corr[np.ix_([-1, 0, 1], [-1, 0, 1])] = -np.inf
    best, best_err = (0, 0), 0.7 * _mismatch(a, b, text, 0, 0)
    for flat in np.argpartition(corr, -peaks, axis=None)[-peaks:]:
        py, px = (int(v) for v in np.unravel_index(int(flat), corr.shape))
        py, px = (py - h if py > h // 2 else py), (px - w if px > w // 2 else px)
        for dy in range(py - reach, py + reach + 1):
            for dx in range(px - reach, px + reach + 1):
                err = _mismatch(a, b, text, dy, dx)
                if err < best_err:
                    best, best_err = (dy, dx), err
    return best


def _components(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """8-connected regions of ``mask`` as ``(ys, xs)`` index arrays."""
    cells = mask.tolist()
    h, w = mask.shape
    seen = [[False] * w for _ in range(h)]
    regions = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0][x0]:
            continue
        seen[y0][x0] = True
        stack, pts = [(int(y0), int(x0))], []
        while stack:
            y, x = stack.pop()
            pts.append((y, x))
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    if cells[yy][xx] and not seen[yy][xx]:
                        seen[yy][xx] = True
                        stack.append((yy, xx))
        regions.append(tuple(np.array(pts).T))
    return regions


def _follows_camera(masks: list[np.ndarray], cam: list[tuple[int, int]], ys: np.ndarray,
                    xs: np.ndarray) -> bool:
    """Whether the text around a persistent region agrees clearly better across frames once the
    camera's motion is followed than in place (disagreeing cells, summed over frame pairs)."""
    reach = max(max(abs(dy), abs(dx)) for dy, dx in cam)
    if reach < 2:  # no camera motion to tell the two explanations apart
        return False
    h, w = masks[0].shape
    win = (slice(max(ys.min() - reach - 1, 0), min(ys.max() + reach + 2, h)),
           slice(max(xs.min() - reach - 1, 0), min(xs.max() + reach + 2, w)))
    in_place = followed = 0
    for s in range(len(masks)):
        for t in range(s + 1, len(masks)):
            moved = _shift(masks[s], cam[t][0] - cam[s][0], cam[t][1] - cam[s][1])
            in_place += int((masks[s][win] ^ masks[t][win]).sum())
            followed += int((moved[win] ^ masks[t][win]).sum())
    return followed < 0.7 * in_place


def overlay_score(frames: list[np.ndarray], detector: MaskDetector,
                  threshold: float = 0.3) -> TextScore:
    """Persistent (overlay) text in RGB ``frames`` of ONE shot sampled at different times (3-4
    frames, a second or more apart, all the same size); the rule is in the module docstring."""
    if not frames:
        raise ValueError("overlay_score needs at least one frame")
    raw = [np.asarray(detector.text_mask(f, threshold), bool) for f in frames]
    if any(m.shape != raw[0].shape for m in raw):
        raise ValueError("overlay_score: frames of different sizes")
    n, (gh, gw) = len(raw), raw[0].shape
    masks = [_dilate(m) for m in raw]
    persistent = (np.sum(masks, axis=0) >= n - n // 4) & np.any(raw, axis=0)
    cam = [(0, 0)]
    if n > 1 and persistent.any():
        lumas = [_resize(f, gw, gh).astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
                 for f in frames]
        text = _dilate(np.any(raw, axis=0))
        for a, b in pairwise(lumas):  # chained: neighbours overlap most
            dy, dx = _camera_step(a, b, text)
            cam.append((cam[-1][0] + dy, cam[-1][1] + dx))
    overlay, scene = np.zeros_like(persistent), np.zeros_like(persistent)
    boxes = []
    for ys, xs in _components(persistent):
        if _follows_camera(masks, cam, ys, xs):
            scene[ys, xs] = True
            continue
        overlay[ys, xs] = True
        boxes.append((round(int(xs.min()) / gw, 4), round(int(ys.min()) / gh, 4),
                      round((int(xs.max()) + 1) / gw, 4), round((int(ys.max()) + 1) / gh, 4)))
    return TextScore(
        area=round(float(overlay.mean()), 5),
        any_text_area=round(float(np.mean([m.mean() for m in raw])), 5),
        persistent_boxes=tuple(sorted(boxes, key=lambda b: (b[1], b[0]))),
        frames=n,
        scene_text_area=round(float(scene.mean()), 5),
        camera_shift=round(max(float(np.hypot(dy, dx)) for dy, dx in cam) / gw, 4),
    )


def is_overlay(score: TextScore, min_area: float = 0.002) -> bool:
    """Whether the clip carries burned-in text: persistent text covers ``min_area`` of the frame
    (0.002 is about a 40x12 pixel text line at 640x360)."""
    return score.area >= min_area
