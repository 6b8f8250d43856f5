"""Drop clips with (almost) no motion: still images, frozen frames, slides.

Where the analysis pass measured camera and object motion (per second, so the frame rate does
not matter), a clip is static when neither the camera nor anything in the picture moves: a slow
pan over a smooth wall or a fixed camera watching people walk is not static. Without it (motion
analysis off), the mean luma change per frame decides, as before."""

from __future__ import annotations

from dataclasses import dataclass

from clipfactory.filters.base import ClipSignals

__all__ = ["StaticFilter"]


@dataclass(frozen=True)
class StaticFilter:
    min_motion: float = 0.5
    min_camera: float = 0.03
    min_object: float = 0.005
    name: str = "static"

    def check(self, sig: ClipSignals) -> str | None:
        if sig.camera is not None and sig.object is not None:
            moving = sig.camera >= self.min_camera or sig.object >= self.min_object
        else:
            moving = float(sig.inner_motion.mean()) >= self.min_motion
        return None if moving else "static"
