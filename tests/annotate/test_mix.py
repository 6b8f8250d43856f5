"""``clipfactory mix``: the share arithmetic (``parse_target``, ``plan_mix``) on constructed
numbers, then a real run categorised from its frames, mixed into a new folder that must keep
the run-output contract (shards, index, rejected, card, ledger, embeddings, audit)."""

from __future__ import annotations

import colorsys
import contextlib
import hashlib
import json
import math
import random
import re
import sqlite3
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipfactory.annotate.frames import sample_frames
from clipfactory.annotate.mix import UNFINISHED, MixError, parse_target, plan_mix, write_mix
from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.stages.base import ClipInput, ModelStage, Resources, StageOutput
from clipfactory.testing.killpoint import kill_point_script
from clipfactory.testing.synth import ShotSpec, write_video

# -- parse_target ---------------------------------------------------------------------------


def test_parse_target_reads_labels_and_shares():
    assert parse_target("driving=0.2,nature=0.3,other=0.5") == {
        "driving": 0.2, "nature": 0.3, "other": 0.5}
    assert parse_target(" driving = 0.25 , other=0.75 ,") == {"driving": 0.25, "other": 0.75}
    assert parse_target("a=0.333,b=0.333,c=0.334") == {"a": 0.333, "b": 0.333, "c": 0.334}
    assert issubclass(MixError, ValueError)


@pytest.mark.parametrize(("text", "message"), [
    ("driving=0.2,nature=0.3", "sum to 0.500, not 1"),
    ("driving=0.7,nature=0.7", "sum to 1.400, not 1"),
    ("", "sum to 0.000"),
    ("driving0.2,other=0.8", "'driving0.2' is not label=share"),
    ("=0.2,other=0.8", "'=0.2' is not label=share"),
    ("driving=lots,other=0.8", "'lots' is not a number"),
    ("driving=1.5,other=-0.5", "a share is in [0, 1]"),
    ("driving=nan,other=0.5", "a share is in [0, 1]"),
    ("a=0.5,a=0.5", "once per label"),
])
def test_parse_target_rejects_bad_text_saying_why(text, message):
    with pytest.raises(MixError) as e:
        parse_target(text)
    assert message in str(e.value)


def test_parse_target_short_of_one_suggests_other():
    with pytest.raises(MixError, match=re.escape("'other=...'")):
        parse_target("driving=0.2,nature=0.3")


# -- plan_mix -------------------------------------------------------------------------------


def test_plan_binding_category_is_exhausted():
    # totals each count allows: a 100/0.5 = 200, b 30/0.2 = 150, other 500/0.3 = 1666: b binds
    plan = plan_mix({"a": 100, "b": 30, "other": 500}, {"a": 0.5, "b": 0.2, "other": 0.3})
    assert plan == {"a": 75, "b": 30, "other": 45}


def test_plan_total_is_the_largest_the_counts_allow():
    counts, target = {"a": 100, "b": 30, "other": 500}, {"a": 0.5, "b": 0.2, "other": 0.3}
    assert sum(plan_mix(counts, target).values()) == 150
    # one clip fewer in the binding category lowers the total by 1 / 0.2 clips
    assert sum(plan_mix({**counts, "b": 29}, target).values()) == 145
    # more of a category that does not bind changes nothing
    assert plan_mix({**counts, "other": 10_000}, target) == plan_mix(counts, target)


def test_plan_max_clips_caps_the_total():
    counts, target = {"a": 100, "b": 30, "other": 500}, {"a": 0.5, "b": 0.2, "other": 0.3}
    assert plan_mix(counts, target, max_clips=40) == {"a": 20, "b": 8, "other": 12}
    assert plan_mix(counts, target, max_clips=10_000) == plan_mix(counts, target)
    assert plan_mix(counts, target, max_clips=0) == {"a": 0, "b": 0, "other": 0}


