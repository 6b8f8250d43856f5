"""Camera motion: codec vectors and the phase-correlation fallback, on real encoded moves."""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
import pytest
from av.video.reformatter import Interpolation

from clipfactory.media.motion import (
    LABELS,
    CameraMotion,
    GlobalMotion,
    PhaseTracker,
    classify_clip,
    enable_motion_vectors,
    fit_global_motion,
    frame_vectors,
    phase_motion,
)
from clipfactory.testing.camera import MOVES, write_camera_move

_LUMA = np.array([77, 150, 29], dtype=np.uint16)  # as clipfactory.media.analyse
_EXT = {"libx264": "mp4", "libvpx-vp9": "webm", "libsvtav1": "mkv"}


@dataclass
class Decoded:
    vectors: CameraMotion | None  # None: no frame had vectors
    phase: CameraMotion
    frames_with_vectors: int


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """``clip(move, **write_camera_move options)``: the file written once, decoded once as the
    analysis pass does (vectors on; 160x90 luma for the phase fallback), both labels."""
    root, cache = tmp_path_factory.mktemp("camera"), {}

    def make(move: str, **kw) -> Decoded:
        key = (move, tuple(sorted(kw.items())))
        if key not in cache:
            codec = kw.get("codec", "libx264")
            name = f"{move}_{len(cache)}.{_EXT[codec]}"
            cache[key] = _decode(write_camera_move(root / name, move, seconds=2.0, **kw))
        return cache[key]

    return make


def _decode(path) -> Decoded:
    mv, ph, times = [], [], []
    tracker = PhaseTracker()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        enable_motion_vectors(stream)
        fps = float(stream.average_rate or 30)
        for frame in container.decode(stream):
            times.append(float(frame.time))
            vec = frame_vectors(frame)
            mv.append(None if vec is None else fit_global_motion(vec, frame.width, frame.height))
            small = frame.reformat(width=160, height=90, format="rgb24",
                                   interpolation=Interpolation.AREA).to_ndarray()
            ph.append(tracker.update(((small.astype(np.uint16) @ _LUMA) >> 8).astype(np.float32)))
    with_vectors = sum(m is not None for m in mv)
    return Decoded(classify_clip(mv, fps, times) if with_vectors else None,
                   classify_clip(ph, fps, times), with_vectors)


# --- on encoded moves ------------------------------------------------------------------------

@pytest.mark.parametrize("move", MOVES)
def test_h264_vectors_recover_every_label(clip, move):
    d = clip(move)
    assert d.vectors is not None and d.vectors.label == move
    assert d.phase.label == move  # the fallback agrees on the same file
    if move != "static":  # default speed: 0.2 of the frame (or growth) per second
        assert d.vectors.camera == pytest.approx(0.2, rel=0.1)
        assert d.phase.camera == pytest.approx(0.2, rel=0.1)


def test_sign_conventions(clip):
    assert clip("pan_right").vectors.tx < 0 < clip("pan_left").vectors.tx  # content moves left
    assert clip("tilt_down").vectors.ty < 0 < clip("tilt_up").vectors.ty  # content moves down
    assert clip("zoom_out").vectors.zoom < 0 < clip("zoom_in").vectors.zoom  # content grows
    assert clip("pan_right").phase.tx < 0 < clip("tilt_up").phase.ty


@pytest.mark.parametrize("codec", ["libvpx-vp9", "libsvtav1"])
@pytest.mark.parametrize("move", MOVES)
def test_phase_fallback_without_vectors(clip, move, codec):
    d = clip(move, codec=codec)
    assert d.frames_with_vectors == 0 and d.vectors is None
    assert d.phase.label == move


def test_moving_object_is_not_camera_motion(clip):
    still, busy = clip("static"), clip("static", moving_object=True)
    for which in ("vectors", "phase"):
        a, b = getattr(still, which), getattr(busy, which)
        assert b.label == "static", which
        assert b.object > max(3 * a.object, 0.01), which


def test_camera_score_grows_with_speed(clip):
    for move in ("pan_right", "zoom_in"):
        runs = [clip(move, speed=s) for s in (0.05, 0.1, 0.2, 0.4)]
        for which in ("vectors", "phase"):
            speeds = [getattr(r, which).camera for r in runs]
            assert speeds == sorted(set(speeds)), (move, which)  # strictly increasing
            assert speeds[-1] == pytest.approx(0.4, rel=0.1), (move, which)


@pytest.mark.parametrize("move", ["pan_left", "tilt_up", "zoom_out"])
@pytest.mark.parametrize("variant", [{"fps": 8}, {"vfr": True}])
def test_frame_rate_does_not_change_labels_or_speeds(clip, move, variant):
    ref, other = clip(move), clip(move, **variant)
    for which in ("vectors", "phase"):
        a, b = getattr(ref, which), getattr(other, which)
        assert b.label == a.label == move, which
        assert b.camera == pytest.approx(a.camera, rel=0.15), which


def test_pan_with_zoom_is_complex(clip):
    d = clip("pan_right+zoom_in")
    assert d.vectors.label == d.phase.label == "complex"
    assert d.vectors.tx < 0 < d.vectors.zoom


@pytest.mark.parametrize("move", ["pan_left", "zoom_in"])
def test_b_frames_keep_labels(clip, move):
    d = clip(move, bframes=3)
    assert d.vectors.label == move
    assert d.vectors.camera == pytest.approx(0.2, rel=0.5)  # far references may read fast


# --- pure functions --------------------------------------------------------------------------

