"""Progress bar: videos done/total, hours of video processed, current x-realtime."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """A tqdm bar on stderr (silent when ``quiet``) with hours and x-realtime in the postfix."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.t0 = time.perf_counter()
        self.media_s = 0.0
        self.failed = 0
        self.bar = None if quiet else tqdm(total=total, unit="video", file=sys.stderr,
                                           dynamic_ncols=True, desc="curating")

    def update(self, media_s: float, failed: bool = False) -> None:
        self.media_s += media_s
        self.failed += int(failed)
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{self.media_s / 3600:.3f} h video, "
                                 f"{self.media_s / elapsed:.1f}x realtime, {self.failed} failed",
                                 refresh=False)
        self.bar.update(1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.close()