def test_plan_largest_remainders_get_the_spare_clips():
    # exact 3.15, 2.45, 1.4: floors 3, 2, 1 leave one clip, which goes to b (remainder .45)
    assert plan_mix({"a": 50, "b": 50, "c": 50}, {"a": 0.45, "b": 0.35, "c": 0.2},
                    max_clips=7) == {"a": 3, "b": 3, "c": 1}
    # exact 3.4, 3.3, 3.3: floors 3, 3, 3 leave one clip, for a
    assert plan_mix({"a": 50, "b": 50, "c": 50}, {"a": 0.34, "b": 0.33, "c": 0.33},
                    max_clips=10) == {"a": 4, "b": 3, "c": 3}


def test_plan_shares_within_one_clip_on_random_counts():
    rng = random.Random(7)
    for _ in range(500):
        labels = [f"c{i}" for i in range(rng.randint(1, 5))]
        weights = [rng.randint(1, 20) for _ in labels]
        target = {k: w / sum(weights) for k, w in zip(labels, weights, strict=True)}
        counts = {k: rng.randint(1, 300) for k in labels}
        cap = rng.choice([None, rng.randint(0, 200)])
        plan = plan_mix(counts, target, cap)
        total = min(math.floor(counts[k] / p + 1e-9) for k, p in target.items())
        total = total if cap is None else min(total, cap)
        assert sum(plan.values()) == total, (counts, target, cap, plan)
        for k, p in target.items():
            assert 0 <= plan[k] <= counts[k]
            assert abs(plan[k] - total * p) < 1, (counts, target, cap, plan)


def test_plan_zero_share_label_needs_no_clips():
    assert plan_mix({"a": 5}, {"a": 1.0, "b": 0.0}) == {"a": 5, "b": 0}


def test_plan_target_category_without_clips_is_an_error():
    with pytest.raises(MixError, match=r"no clips in categories \['b'\]"):
        plan_mix({"a": 10, "b": 0}, {"a": 0.5, "b": 0.5})
    with pytest.raises(MixError, match=r"\['b', 'c'\].*cannot be met"):
        plan_mix({"a": 10}, {"a": 0.4, "b": 0.3, "c": 0.3})


# -- end to end -----------------------------------------------------------------------------

CATEGORIES = ("driving", "nature", "city", "sports")  # hue quarters: red-yellow, green, blue...

# Each video: two texture shots, each a seed and the category its colours fall in. A texture's
# palette is centred on the hue 0.11 + 0.618 * seed (mod 1) (synth.py); these seeds put it
# within 0.02 of a quarter's middle, far from the quarters' edges.
VIDEOS = {
    "v0": ((13, "driving"), (15, "nature")),
    "v1": ((34, "driving"), (17, "city")),
    "v2": ((36, "nature"), (32, "sports")),
    "v3": ((49, "nature"), (51, "city")),
    "v4": ((70, "nature"), (53, "sports")),
    "v5": ((72, "city"), (87, "sports")),
    "v6": ((85, "city"), (108, "sports")),
    "v7": ((106, "city"), (121, "sports")),
    "v8": ((140, "city"), (142, "sports")),
}
LICENSES = ("CC-BY-4.0", "CC0")
TARGET = {"driving": 0.2, "nature": 0.3, "city": 0.5}  # sports is not in it


class HueStage(ModelStage):
    """Category from the hue of a clip's mean colour (read from its frames); the mean colour,
    normalised, as its vector."""

    name = "hue"
    batch_size = 4
    resources = Resources(cpus=0.5)
    model_id = "mean-hue"

    @property
    def revision(self) -> str:
        return "v1"

    def setup(self) -> None:
        pass

    def process_batch(self, clips: list[ClipInput]) -> list[StageOutput]:
        outs = []
        for c in clips:
            frames = sample_frames(c, 3, short_side=64)
            mean = np.mean([f.reshape(-1, 3).mean(axis=0) for f in frames], axis=0) / 255.0
            hue = colorsys.rgb_to_hsv(*mean)[0]
            vec = (mean + 0.1) / np.linalg.norm(mean + 0.1)
            outs.append(StageOutput(c.clip_id, vector=vec.astype(np.float32),
                                    scores={"hue.h": float(hue)},
                                    fields={"category": CATEGORIES[int(hue * 4) % 4]}))
        return outs