def _vectors(tx, ty, s, r, w=640, h=360, step=16):
    """Exact similarity motion (pixels) on a block grid, as frame_vectors returns it."""
    hd = 0.5 * np.hypot(w, h)
    yy, xx = np.mgrid[step // 2 : h : step, step // 2 : w : step].astype(np.float64)
    x, y = (xx.ravel() - w / 2) / hd, (yy.ravel() - h / 2) / hd
    u = (tx * w / hd + s * x - r * y) * hd
    v = (ty * h / hd + s * y + r * x) * hd
    return np.stack([xx.ravel(), yy.ravel(), u, v], axis=1).astype(np.float32)


def test_fit_recovers_a_similarity_despite_an_object():
    vec = _vectors(-0.01, 0.005, 0.004, -0.003)
    clean = fit_global_motion(vec, 640, 360)
    assert (clean.tx, clean.ty, clean.zoom, clean.rot) == pytest.approx(
        (-0.01, 0.005, 0.004, -0.003), abs=1e-5)
    assert clean.residual < 1e-5 and clean.inliers == len(vec)
    obj = vec.copy()
    inside = (np.abs(obj[:, 0] - 200) < 60) & (np.abs(obj[:, 1] - 180) < 60)  # ~6 % of blocks
    obj[inside, 2:] += (12.0, -5.0)
    busy = fit_global_motion(obj, 640, 360)
    assert (busy.tx, busy.ty, busy.zoom, busy.rot) == pytest.approx(
        (clean.tx, clean.ty, clean.zoom, clean.rot), abs=1e-4)
    assert busy.residual == pytest.approx(inside.mean() * 13.0 / 640, rel=0.05)


def test_zero_vectors_count_as_still_in_the_residual():
    vec = _vectors(0.01, 0, 0, 0)
    vec[::3, 2:] = 0  # flat areas: the encoder kept zero vectors
    g = fit_global_motion(vec, 640, 360)
    assert g.tx == pytest.approx(0.01, abs=1e-6) and g.residual == 0
    assert fit_global_motion(None, 640, 360).inliers == 0


def test_frames_whose_vectors_were_read_do_not_pile_up(tmp_path, monkeypatch):
    """PyAV's frame <-> side-data reference cycle keeps every frame whose vectors were read
    until a full collection; the sweeper runs one once they hold its budget (1 MiB here:
    ~12 frames of 320x180)."""
    import gc

    from clipfactory.media import motion

    monkeypatch.setattr(motion, "_SWEEPER", motion._CycleSweeper(1 << 20))
    path = write_camera_move(tmp_path / "pan.mp4", "pan_left", seconds=6.0)
    gc.collect()
    alive = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        enable_motion_vectors(stream)
        for i, frame in enumerate(container.decode(stream)):
            frame_vectors(frame)
            if i % 30 == 29:
                alive.append(sum(isinstance(o, av.VideoFrame) for o in gc.get_objects()))
    assert len(alive) == 6 and max(alive) <= 16


def test_phase_motion_sign_and_subpixel():
    rng = np.random.default_rng(3)
    big = np.repeat(np.repeat(rng.random((60, 100)), 4, 0), 4, 1).astype(np.float32) * 200
    base = big[40:130, 40:200]
    for dx, dy in ((3, 0), (0, -2), (-5, 4)):  # content moves by (dx, dy) pixels
        moved = big[40 - dy : 130 - dy, 40 - dx : 200 - dx]
        g = phase_motion(base, moved)
        assert (g.tx * 160, g.ty * 90) == pytest.approx((dx, dy), abs=0.1)  # window: ~2 % short
        assert abs(g.zoom) < 1e-3 and abs(g.rot) < 1e-3 and g.inliers >= 3
    same = phase_motion(base, base)
    assert abs(same.tx) + abs(same.ty) < 1e-6 and same.residual < 1e-6 and same.inliers == 4
    tracker = PhaseTracker()
    assert tracker.update(base) is None
    assert tracker.update(big[40:130, 37:197]).tx * 160 == pytest.approx(3, abs=0.05)


def _motions(rows):
    return [GlobalMotion(*r, residual=0.0, inliers=10) for r in rows]


def test_classify_rules():
    fps = 30.0
    pan = _motions([(-0.2 / fps, 0, 0, 0)] * 40)
    assert classify_clip(pan, fps).label == "pan_right"
    assert classify_clip([None, *pan], fps).frames == 40  # frames without motion are skipped
    shake = _motions([((-1) ** i * 0.5 / fps, 0, 0, 0) for i in range(40)])
    flipped = classify_clip(shake, fps)
    assert flipped.label == "complex" and flipped.camera == pytest.approx(0.5)
    rot = _motions([(0, 0, 0, 0.3 / fps)] * 40)
    assert classify_clip(rot, fps).label == "complex"
    slow = _motions([(0.01 / fps, 0, 0, 0)] * 40)
    assert classify_clip(slow, fps).label == "static"
    empty = classify_clip([], fps)
    assert empty.label == "static" and empty.frames == 0
    # per-second: the same per-frame motion at 8 fps is a slower camera; times override fps
    arr = np.array([[0.01, 0, 0, 0, 0.001]] * 10)
    assert classify_clip(arr, 8).camera == pytest.approx(0.08)
    times = np.arange(10) * 0.25
    cm = classify_clip(arr, 30, times)
    assert cm.camera == pytest.approx(0.04) and cm.object == pytest.approx(0.004)
    assert set(LABELS) >= {classify_clip(arr, f).label for f in (1, 8, 30)}
