"""The batched per-frame signals are bit-identical to computing them one frame at a time."""

import math

import numpy as np
import pytest

from clipfactory.dedup.perceptual import phash64
from clipfactory.media.framesignals import NAN5, SignalBatch, luma
from clipfactory.media.motion import phase_motion
from clipfactory.testing.compare import reference_signals


def test_luma_is_the_integer_formula_for_every_colour():
    x = np.arange(256)
    for r in range(0, 256, 1):  # every (R, G, B): 256 slices of 65,536 colours
        rgb = np.empty((256, 256, 3), np.uint8)
        rgb[..., 0] = r
        rgb[..., 1] = x[:, None]
        rgb[..., 2] = x[None, :]
        want = (77 * r + 150 * x[:, None] + 29 * x[None, :]) >> 8
        got = luma(rgb)
        assert got.dtype == np.float32
        assert np.array_equal(got, want.astype(np.float32)), r


def _frames(rng, n, h, w):
    """A mix of what footage looks like and what it does not: smooth moving gradients with a
    little noise, pure noise, flat frames (black, grey) and a hard cut."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        kind = i % 7
        if kind == 3:
            out[i] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == 5:
            out[i] = 0 if i % 2 else 128
        else:
            base = 128 + 100 * np.sin((xx + 3 * i) / (5 + kind)) * np.cos(yy / 7)
            noise = rng.normal(0, 6, (h, w, 3))
            out[i] = np.clip(base[..., None] + noise + [0, 20 * kind, -30], 0, 255)
    return out


def _check(frames, skip_at=(), rotation=0, size=8):
    batch = SignalBatch(*frames.shape[1:3], rotation, camera=True, size=size)
    want_b, want_s, want_m, want_h, want_c = [], [], [], [], []
    prev = None
    for i, f in enumerate(frames):
        if i in skip_at:
            batch.skip()
            want_b.append(0.0), want_s.append(0.0), want_m.append(0.0), want_h.append(0)
            want_c.append(NAN5)
            continue
        ask = i % 3 == 0  # every third frame asks for phase correlation
        batch.add(f, None if ask and batch.has_prev else (float(i),) * 5)
        gray, b, s, m = reference_signals(f, prev)
        want_b.append(b), want_s.append(s), want_m.append(m)
        want_h.append(phash64(np.rot90(gray, rotation // 90) if rotation else gray))
        if ask and prev is not None:
            g = phase_motion(prev, gray)
            want_c.append((g.tx, g.ty, g.zoom, g.rot, g.residual))
        else:
            want_c.append((float(i),) * 5)
        prev = gray
    batch.flush()
    f32 = np.float32
    assert np.array_equal(np.frombuffer(batch.brightness, f32), np.array(want_b, f32))
    assert np.array_equal(np.frombuffer(batch.sharpness, f32), np.array(want_s, f32),
                          equal_nan=True)
    assert np.array_equal(np.frombuffer(batch.motion, f32), np.array(want_m, f32))
    assert list(batch.phash) == want_h
    assert np.array_equal(np.frombuffer(batch.camera, f32).reshape(-1, 5),
                          np.array(want_c, f32), equal_nan=True)
    return batch


@pytest.mark.parametrize("h,w", [(90, 160), (33, 47), (160, 90), (360, 640), (5, 4)])
def test_batch_matches_one_frame_at_a_time(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    frames = _frames(rng, 29, h, w)  # 29 frames through batches of 8: three flushes on the way
    batch = _check(frames)
    assert len(batch.brightness) == 29
    # the frames differ: the comparison above is not between constants
    assert len(set(batch.sharpness)) > 10 and len(set(batch.phash)) > 10


def test_skipped_frames_and_rotation():
    rng = np.random.default_rng(7)
    frames = _frames(rng, 20, 90, 160)
    batch = _check(frames, skip_at={0, 1, 2, 11}, rotation=90)
    assert list(batch.phash)[:3] == [0, 0, 0] and batch.phash[11] == 0
    # the first analysed frame has nothing to move from; a frame after a skip still has
    assert batch.motion[3] == 0.0 and batch.motion[12] > 0.0


def test_first_frame_cannot_ask_for_phase():
    batch = SignalBatch(90, 160, camera=True)
    assert not batch.has_prev
    batch.add(np.zeros((90, 160, 3), np.uint8), None)  # no reference: unmeasured, not a crash
    assert batch.has_prev
    batch.flush()
    assert all(math.isnan(v) for v in batch.camera)