def _index(out: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}


def _members(shard: Path) -> dict[str, bytes]:
    with tarfile.open(shard) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def _vectors(out: Path) -> dict[str, list[float]]:
    parts = sorted((out / "embeddings").glob("part-*.parquet"))
    t = pa.concat_tables([pq.read_table(p) for p in parts])
    ids = t.column("clip_id").to_pylist()
    assert len(ids) == len(set(ids)), "a clip has two vectors"
    return dict(zip(ids, t.column("embedding").to_pylist(), strict=True))


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """A run of 9 two-shot videos (18 clips: driving 2, nature 4, city 6, sports 6), categorised
    by :class:`HueStage`, shards of 4 clips so that the mix spans several shards too."""
    d = tmp_path_factory.mktemp("mix_corpus")
    rows = []
    for i, (vid, shots) in enumerate(VIDEOS.items()):
        write_video(d / f"{vid}.mp4", [ShotSpec(66, "texture", shots[0][0]),
                                       ShotSpec(72, "texture", shots[1][0])],
                    width=160, height=90, gop=30)
        rows.append({"path": str(d / f"{vid}.mp4"), "id": vid, "author": f"Author {vid}",
                     "url": f"https://videos.example.org/v/{vid}", "license": LICENSES[i % 2]})
    manifest = d / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path_factory.mktemp("mix_src")
    cfg = Config(workers=1)
    cfg.shards.max_count = 4
    run(manifest, out, cfg, stages=[HueStage()])
    return out


