"""The report of a dataset laid out in parts only (no ``index.parquet``/``rejected.parquet``),
read whole and, past ``max_rows``, as a fixed sample of its parts: the page says what the
charts cover, every count still comes from ``summary.json``, and the galleries still show
real thumbnails (a dedup keeper whose part was not read is looked up through the ledger)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.report import build_report
from clipfactory.sinks.parts import INDEX_DIR, REJECTED_DIR, index_part, write_part
from tests.report.htmltree import parse


@pytest.fixture(scope="module")
def curated(report_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_sample_out")
    run(report_corpus, out, Config(workers=2))
    return out


def _rank(name: str) -> bytes:  # as the report ranks parts
    return hashlib.blake2b(name.encode(), digest_size=8).digest()


def _first_name(folder: str, stem: str, beats: list[str]) -> str:
    """A part name (``stem-N.parquet``) the report ranks before the parts named ``beats``."""
    low = min(_rank(f"{folder}/{b}") for b in beats)
    return next(n for i in range(1000) if _rank(f"{folder}/{(n := f'{stem}-{i}.parquet')}") < low)


def _tables(out):
    """Every index and rejected row, from whichever layout finalize wrote."""
    def read(name):
        folder = out / name
        if folder.is_dir():
            return pa.concat_tables([pq.read_table(p) for p in sorted(folder.rglob("*.parquet"))])
        return pq.read_table(out / f"{name}.parquet")
    return read(INDEX_DIR), read(REJECTED_DIR)


@pytest.fixture
def parts_only(curated, tmp_path):
    """A copy laid out in parts only. The index is split in two: the row of the first kept
    clip in its shard's own part, the other in a part ranked before it. The near duplicates
    make the rejected part ranked first; every other rejected row has a part of its own."""
    out = tmp_path / "out"
    shutil.copytree(curated, out)
    index, rejected = _tables(out)
    assert index.num_rows == 2 and len(set(index.column("shard").to_pylist())) == 1
    for p in ("index.parquet", "rejected.parquet"):
        (out / p).unlink(missing_ok=True)
    shutil.rmtree(out / INDEX_DIR, ignore_errors=True)
    shutil.rmtree(out / REJECTED_DIR, ignore_errors=True)
    own = index_part(out, index.column("shard")[0].as_py())
    write_part(index.slice(0, 1), own)
    other = _first_name(INDEX_DIR, "shard-000000-b", [own.relative_to(out / INDEX_DIR).as_posix()])
    write_part(index.slice(1, 1), out / INDEX_DIR / other)
    is_dup = pc.is_valid(rejected.column("duplicate_of"))
    rest = rejected.filter(pc.invert(is_dup))
    names = [f"part-{i + 1:06d}.parquet" for i in range(rest.num_rows)]
    write_part(rejected.filter(is_dup), out / REJECTED_DIR / _first_name(REJECTED_DIR,
                                                                         "part-dup", names))
    for i, n in enumerate(names):
        write_part(rest.slice(i, 1), out / REJECTED_DIR / n)
    return out


def _page(out):
    root, errors = parse((out / "report.html").read_text(encoding="utf-8"))
    assert errors == []
    return root


def _figures(n):
    return n.find_all(lambda x: x.tag == "figure")


def test_parts_only_are_read_whole_below_max_rows(parts_only):
    r = build_report(parts_only)
    assert (r.kept, r.dropped) == (2, 8)
    root = _page(parts_only)
    assert not root.find_all(lambda n: n.attrs.get("id") == "sampled")
    [kept] = root.find_all(lambda n: n.attrs.get("id") == "kept")
    assert kept.attrs["data-count"] == "2" and len(_figures(kept)) == 2
    summary = json.loads((parts_only / "summary.json").read_text())
    reasons = {n.attrs["data-reason"]: int(n.attrs["data-count"])
               for n in root.find_all(lambda n: n.attrs.get("data-kind") == "clip")}
    assert reasons == summary["counts"]["dropped_by_reason"]
    assert "Counts and charts cover every row." in root.all_text()


def test_past_max_rows_the_page_says_it_shows_a_sample(parts_only):
    r = build_report(parts_only, max_rows=1)
    assert (r.kept, r.dropped) == (2, 8) and r.placeholders == 0
    root = _page(parts_only)
    summary = json.loads((parts_only / "summary.json").read_text())
    [note] = root.find_all(lambda n: n.attrs.get("id") == "sampled")
    text = " ".join(note.all_text().split())
    assert "1 of 2 kept clips (1 of 2 index parts)" in text
    assert "2 of 9 rejected rows (1 of 8 parts)" in text and "summary.json" in text
    [plots] = root.find_all(lambda n: n.attrs.get("id") == "plots")
    assert plots.find_all(lambda n: n.attrs.get("data-coverage") == "sample")
    assert "Counts are exact; charts and galleries cover a sample" in root.all_text()
    # counts from the summary: every reason, also those with no row read
    sections = {(n.attrs["data-kind"], n.attrs["data-reason"]): n
                for n in root.find_all(lambda n: "data-reason" in n.attrs)}
    assert {r: int(n.attrs["data-count"]) for (k, r), n in sections.items() if k == "clip"} \
        == summary["counts"]["dropped_by_reason"]
    assert int(sections["video", "probe/not_a_media_file"].attrs["data-count"]) == 1
    assert "none: not in the rows read" in sections["clip", "filter/too_dark"].all_text()
    shown = _figures(sections["clip", "dedup/near_duplicate"])
    assert len(shown) == 2 and all(f.find_all(lambda n: n.tag == "img") for f in shown)
    [kept] = root.find_all(lambda n: n.attrs.get("id") == "kept")
    assert kept.attrs["data-count"] == "2" and len(_figures(kept)) == 1
    # both keepers shown with their picture: one from the rows read, one looked up
    groups = root.find_all(lambda n: "data-keeper" in n.attrs)
    assert len(groups) == 2
    for g in groups:
        keeper = [f for f in _figures(g) if "keeper" in f.attrs["class"].split()]
        assert len(keeper) == 1 and keeper[0].find_all(lambda n: n.tag == "img")
    for img in root.find_all(lambda n: n.tag == "img"):
        assert (parts_only / img.attrs["src"]).read_bytes()[:2] == b"\xff\xd8"


def test_a_compacted_index_is_sampled_by_row_group(parts_only):
    """An older folder: ``index.parquet`` and ``rejected.parquet`` only, one row a group."""
    index, rejected = _tables(parts_only)
    for name, table in (("index", index), ("rejected", rejected)):
        shutil.rmtree(parts_only / name)
        pq.write_table(table, parts_only / f"{name}.parquet", row_group_size=1)
    r = build_report(parts_only, max_rows=1)
    assert (r.kept, r.dropped) == (2, 8) and r.placeholders == 0
    root = _page(parts_only)
    [note] = root.find_all(lambda n: n.attrs.get("id") == "sampled")
    text = " ".join(note.all_text().split())
    assert "1 of 2 kept clips (1 of 2 row groups of index.parquet)" in text
    assert "1 of 9 rejected rows (1 of 9 row groups of rejected.parquet)" in text
    [kept] = root.find_all(lambda n: n.attrs.get("id") == "kept")
    assert len(_figures(kept)) == 1 and _figures(kept)[0].find_all(lambda n: n.tag == "img")


def test_the_report_bench_times_a_page_over_the_rows_it_asks_for(curated, tmp_path):
    """``python -m clipfactory.bench.report``'s stand-in for a large dataset: the report built
    on it counts and samples the repeated rows, not the parts the run wrote."""
    from clipfactory.bench.report import repeat_rows

    dst = tmp_path / "x300"
    repeat_rows(curated, dst, 300)
    assert not (dst / INDEX_DIR).exists() and not (dst / REJECTED_DIR).exists()
    r = build_report(dst, per_reason=2, kept=5, groups=1)
    assert (r.kept, r.dropped) == (300, 300)
    index = pq.read_table(dst / "index.parquet")
    assert index.num_rows == 300 and len(set(index.column("clip_id").to_pylist())) == 300
    counts = json.loads((dst / "summary.json").read_text())["counts"]
    assert sum(counts["dropped_by_reason"].values()) == 300
    assert r.made == r.shown - r.placeholders >= 5  # real thumbnails of the repeated rows
