"""The report of a real run, read without a browser: its sections agree with the Parquet files,
its charts with the index, its thumbnails are real pictures of the clips, it refers to nothing
outside the output folder, and a source that is gone shows as a placeholder."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.report import build_report, report_after_finalize
from clipfactory.report.thumbs import GAP
from tests.report.htmltree import parse


@pytest.fixture(scope="module")
def curated(report_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_out")
    run(report_corpus, out, Config(workers=2))
    return out


def _page(out):
    root, errors = parse((out / "report.html").read_text(encoding="utf-8"))
    assert errors == []
    return root


def _rejected(out):
    return pq.read_table(out / "rejected.parquet").to_pylist()


def _index(out):
    rows = pq.read_table(out / "index.parquet").to_pylist()
    for r in rows:
        r["scores"] = dict(r["scores"])
    return rows


def _has_class(n, cls):
    return cls in n.attrs.get("class", "").split()


def test_run_writes_a_well_formed_page(curated):
    root = _page(curated)
    assert root.find_all(lambda n: n.tag == "title")
    ids = [n.attrs["id"] for n in root.walk() if "id" in n.attrs]
    assert len(ids) == len(set(ids))
    for part in ("summary", "dropped", "failed", "dedup", "kept", "plots", "licenses"):
        assert part in ids
    assert not [p for p in curated.rglob("*") if p.name.startswith(".")]


def test_a_section_per_drop_reason_with_its_count(curated):
    rej = _rejected(curated)
    want = Counter(f"{r['stage']}/{r['reason']}" for r in rej if r["kind"] == "clip")
    failed = Counter(f"{r['stage']}/{r['reason']}" for r in rej if r["kind"] == "video")
    assert {"filter/too_dark", "filter/static", "dedup/near_duplicate"} <= set(want)
    assert "probe/not_a_media_file" in failed
    root = _page(curated)
    sections = root.find_all(lambda n: n.tag == "section" and "data-reason" in n.attrs)
    got = {(s.attrs["data-kind"], s.attrs["data-reason"]): s for s in sections}
    assert {r for k, r in got if k == "clip"} == set(want)
    assert {r for k, r in got if k == "video"} == set(failed)
    for reason, n in want.items():
        s = got["clip", reason]
        assert int(s.attrs["data-count"]) == n
        shown = s.find_all(lambda x: x.tag == "figure")
        assert len(shown) == min(n, 8)
        ids = {f.attrs["data-clip"] for f in shown}
        assert ids <= {r["clip_id"] for r in rej if f"{r['stage']}/{r['reason']}" == reason}
    broken = got["video", "probe/not_a_media_file"]
    assert "broken.mp4" in broken.all_text()


def test_histograms_match_the_index(curated):
    index = _index(curated)
    root = _page(curated)
    plots = {n.attrs["data-plot"]: n for n in root.find_all(lambda n: "data-plot" in n.attrs)}
    names = {k for r in index for k in r["scores"]}
    assert {"brightness.mean", "motion.mean", "sharpness.median", "motion.camera"} <= names
    checks = {"duration": [r["duration_s"] for r in index]}
    checks.update({f"score:{k}": [r["scores"][k] for r in index if k in r["scores"]]
                   for k in names})
    for key, values in checks.items():
        v = np.array(values)
        bars = [b for b in plots[key].find_all(lambda n: n.tag == "rect" and _has_class(n, "bar"))
                if b.attrs["data-series"] == "kept"]
        assert sum(int(b.attrs["data-count"]) for b in bars) == len(v), key
        for i, b in enumerate(bars):
            lo, hi = float(b.attrs["data-lo"]), float(b.attrs["data-hi"])
            inside = (v >= lo) & ((v < hi) if i < len(bars) - 1 else (v <= hi))
            assert int(b.attrs["data-count"]) == int(inside.sum()), (key, i)
    motion = {b.attrs["data-label"]: int(b.attrs["data-count"])
              for b in plots["camera_motion"].find_all(lambda n: "data-label" in n.attrs)}
    assert motion == dict(Counter(r["camera_motion"] for r in index))
    res = {b.attrs["data-label"]: int(b.attrs["data-count"])
           for b in plots["resolution"].find_all(lambda n: "data-label" in n.attrs)}
    assert res == dict(Counter(f"{r['width']}x{r['height']}" for r in index))
    codecs = {b.attrs["data-label"]: int(b.attrs["data-count"])
              for b in plots["codec"].find_all(lambda n: "data-label" in n.attrs)}
    assert codecs == dict(Counter(f"{r['video_codec']} {r['pix_fmt']}" for r in index))


def _strip(path):
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def test_thumbnails_are_pictures_of_their_clips(curated):
    root = _page(curated)
    figures = root.find_all(lambda n: n.tag == "figure")
    assert figures
    rej = {r["clip_id"]: r for r in _rejected(curated) if r["clip_id"]}
    for f in figures:
        [img] = f.find_all(lambda n: n.tag == "img")  # every source is still there
        path = curated / img.attrs["src"]
        assert path.read_bytes()[:2] == b"\xff\xd8"
        strip = _strip(path)
        w = (strip.shape[1] - 2 * GAP) // 3
        assert strip.shape[0] > 0 and w > 0
        # 16:9 clips keep their aspect in every tile
        assert abs(w / strip.shape[0] - 16 / 9) < 0.05
        r = rej.get(f.attrs["data-clip"])
        luma = strip.mean()
        if r is not None and r["reason"] == "too_dark":
            assert luma < 30
        else:
            assert luma > 50
    kept = root.find_all(lambda n: n.tag == "section" and n.attrs.get("id") == "kept")[0]
    assert len(kept.find_all(lambda n: n.tag == "figure")) == len(_index(curated))


def test_dedup_groups_show_the_keeper_beside_its_duplicates(curated):
    index = {r["clip_id"] for r in _index(curated)}
    dups = [r for r in _rejected(curated) if r["duplicate_of"]]
    assert dups
    groups = _page(curated).find_all(lambda n: _has_class(n, "group"))
    assert {g.attrs["data-keeper"] for g in groups} == {r["duplicate_of"] for r in dups}
    for g in groups:
        assert g.attrs["data-keeper"] in index
        keeper = g.find_all(lambda n: n.tag == "figure" and _has_class(n, "keeper"))
        removed = g.find_all(lambda n: n.tag == "figure" and _has_class(n, "removed"))
        assert len(keeper) == 1 and keeper[0].find_all(lambda n: n.tag == "img")
        assert {f.attrs["data-clip"] for f in removed} == {
            r["clip_id"] for r in dups if r["duplicate_of"] == g.attrs["data-keeper"]}


def test_the_page_refers_to_nothing_outside_the_folder(curated):
    html = (curated / "report.html").read_text(encoding="utf-8")
    for n in parse(html)[0].walk():
        for attr in ("src", "href", "srcset", "poster", "data"):
            value = n.attrs.get(attr)
            if value is not None:
                assert not re.match(r"^\s*(https?:)?//", value, re.I), (n.tag, value)
                assert value.startswith(("#", "report_files/")), (n.tag, value)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", html)
    assert "https://" not in html and "http://" not in html


def test_a_missing_source_gives_a_placeholder(curated, report_corpus, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(curated, copy)
    src = report_corpus / "copy small.mp4"
    moved = tmp_path / "moved.mp4"
    shutil.move(src, moved)
    try:
        r = build_report(copy, cache=False)
    finally:
        shutil.move(moved, src)
    assert r.placeholders > 0
    root = _page(copy)
    gone = {x["clip_id"] for x in _rejected(copy) if x["source"] == str(src)}
    assert gone
    for f in root.find_all(lambda n: n.tag == "figure" and n.attrs.get("data-clip") in gone):
        assert not f.find_all(lambda n: n.tag == "img")
        [ph] = f.find_all(lambda n: _has_class(n, "placeholder"))
        assert ph.attrs["data-why"] == "source gone" and "source gone" in ph.all_text()
    others = root.find_all(lambda n: n.tag == "figure" and n.attrs.get("data-clip") not in gone)
    assert others and all(f.find_all(lambda n: n.tag == "img") for f in others)


def test_second_build_comes_from_the_cache(curated, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(curated, copy)
    r = build_report(copy)
    assert r.made == 0 and r.cached == r.shown and r.placeholders == 0 and r.pruned == 0
    fewer = build_report(copy, per_reason=1, kept=1, groups=0)
    assert fewer.pruned > 0 and len(list((copy / "report_files" / "thumbs").iterdir())) == \
        fewer.cached


def test_cli_report_and_a_failure_that_only_logs(curated, tmp_path, capsys, caplog):
    copy = tmp_path / "out"
    shutil.copytree(curated, copy)
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").is_file()
    assert "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2
    (copy / "summary.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="clipfactory"):
        assert report_after_finalize(copy) is None
    assert "report.html not written" in caplog.text


def test_a_takedown_leaves_no_picture_of_the_source(curated, report_corpus, tmp_path):
    from clipfactory.provenance.takedown import takedown, takedown_rules
    from clipfactory.report.thumbs import THUMB_DIR, thumb_name

    copy = tmp_path / "out"
    shutil.copytree(curated, copy)
    src = str(report_corpus / "copy small.mp4")
    doomed = {r["clip_id"] for r in _rejected(copy) if r["source"] == src and r["clip_id"]}
    sha = hashlib.sha256(Path(src).read_bytes()).hexdigest()  # dropped clips' strips: theirs
    names = {thumb_name(c, sha) for c in doomed}
    before = {p.name for p in (copy / THUMB_DIR).iterdir()}
    assert names & before  # it had pictures
    takedown(copy, takedown_rules(sources=[src]), "creator request")  # rewrites the report
    after = {p.name for p in (copy / THUMB_DIR).iterdir()}
    assert not names & after
    shown = _page(copy).find_all(lambda n: n.tag == "figure"
                                 and n.attrs.get("data-clip") in doomed)
    assert shown  # its dropped clips are still listed, with their reasons
    for f in shown:
        assert not f.find_all(lambda n: n.tag == "img")
        assert f.find_all(lambda n: n.attrs.get("data-why") == "source removed: no picture kept")


def test_a_run_whose_clips_all_last_as_long_writes_its_report(tmp_path):
    """Four 2.4 s shots at 25 fps, one dropped as too dark: the kept durations (rounded)
    and the dropped one (end minus start, 2.4000000000000004) were a rounding apart, the
    duration histogram raised, and the run ended without report.html."""
    from clipfactory.testing.synth import ShotSpec, write_video

    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "v.mp4", [ShotSpec(60, "texture", 1), ShotSpec(60, "texture", 4),
                                ShotSpec(60, "dark", 2), ShotSpec(60, "texture", 3)],
                width=160, height=96, fps=25)
    out = tmp_path / "out"
    run(src, out, Config(workers=1))
    assert len(_index(out)) == 3 and [r["reason"] for r in _rejected(out)] == ["too_dark"]
    plot = next(iter(_page(out).find_all(lambda n: n.attrs.get("data-plot") == "duration")))
    bars = [b for b in plot.find_all(lambda n: n.tag == "rect" and _has_class(n, "bar"))
            if b.attrs["data-count"] != "0"]
    assert sorted((b.attrs["data-series"], b.attrs["data-count"]) for b in bars) == [
        ("dropped", "1"), ("kept", "3")]


def test_a_clip_whose_source_was_replaced_under_its_id_gets_new_pictures(tmp_path):
    """A manifest id's file replaced by another video with the same shot lengths: the new
    clips have the old clip ids, and the report showed the old content's cached strips."""
    from clipfactory.testing.synth import ShotSpec, write_video

    src = tmp_path / "in"
    src.mkdir()
    # two kept shots and a static one, dropped: its strip is made from the source
    write_video(src / "v.mp4", [ShotSpec(60, "texture", 1), ShotSpec(60, "texture", 2),
                                ShotSpec(60, "static", 3)])
    manifest = src / "m.jsonl"
    manifest.write_text('{"id": "v", "path": "v.mp4"}\n', encoding="utf-8")
    out = tmp_path / "out"
    cfg = Config(workers=1)

    def figures():
        found = {}
        for f in _page(out).find_all(lambda n: n.tag == "figure"):
            imgs = f.find_all(lambda n: n.tag == "img")
            found.setdefault(f.attrs["data-clip"], []).append(
                _strip(out / imgs[0].attrs["src"]).mean(axis=(0, 1)) if imgs else None)
        return found

    run(manifest, out, cfg)
    before = figures()
    assert len(before) == 3 and all(v[0] is not None for v in before.values())
    dark = src / "dark.mp4"  # the same shot lengths, another picture
    write_video(dark, [ShotSpec(60, "texture", 7), ShotSpec(60, "texture", 8),
                       ShotSpec(60, "static", 9)])
    dark.replace(src / "v.mp4")
    run(manifest, out, cfg)
    after = figures()
    assert set(after) == set(before)  # the same clip ids
    rows = {r["clip_id"]: r for r in _index(out)}
    assert len(rows) == 2 and set(rows) < set(before)  # and one dropped clip's strip
    for cid, shown in after.items():
        assert len(shown) == 1 and shown[0] is not None
        assert np.abs(shown[0] - before[cid][0]).max() > 10, cid  # not the old content