@pytest.fixture(scope="module")
def dst(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mix_dst") / "mixed"
    write_mix(src, out, TARGET, seed=0)
    return out


def test_src_categories_come_from_the_frames(src):
    got = {(r["video_id"], r["start_frame"]): r["category"] for r in _index(src).values()}
    want = {(vid, start): shot[1] for vid, shots in VIDEOS.items()
            for start, shot in zip((0, 66), shots, strict=True)}
    assert got == want, "the corpus did not come out as planned (synth palettes changed?)"


def test_mix_meets_the_target_with_the_most_clips(src, dst):
    rows = _index(dst)
    counts = Counter(r["category"] for r in rows.values())
    for k, share in TARGET.items():
        assert counts[k] / len(rows) == pytest.approx(share, abs=0.02), counts
    available = Counter(r["category"] for r in _index(src).values())
    plan = plan_mix({k: available[k] for k in TARGET}, TARGET)
    assert plan == {"driving": 2, "nature": 3, "city": 5}  # driving binds: 2 / 0.2 = 10
    assert dict(counts) == plan and len(rows) == sum(plan.values())
    assert len({r["shard"] for r in rows.values()}) == 3  # 10 clips, 4 a shard


def test_mix_keeps_each_clips_provenance(src, dst):
    before = _index(src)
    same = ("video_id", "source", "source_url", "source_sha256", "start_frame", "end_frame",
            "start_s", "end_s", "license", "license_raw", "attribution", "file_sha256", "bytes",
            "key", "category", "exact_hash")
    for cid, r in _index(dst).items():
        assert cid in before
        assert {k: r[k] for k in same} == {k: before[cid][k] for k in same}
    assert {r["license_raw"] for r in _index(dst).values()} == set(LICENSES)


def test_mix_shards_hold_exactly_the_index_clips_byte_for_byte(src, dst):
    rows = _index(dst)
    src_bytes: dict[str, bytes] = {}
    for shard in sorted((src / "shards").glob("shard-*.tar")):
        src_bytes.update(_members(shard))
    seen: dict[str, str] = {}
    for shard in sorted((dst / "shards").iterdir()):
        members = _members(shard)
        keys = {n.rsplit(".", 1)[0] for n in members}
        assert set(members) == {f"{k}.{ext}" for k in keys for ext in ("mp4", "json")}
        for k in keys:
            meta = json.loads(members[f"{k}.json"])
            cid = meta["clip_id"]
            assert cid not in seen
            seen[cid] = shard.name
            mp4 = members[f"{k}.mp4"]
            assert mp4 == src_bytes[f"{k}.mp4"]
            assert hashlib.sha256(mp4).hexdigest() == rows[cid]["file_sha256"]
            assert meta["shard"] == shard.name == rows[cid]["shard"]
            assert meta["key"] == k == rows[cid]["key"]
    assert set(seen) == set(rows)


def test_mix_rejected_lists_the_left_out_clips(src, dst):
    rejected = [r for r in pq.read_table(dst / "rejected.parquet").to_pylist()
                if r["kind"] == "clip"]
    before, after = _index(src), _index(dst)
    assert {r["clip_id"] for r in rejected} == set(before) - set(after)
    assert {r["stage"] for r in rejected} == {"mix"}
    reasons = Counter((before[r["clip_id"]]["category"], r["reason"]) for r in rejected)
    assert reasons == {("nature", "over_target"): 1, ("city", "over_target"): 1,
                       ("sports", "not_in_target"): 6}


def test_mix_embeddings_are_the_chosen_clips_vectors(src, dst):
    kept, mixed = _vectors(src), _vectors(dst)
    assert set(mixed) == set(_index(dst))
    for cid, vec in mixed.items():
        assert vec == kept[cid]
    # the ledger's copies too (the audit reads the parts, not these rows)
    with contextlib.closing(sqlite3.connect(dst / "ledger.sqlite")) as db:
        for table in ("embeddings", "annotations"):
            ids = [r[0] for r in db.execute(f"SELECT clip_id FROM {table}")]
            assert sorted(ids) == sorted(mixed), table
        parts = {r[0] for r in db.execute("SELECT part FROM embeddings")}
    assert parts == {p.name for p in (dst / "embeddings").glob("part-*.parquet")}


def test_mix_card_states_target_and_achieved(dst):
    card = (dst / "README.md").read_text(encoding="utf-8")
    assert "## Category mix" in card
    for line in ("| driving | 20.0 % | 20.0 % | 2 | 2 |",
                 "| nature | 30.0 % | 30.0 % | 3 | 4 |",
                 "| city | 50.0 % | 50.0 % | 5 | 6 |"):
        assert line in card
    summary = json.loads((dst / "summary.json").read_text(encoding="utf-8"))
    assert summary["mix"]["target"] == TARGET and summary["mix"]["clips"] == 10


def test_mix_passes_the_audit(dst):
    report = audit(dst)
    assert report.ok, "\n".join(f"{p.kind}: {p.detail} ({p.shard}, {p.clip})"
                                for p in report.problems)


def test_mix_refuses_a_folder_that_is_not_empty(src, dst):
    index = (dst / "index.parquet").read_bytes()
    with pytest.raises(MixError, match="exists and is not empty"):
        write_mix(src, dst, TARGET)
    assert (dst / "index.parquet").read_bytes() == index


def test_mix_errors_write_nothing(src, tmp_path):
    with pytest.raises(MixError, match=r"no clips in categories \['ufo'\]"):
        write_mix(src, tmp_path / "a", {"driving": 0.5, "ufo": 0.5})
    assert not (tmp_path / "a").exists()
    with pytest.raises(MixError, match="not a clipfactory output"):
        write_mix(tmp_path, tmp_path / "b", TARGET)
    assert not (tmp_path / "b").exists()


def test_mix_same_seed_same_clips(src, tmp_path):
    def chosen(seed: int, name: str) -> set[str]:
        out = tmp_path / name
        write_mix(src, out, {"sports": 0.5, "city": 0.5}, max_clips=4, seed=seed)
        return set(_index(out))

    first = chosen(0, "s0")
    assert chosen(0, "s0-again") == first
    assert any(chosen(s, f"s{s}") != first for s in (1, 2, 3))


def test_cli_mix_bad_target_exits_2(src, tmp_path, capsys):
    out = tmp_path / "bad"
    rc = main(["mix", str(src), "--target", "driving=0.2,nature=0.3", "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "target shares sum to 0.500, not 1" in err and "other=" in err
    assert not out.exists()


def test_cli_mix_with_other(src, tmp_path, capsys):
    out = tmp_path / "good"
    rc = main(["mix", str(src), "--target", "driving=0.2,other=0.8", "--output", str(out),
               "--max-clips", "5", "--seed", "3"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert f"{out}: 5 clips" in printed
    assert "driving: target 20.0 %, achieved 20.0 % (1 of 2)" in printed
    assert "other: target 80.0 %, achieved 80.0 % (4 of 16)" in printed
    cats = Counter(r["category"] for r in _index(out).values())
    assert cats["driving"] == 1 and sum(cats.values()) == 5
    assert audit(out).ok


# -- a mix killed part-way ------------------------------------------------------------------

# argv: point, N, src, dst, target (JSON)
_KILLER = kill_point_script("""
import json
from clipfactory.annotate.mix import write_mix
write_mix(sys.argv[3], sys.argv[4], json.loads(sys.argv[5]), seed=0)
""")


def _dataset(out: Path) -> dict:
    shards = {s.relative_to(out).as_posix(): _members(s)
              for s in sorted((out / "shards").rglob("*.tar"))}
    rejected = sorted((r["clip_id"], r["reason"])
                      for r in pq.read_table(out / "rejected.parquet").to_pylist())
    index = sorted((r["clip_id"], r["shard"], r["file_sha256"], r["category"])
                   for r in _index(out).values())
    return {"index": index, "rejected": rejected, "shards": shards, "vectors": _vectors(out),
            "files": sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                            if p.is_file() and p.suffix != ".html" and "report" not in p.parts)}


@pytest.mark.slow  # a subprocess and a mix per kill point: ~3 s each
@pytest.mark.parametrize(("point", "call"), [
    ("clipfactory.annotate.mix:_mark_unfinished", 1),  # the folder and its lock only
    ("clipfactory.annotate.mix:_copy_shards", 1),  # the ledger's rows, no shard
    ("clipfactory.annotate.mix:rewrite_shard_members", 2),  # shards half relabelled
    ("clipfactory.annotate.mix:_copy_embeddings", 1),  # shards registered, no vectors
    ("clipfactory.pipeline:finalize", 1),  # all but the index and the card
])
def test_a_killed_mix_is_written_again_by_the_same_command(src, dst, tmp_path, point, call):
    out = tmp_path / "mixed"
    proc = subprocess.run([sys.executable, "-c", _KILLER, point, str(call), str(src),
                           str(out), json.dumps(TARGET)], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # it died where we said
    if point != "clipfactory.annotate.mix:_mark_unfinished":
        # another mix into the unfinished folder is refused, and touches nothing
        before = sorted(p.name for p in out.rglob("*"))
        with pytest.raises(MixError, match="unfinished mix with other parameters"):
            write_mix(src, out, TARGET, seed=1)
        assert sorted(p.name for p in out.rglob("*")) == before
        if (out / "ledger.sqlite").is_file():  # the audit says what the folder is
            assert "unfinished_mix" in {p.kind for p in audit(out).problems}
    write_mix(src, out, TARGET, seed=0)
    assert not (out / UNFINISHED).exists()
    assert _dataset(out) == _dataset(dst)
    assert audit(out).ok
    with pytest.raises(MixError, match="exists and is not empty"):  # finished: a dataset now
        write_mix(src, out, TARGET, seed=0)
