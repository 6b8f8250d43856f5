"""Image preprocessing for CLIP and SigLIP checkpoints in numpy + Pillow, as the checkpoint's
``preprocessor_config.json`` describes it (resize, center crop, rescale, normalise), matching
transformers' image processors without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ImageTransform"]


def _hw(size: Any, what: str) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict) and {"height", "width"} <= size.keys():
        return int(size["height"]), int(size["width"])
    raise ValueError(f"{what} {size!r}: expected an int or {{height, width}}")


@dataclass(frozen=True)
class ImageTransform:
    """The checkpoint's image preprocessing, as its ``preprocessor_config.json`` says, done
    with Pillow (resize, same filter as transformers' processors) and numpy (crop, scale)."""

    shortest_edge: int | None = None  # resize keeping the aspect (CLIP)
    resize_hw: tuple[int, int] | None = None  # resize to exactly this (SigLIP)
    crop_hw: tuple[int, int] | None = None
    rescale: float | None = 1 / 255
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resample: int = 3  # PIL.Image.Resampling.BICUBIC

    @classmethod
    def from_config(cls, cfg: dict[str, Any], kind: str) -> ImageTransform:
        """Read a CLIP or SigLIP ``preprocessor_config.json`` (dict and int forms of size:
        an int is the shortest edge for CLIP, a square for SigLIP)."""
        shortest = resize_hw = crop = None
        if cfg.get("do_resize", True):
            size = cfg["size"]
            if isinstance(size, dict) and "shortest_edge" in size:
                shortest = int(size["shortest_edge"])
            elif isinstance(size, int) and kind == "clip":
                shortest = size
            else:
                resize_hw = _hw(size, "size")
        if cfg.get("do_center_crop", kind == "clip"):
            crop = _hw(cfg["crop_size"], "crop_size")
        norm = cfg.get("do_normalize", True)
        return cls(shortest, resize_hw, crop,
                   float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True)
                   else None,
                   tuple(cfg["image_mean"]) if norm else None,
                   tuple(cfg["image_std"]) if norm else None,
                   int(cfg.get("resample", 3)))

    @property
    def out_hw(self) -> tuple[int, int] | None:
        """The output size when it does not depend on the input's, else None."""
        return self.crop_hw or self.resize_hw

    def resized_hw(self, h: int, w: int) -> tuple[int, int]:
        if self.resize_hw is not None:
            return self.resize_hw
        if self.shortest_edge is None:
            return h, w
        s = self.shortest_edge  # transformers' rule: the long side truncated, not rounded
        return (int(s * h / w), s) if w <= h else (s, int(s * w / h))

    def __call__(self, frames: list[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB frames of any sizes → float32 NCHW (all the same output size)."""
        from PIL import Image

        out = []
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"expected HxWx3 uint8 RGB, got {f.shape} {f.dtype}")
            h, w = self.resized_hw(*f.shape[:2])
            if (h, w) != f.shape[:2]:
                f = np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling(self.resample)))
            if self.crop_hw is not None:
                f = _center_crop(f, *self.crop_hw)
            x = f.astype(np.float32)
            if self.rescale is not None:
                x *= np.float32(self.rescale)
            if self.mean is not None and self.std is not None:
                x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
            out.append(x.transpose(2, 0, 1))
        return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def _center_crop(f: np.ndarray, ch: int, cw: int) -> np.ndarray:
    h, w = f.shape[:2]
    top, left = (h - ch) // 2, (w - cw) // 2
    if top < 0 or left < 0:  # zero-pad around first, exactly as transformers' center_crop
        ph, pw = max(ch, h), max(cw, w)
        pad_top, pad_left = -((h - ph) // 2), -((w - pw) // 2)  # ceil((ph - h) / 2)
        padded = np.zeros((ph, pw, 3), f.dtype)
        padded[pad_top:pad_top + h, pad_left:pad_left + w] = f
        f, top, left = padded, top + pad_top, left + pad_left
    return f[top:top + ch, left:left + cw]