@pytest.mark.parametrize("keep", [True, False])
def test_a_dropped_clip_of_a_url_is_shown_from_the_kept_download(tmp_path, keep):
    """With fetch.keep_sources the fetched copy is there: a dropped clip of a URL source gets
    its strip from it (it said "source gone (remote; the fetched copy was deleted)")."""
    from clipfactory.testing.loopback import LoopbackServer
    from clipfactory.testing.synth import ShotSpec, write_video

    write_video(tmp_path / "v.mp4", [ShotSpec(75, "texture", 1), ShotSpec(60, "static", 2)],
                width=160, height=96, gop=30)
    cfg = Config(workers=1)
    cfg.fetch.allow_private_network, cfg.fetch.keep_sources = True, keep
    out = tmp_path / "out"
    with LoopbackServer() as srv:
        url = srv.add("/v.mp4", (tmp_path / "v.mp4").read_bytes())
        (tmp_path / "m.jsonl").write_text(f'{{"url": "{url}", "id": "v"}}\n')
        run(tmp_path / "m.jsonl", out, cfg)
    dropped = {r["clip_id"] for r in _rejected(out) if r["kind"] == "clip"}
    assert dropped
    figs = [f for f in _page(out).find_all(lambda n: n.tag == "figure")
            if f.attrs.get("data-clip") in dropped]
    assert figs
    for f in figs:
        imgs = f.find_all(lambda n: n.tag == "img")
        if keep:
            assert imgs and _strip(out / imgs[0].attrs["src"]).std() > 1  # a picture
        else:
            [ph] = f.find_all(lambda n: _has_class(n, "placeholder"))
            assert ph.attrs["data-why"].startswith("source gone (remote")


def test_a_null_score_is_shown_not_a_crash(tmp_path):
    """The index's scores are a map of nullable doubles: an index written by another tool may
    hold a null, and the report died on it (TypeError)."""
    import pyarrow as pa

    from clipfactory.testing.synth import ShotSpec, write_video

    (tmp_path / "in").mkdir()
    write_video(tmp_path / "in" / "v.mp4", [ShotSpec(75, "texture", 1)], width=160, height=96,
                gop=30)
    out = tmp_path / "out"
    run(tmp_path / "in", out, Config(workers=1))
    shutil.rmtree(out / "index")  # the report reads index.parquet, the one file edited
    t = pq.read_table(out / "index.parquet")
    rows = t.to_pylist()
    rows[0]["scores"] = [(k, None if k == "motion.mean" else v) for k, v in rows[0]["scores"]]
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), out / "index.parquet")
    assert main(["report", str(out)]) == 0
    [card] = [f for f in _page(out).find_all(lambda n: n.tag == "figure")
              if f.attrs.get("data-clip") == rows[0]["clip_id"]]
    assert "motion.mean" in card.all_text() and "none" in card.all_text()
