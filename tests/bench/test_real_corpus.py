"""Edits of real footage with ground truth (the shot evaluation on real footage), and the share
of planned clips that hold a transition frame."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from clipfactory.bench.real_corpus import load_sources, make_real_corpus, split_of
from clipfactory.bench.shot_metrics import TYPES, dirty_clips
from clipfactory.testing.synth import write_broken

REAL = Path(__file__).parent.parent / "fixtures" / "real"


def test_sources_from_a_folder_or_a_segments_file(tmp_path):
    folder = load_sources(REAL, "all")
    assert [Path(s.path).name for s in folder] == ["bigbuckbunny.mp4", "calais1906.mp4"]
    assert [s.frames for s in folder] == [132, 120]
    seg = tmp_path / "segments.json"
    seg.write_text(json.dumps([{"path": str(REAL / "calais1906.mp4"), "kind": "archival",
                                "segments": [[0, 59], [70, 90], [95, 119]]}]))
    got = load_sources(seg, "all")  # segments under 40 frames are too short for an edit
    assert [(s.first, s.last, s.kind) for s in got] == [(0, 59, "archival")]
    assert split_of("/a/b/x.mp4") == split_of("/elsewhere/x.mp4") in ("tune", "holdout")
    both = {split_of(f"clip{i}.mp4") for i in range(40)}
    assert both == {"tune", "holdout"}
    only = load_sources(REAL, split_of(str(REAL / "calais1906.mp4")))
    assert str(REAL / "calais1906.mp4") in [s.path for s in only]


def test_a_folder_of_footage_with_broken_files(tmp_path, capsys):
    """A user's folder of single-shot videos: files that cannot be read are left out, a
    damaged one counts up to where it breaks, and an edit of it still has its frames."""
    broken = write_broken(tmp_path / "broken")
    folder = tmp_path / "footage"
    folder.mkdir()
    for name in ("text", "no_moov", "cut_payload"):
        shutil.copy(broken[name], folder / f"{name}.mp4")
    shutil.copy(REAL / "calais1906.mp4", folder)
    got = {Path(s.path).name: s.frames for s in load_sources(folder, "all", min_frames=20)}
    with av.open(broken["cut_payload"]) as c:
        frames = c.decode(video=0)
        part = 0
        with pytest.raises(av.FFmpegError):
            for _ in frames:
                part += 1
    assert got == {"calais1906.mp4": 120, "cut_payload.mp4": part} and 20 <= part < 90
    out = capsys.readouterr().out
    assert f"{folder / 'text.mp4'}: " in out and "left out" in out
    assert f"only its first {part} frames decode" in out
    truth = make_real_corpus(load_sources(folder, "all", min_frames=20), tmp_path / "c",
                             videos=1, seconds=6, width=96, height=54, seed=1)
    with av.open(str(tmp_path / "c" / truth[0]["path"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == truth[0]["frames"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("realcorpus")
    return d, make_real_corpus(load_sources(REAL, "all"), d, videos=2, seconds=8, width=192,
                               height=108, seed=3)


def test_the_truth_matches_the_pictures(corpus):
    d, truth = corpus
    assert [v["path"] for v in truth] == ["real_000.mp4", "real_001.mp4"]
    for v in truth:
        with av.open(str(d / v["path"])) as c:
            frames = [f.to_ndarray(format="gray").astype(float) for f in c.decode(video=0)]
        assert len(frames) == v["frames"] >= 8 * 25
        ends = [t["end_frame"] for t in v["transitions"]]
        assert ends == sorted(ends) and all(t["type"] in TYPES for t in v["transitions"])
        for t in v["transitions"]:
            a, b = t["start_frame"], t["end_frame"]
            if t["type"] == "cut":  # a new picture
                assert np.abs(frames[b] - frames[a]).mean() > 10
            elif t["type"] == "fade":  # darker in the middle than either end
                mid = min(range(a + 1, b), key=lambda i: frames[i].mean())
                assert frames[mid].mean() < 0.5 * min(frames[a].mean(), frames[b].mean())
            else:  # a dissolve: the middle frame is close to the mean of its neighbours' mix
                m = (a + b) // 2
                assert np.abs(frames[m] - (frames[a] + frames[b]) / 2).mean() < \
                    np.abs(frames[b] - frames[a]).mean()
        for f in v["flashes"]:  # brighter than the frame before
            assert frames[f["first"]].mean() > frames[f["first"] - 1].mean() + 20
        kinds = [s["kind"] for s in v["shots"]]
        assert kinds == ["flash"] * len(v["flashes"]) + ["real"] * (len(v["transitions"]) + 1)


def test_the_corpus_is_deterministic_and_reused(corpus, tmp_path):
    d, truth = corpus
    mtime = (d / "real_000.mp4").stat().st_mtime_ns
    again = make_real_corpus(load_sources(REAL, "all"), d, videos=2, seconds=8, width=192,
                             height=108, seed=3)
    assert again == truth and (d / "real_000.mp4").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="no real footage"):
        make_real_corpus([], tmp_path)


def test_dirty_clips_counts_clips_holding_a_transition():
    cut = [("cut", 79, 80)]  # 160 frames at 25 fps: two 3.2 s shots
    assert dirty_clips(cut, [], 160, 25.0) == (1, 1)  # one clip over the cut
    assert dirty_clips(cut, cut, 160, 25.0) == (0, 2)
    dissolve = [("dissolve", 79, 100)]
    assert dirty_clips(dissolve, [("dissolve", 82, 97)], 200, 25.0) == (0, 2)  # the margin
    assert dirty_clips(dissolve, [("cut", 89, 90)], 200, 25.0) == (2, 2)


def test_dissolve_lengths_are_a_choice(tmp_path):
    """``--dissolve-frames``: edits with long dissolves, a corpus of their own."""
    sources = load_sources(REAL, "all")
    truth = make_real_corpus(sources, tmp_path / "long", videos=2, seconds=10, width=96,
                             height=54, seed=5, dissolve=(30, 40))
    lengths = [t["end_frame"] - t["start_frame"] - 1 for v in truth for t in v["transitions"]
               if t["type"] == "dissolve"]
    assert lengths and all(30 <= n <= 40 for n in lengths)
    assert json.loads((tmp_path / "long" / "truth.json").read_text())["params"]["dissolve"] == \
        [30, 40]
