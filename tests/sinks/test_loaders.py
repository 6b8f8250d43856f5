"""Loaders that just work: the shards read with ``webdataset`` and Hugging Face ``datasets``, the
index with pandas and pyarrow, in the flat and the bucketed layout; and the loading lines the
card prints (the same as docs/loaders.md) run as printed."""

from __future__ import annotations

import glob
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import pandas as pd
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from clipfactory.sinks.card_media import loading_lines
from clipfactory.sinks.stats import kept_stats

DOCS = Path(__file__).resolve().parents[2] / "docs" / "loaders.md"
ONE_BUCKET = "90p_16x9_0-3s"  # land's short clip and vp9 (see conftest)


@pytest.fixture(params=["flat", "bucketed"])
def out(request) -> Path:
    return request.getfixturevalue(f"{request.param}_out")


def _index(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out / "index.parquet").to_pylist()
    return {r["key"]: {**r, "scores": dict(r["scores"])} for r in rows}


def _frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as c:
        return sum(1 for _ in c.decode(video=0))


def _check_sample(key: str, mp4: bytes, meta: dict, txt: str | None,
                  index: dict[str, dict]) -> None:
    row = index[key]
    assert meta == row  # KEY.json is the index row, every column
    assert _frames(mp4) == row["num_frames"]
    assert txt == row["caption"]


def test_webdataset_reads_both_layouts(out):
    index = _index(out)
    shards = sorted(glob.glob(str(out / "shards" / "**" / "*.tar"), recursive=True))
    seen = []
    for s in wds.WebDataset(shards, shardshuffle=False).decode():
        assert set(s) - {"__key__", "__url__", "__local_path__"} == (
            {"mp4", "json", "txt"} if index[s["__key__"]]["caption"] else {"mp4", "json"})
        _check_sample(s["__key__"], s["mp4"], s["json"], s.get("txt"), index)
        assert Path(s["__url__"]).relative_to(out / "shards").as_posix() == \
            index[s["__key__"]]["shard"]
        seen.append(s["__key__"])
    assert sorted(seen) == sorted(index) and len(seen) == 5


def test_webdataset_brace_and_bucket_patterns(flat_out, bucketed_out):
    flat = wds.WebDataset(str(flat_out / "shards" / "shard-{000000..000002}.tar"),
                          shardshuffle=False).to_tuple("__key__", "mp4", "json")
    assert sorted(k for k, _, _ in flat) == sorted(_index(flat_out))
    index = _index(bucketed_out)
    one = sorted(glob.glob(str(bucketed_out / "shards" / ONE_BUCKET / "*.tar")))
    keys = [k for k, _ in wds.WebDataset(one, shardshuffle=False).to_tuple("__key__", "json")]
    assert sorted(keys) == sorted(k for k, r in index.items() if r["bucket"] == ONE_BUCKET)
    assert len(keys) == 2


@pytest.fixture
def hf(tmp_path, monkeypatch):
    """``datasets`` offline, its cache under tmp_path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # if datasets is imported here
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    return datasets, tmp_path / "hf"


def _features(datasets, out: Path, cache: Path):
    """The features the card's YAML header declares, the clip as bytes."""
    features = datasets.load_dataset_builder(str(out), cache_dir=str(cache)).info.features
    features["mp4"] = datasets.Video(decode=False)
    return features


@pytest.mark.parametrize("form", ["webdataset", "folder"])
def test_hf_datasets_reads_both_layouts(out, hf, form):
    datasets, cache = hf
    index = _index(out)
    if form == "webdataset":
        ds = datasets.load_dataset("webdataset", split="train", cache_dir=str(cache),
                                   data_files={"train": str(out / "shards/**/*.tar")},
                                   features=_features(datasets, out, cache))
    else:  # the folder: its card names the shards and declares the features
        ds = datasets.load_dataset(str(out), split="train", cache_dir=str(cache))
        ds = ds.cast_column("mp4", datasets.Video(decode=False))
    assert ds.num_rows == len(index) == 5
    assert set(ds.column_names) == {"__key__", "__url__", "json", "mp4", "txt"}
    for r in ds:
        _check_sample(r["__key__"], r["mp4"]["bytes"], r["json"], r["txt"], index)
    assert sorted(ds["__key__"]) == sorted(index)


def test_hf_datasets_streaming_and_one_bucket(bucketed_out, hf):
    datasets, cache = hf
    index = _index(bucketed_out)
    files = str(bucketed_out / "shards" / ONE_BUCKET / "*.tar")
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train",
                               streaming=True, cache_dir=str(cache),
                               features=_features(datasets, bucketed_out, cache))
    rows = list(ds)
    assert sorted(r["__key__"] for r in rows) == sorted(
        k for k, r in index.items() if r["bucket"] == ONE_BUCKET)
    for r in rows:
        assert r["json"]["bucket"] == ONE_BUCKET
        _check_sample(r["__key__"], r["mp4"]["bytes"], r["json"], r["txt"], index)


