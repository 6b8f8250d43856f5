"""Handing memory back between videos (clipfactory.memory.release_memory)."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from clipfactory.memory import peak_rss_mib, release_memory


class _Node:
    def __init__(self) -> None:
        self.pixels = np.ones((1080, 1920), np.uint8)
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_release_frees_reference_cycles() -> None:
    gc.disable()  # no automatic collection may free it first
    try:
        node = _Node()
        alive = weakref.ref(node)
        del node
        assert alive() is not None  # still held by its own cycle
        release_memory()
        assert alive() is None
    finally:
        gc.enable()


def test_peak_rss_is_read_from_this_process() -> None:
    before = peak_rss_mib()
    block = np.ones(64 << 20, np.uint8)  # 64 MiB touched
    assert peak_rss_mib() >= before
    assert peak_rss_mib() >= block.nbytes / (1 << 20)
