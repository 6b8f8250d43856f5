import numpy as np

from clipfactory.config import FilterConfig
from clipfactory.filters import ClipSignals, build_filters, clip_scores, first_rejection


def _sig(b=120.0, s=200.0, m=3.0, n=60, w=320, h=180):
    return ClipSignals(np.full(n, b, np.float32), np.full(n, s, np.float32),
                       np.full(n, m, np.float32), w, h)


FILTERS = build_filters(FilterConfig())


def test_a_good_clip_is_kept():
    assert first_rejection(FILTERS, _sig()) is None


def test_each_filter_names_its_reason():
    assert first_rejection(FILTERS, _sig(w=48, h=48)) == "too_small"
    assert first_rejection(FILTERS, _sig(b=8.0)) == "too_dark"
    assert first_rejection(FILTERS, _sig(m=0.1)) == "static"
    assert first_rejection(FILTERS, _sig(s=3.0)) == "blurry"


def test_mostly_black_clip_with_a_bright_tail_is_dropped():
    b = np.concatenate([np.full(40, 2.0), np.full(20, 200.0)]).astype(np.float32)
    sig = ClipSignals(b, np.full(60, 200.0, np.float32), np.full(60, 3.0, np.float32), 320, 180)
    assert first_rejection(FILTERS, sig) == "mostly_black"
    assert clip_scores(sig)["dark.fraction"] == round(40 / 60, 4)


def test_motion_ignores_the_change_into_the_clip():
    m = np.zeros(60, np.float32)
    m[0] = 90.0  # the jump from the previous shot is not motion inside the clip
    sig = ClipSignals(np.full(60, 120.0, np.float32), np.full(60, 200.0, np.float32), m, 320, 180)
    assert first_rejection(FILTERS, sig) == "static"


def test_the_index_dark_fraction_uses_the_configured_black_level(tmp_path):
    """The dark filter judged with `filters.black_level`, while each clip's `dark.fraction`
    score was computed at the default 16: with another level the index disagreed with the
    verdict it stood for."""
    import pyarrow.parquet as pq

    from clipfactory.config import Config
    from clipfactory.pipeline import run
    from clipfactory.testing.synth import ShotSpec, write_video

    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "v.mp4", [ShotSpec(60, "texture", 1)], width=160, height=90)  # luma ~87
    fractions = {}
    for level in (16.0, 100.0):
        cfg = Config.model_validate({"workers": 1, "filters": {
            "black_level": level, "max_dark_fraction": 1.0, "min_brightness": 0}})
        out = tmp_path / f"out{int(level)}"
        run(src, out, cfg)
        [row] = pq.read_table(out / "index.parquet").to_pylist()
        fractions[level] = dict(row["scores"])["dark.fraction"]
    assert fractions == {16.0: 0.0, 100.0: 1.0}