def test_hf_inference_without_declared_features_fails_as_documented(flat_out, hf):
    """Why the card declares features: inferred from the first shard, ``caption`` is typed
    null and the captioned clip of a later shard cannot be read (docs/loaders.md)."""
    datasets, cache = hf
    first = _index(flat_out)
    assert not any(r["caption"] for r in first.values() if r["shard"] == "shard-000000.tar")
    with pytest.raises(datasets.exceptions.DatasetGenerationError):
        datasets.load_dataset("webdataset", split="train", cache_dir=str(cache),
                              data_files={"train": str(flat_out / "shards/**/*.tar")})


def test_index_with_pandas_and_pyarrow(out):
    df = pd.read_parquet(out / "index.parquet")
    assert len(df) == 5 and {"bucket", "shard", "key", "video_codec", "pix_fmt"} <= set(df)
    per_shard = df.groupby("shard").size().to_dict()
    on_disk = {}
    for p in (out / "shards").rglob("*.tar"):
        with tarfile.open(p) as t:
            on_disk[p.relative_to(out / "shards").as_posix()] = len(
                {m.name.split(".")[0] for m in t})
    assert per_shard == on_disk
    bucketed = df["bucket"].notna().any()
    assert bucketed == any(p.is_dir() for p in (out / "shards").iterdir())
    if bucketed:
        assert (df["bucket"] == df["shard"].str.split("/").str[0]).all()
        t = pq.read_table(out / "index.parquet", filters=[("bucket", "==", ONE_BUCKET)])
        assert t.num_rows == 2
        assert set(t.column("shard").to_pylist()) == {f"{ONE_BUCKET}/shard-000000.tar"}
    else:
        assert df["bucket"].isna().all()


def _card_code(out: Path) -> str:
    card = (out / "README.md").read_text()
    m = re.search(r"## Loading\n.*?```python\n(.*?)```", card, re.S)
    assert m, "the card has no loading lines"
    return m.group(1)


def test_card_loading_lines_run_as_printed(out, tmp_path):
    """The card's code, run from the dataset folder, offline, then checked."""
    index = _index(out)
    check = ("\nimport json\n"
             "print(json.dumps({'wds': sorted(k for k, _, _ in ds),"
             " 'hf': sorted(r['__key__'] for r in hf), 'index': sorted(index['key']),"
             " 'last': [key, len(frames), frames[0].shape[:2]]}))\n")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    proc = subprocess.run([sys.executable, "-c", _card_code(out) + check], cwd=out, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["wds"] == got["hf"] == got["index"] == sorted(index)
    key, n, (h, w) = got["last"]
    assert (n, h, w) == (index[key]["num_frames"], index[key]["height"], index[key]["width"])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before


def test_docs_show_the_cards_loading_lines():
    docs = DOCS.read_text()
    lines = loading_lines(kept_stats([]))
    code = "\n".join(lines[lines.index("```python") + 1:-2])
    assert code in docs


def test_card_features_cover_odd_score_names_and_missing_captions(tmp_path, hf):
    """Score names with spaces, dots and colons, a score only some clips have, a caption only on
    a later clip: the declared features read every sample (no inference to trip over)."""
    from clipfactory.records import ClipRecord
    from clipfactory.sinks.hf_card import front_matter
    from clipfactory.sinks.refresh import sample_metadata
    from clipfactory.sinks.shards import ShardWriter

    datasets, cache = hf
    kept = []
    for i in range(7):  # more than the five samples datasets would infer from
        c = ClipRecord(f"c{i}", f"c{i}", "k", "v", "s", 0, 10, 0.0, 1.0, 10.0, 64, 64,
                       shard="shard-000000.tar", scores={"motion.mean": float(i)})
        if i % 2:
            c.scores["category.city street: night"] = 0.5
        if i == 6:
            c.extra.update(caption="late caption", caption_model="m", caption_status="ok")
        kept.append(c)
    with ShardWriter(tmp_path / "ds" / "shards") as w:
        for c in kept:
            w.add(c.key, {"mp4": b"not decoded here", **sample_metadata(c)})
    (tmp_path / "ds" / "README.md").write_text("\n".join([*front_matter(kept_stats(kept)), "# card", ""]))
    ds = datasets.load_dataset(str(tmp_path / "ds"), split="train", cache_dir=str(cache))
    ds = ds.cast_column("mp4", datasets.Video(decode=False))
    rows = {r["__key__"]: r for r in ds}
    assert sorted(rows) == [c.key for c in kept]
    assert rows["c6"]["txt"] == "late caption" and rows["c6"]["json"]["caption"] == "late caption"
    assert rows["c0"]["txt"] is None and rows["c0"]["json"]["caption"] is None
    assert rows["c1"]["json"]["scores"] == {"motion.mean": 1.0,
                                            "category.city street: night": 0.5}
    assert rows["c2"]["json"]["scores"] == {"motion.mean": 2.0,
                                            "category.city street: night": None}
    assert rows["c3"]["mp4"]["bytes"] == b"not decoded here"
