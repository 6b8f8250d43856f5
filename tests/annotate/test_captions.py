"""Captions end to end against a real OpenAI-compatible server on 127.0.0.1 whose answer
depends on the frames it receives: each clip gets the caption of its own frames, faults are
recorded per clip and retried by the next run, long clips get windows, and `clipfactory
caption` adds captions to an existing dataset by rewriting its shards."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("PIL")

from clipfactory.annotate.after import caption_dataset
from clipfactory.annotate.caption_frames import encode_jpeg, read_caption_frames
from clipfactory.cli import main
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.provenance.takedown import takedown, takedown_rules
from clipfactory.stages.base import ClipInput
from clipfactory.testing.killpoint import check_every_kill, kill_point_script
from clipfactory.testing.synth import ShotSpec, write_video
from clipfactory.testing.vlm_server import VLMServer, describe_images

KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("cap_corpus")
    for v in range(3):
        write_video(d / f"v{v}.mp4", [ShotSpec(66, "texture", 10 * v + 1),
                                      ShotSpec(72, "texture", 10 * v + 2)], gop=30)
    return d


@pytest.fixture
def server():
    with VLMServer() as s:
        yield s


def _cfg(server, **captions) -> Config:
    c = {"backend": "openai", "base_url": server.base_url, "model": "fake-vlm", "fps": 1,
         "max_frames": 4, "max_side": 96, "batch": 2, "concurrency": 2, "max_attempts": 3,
         "backoff_base_s": 0.05, **captions}
    return Config.model_validate({"workers": 1, "annotate": {"captions": c}})


def _index(out):
    return {r["clip_id"]: r for r in pq.read_table(out / "index.parquet").to_pylist()}


def _expected(out, row, cfg) -> str:
    """What the server must have answered for this clip: its own frames, as sent."""
    c = cfg.annotate.captions
    clip = ClipInput(row["clip_id"], str(out / "shards" / row["shard"]), f"{row['key']}.mp4",
                     num_frames=row["num_frames"], fps=row["fps"])
    cf = read_caption_frames(clip, c.fps, c.max_frames, c.max_side)
    return describe_images([encode_jpeg(f) for f in cf.overview])


def _member(out, row, ext):
    with tarfile.open(out / "shards" / row["shard"]) as tar:
        return tar.extractfile(f"{row['key']}.{ext}").read()


def test_each_clip_gets_the_caption_of_its_own_frames(corpus, server, tmp_path, monkeypatch):
    monkeypatch.setenv("CF_TEST_KEY", KEY)
    server.api_key = KEY
    out = tmp_path / "out"
    cfg = _cfg(server, api_key_env="CF_TEST_KEY", prompt="one_sentence")
    s = run(corpus, out, cfg)
    index = _index(out)
    assert len(index) == 6
    captions = set()
    for row in index.values():
        assert row["caption_status"] == "ok" and row["caption_model"] == "fake-vlm"
        assert row["caption"] == _expected(out, row, cfg)
        assert _member(out, row, "txt").decode() == row["caption"]
        assert json.loads(_member(out, row, "json"))["caption"] == row["caption"]
        captions.add(row["caption"])
    assert len(captions) == 6  # six clips, six different pictures
    sent = [r for r in server.requests if r["path"].endswith("/chat/completions")]
    assert len(sent) == 6 and all(r["headers"].get("Authorization") == f"Bearer {KEY}"
                                  for r in sent)
    assert sent[0]["body"]["temperature"] == 0.1 and sent[0]["body"]["max_tokens"] == 512
    assert s["annotations"]["captions"]["by_status"] == {"ok": 6}
    card = (out / "README.md").read_text()
    assert "Captioned by `fake-vlm`" in card and "Describe this video in one sentence" in card
    for f in ("README.md", "summary.json", "run.log"):  # the key itself is written nowhere
        assert KEY not in (out / f).read_text()
    db = sqlite3.connect(out / "ledger.sqlite")
    assert not any(KEY in (v or "") for (v,) in db.execute("SELECT value FROM meta"))
    db.close()
    assert audit(out).ok


def test_faults_are_kept_with_the_clip_and_retried_next_run(corpus, server, tmp_path):
    out = tmp_path / "out"
    server.script = [("status", 429, 0.3), ("status", 500), ("truncated",)]
    cfg = _cfg(server, max_attempts=1, concurrency=1, batch=1)
    s = run(corpus, out, cfg)
    index = _index(out)
    assert len(index) == 6  # no caption failure drops a clip
    status = sorted(r["caption_status"] for r in index.values())
    assert status == ["error:http_500", "error:rate_limited", "ok", "ok", "ok", "truncated"] \
        or status == ["error:http_429", "error:http_500", "ok", "ok", "ok", "truncated"]
    failed = [r for r in index.values() if r["caption_status"].startswith("error:")]
    assert all(r["caption"] is None for r in failed)
    assert sum(s["annotations"]["failed_by_reason"].values()) == 2
    truncated = next(r for r in index.values() if r["caption_status"] == "truncated")
    assert truncated["caption"]
    before = len(server.requests)
    s = run(corpus, out, cfg)  # the two failures, and only they, are captioned again
    assert len(server.requests) - before == 2
    index = _index(out)
    assert sorted(r["caption_status"] for r in index.values()) == ["ok"] * 5 + ["truncated"]
    for r in index.values():
        assert json.loads(_member(out, r, "json"))["caption_status"] == r["caption_status"]
    assert audit(out).ok


def test_retries_inside_a_run_recover(corpus, server, tmp_path):
    out = tmp_path / "out"
    server.script = [("status", 503), ("status", 429, 0.2), ("slow", 0.1)]
    run(corpus, out, _cfg(server, max_attempts=3, concurrency=1))
    assert {r["caption_status"] for r in _index(out).values()} == {"ok"}
    assert len(server.requests) == 6 + 2  # two retries


def test_long_clips_get_windows_and_video_mode(corpus, server, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(server, fps=2, max_frames=2)  # clips of 2.2-2.4 s: 4 samples, 2 windows
    run(corpus, out, cfg)
    for row in _index(out).values():
        extra = json.loads(row["extra"])
        wins = extra["caption_windows"]
        assert len(wins) == 2 and wins[0]["start_s"] == 0.0 and wins[1]["end_s"] > wins[0]["end_s"]
        assert all(w["status"] == "ok" and w["caption"].startswith("frame 1:") for w in wins)
        assert row["caption"].count("frame ") == 2
    assert len(server.requests) == 6 * 3
    # captioned again without windows (another model, or `windows: false`): the first
    # model's windows go with its captions, from the index and from each KEY.json
    caption_dataset(out, _cfg(server, fps=2, max_frames=2, windows=False).annotate.captions,
                    force=True)
    assert len(server.requests) == 6 * 3 + 6  # one request a clip: no windows
    for row in _index(out).values():
        assert "caption_windows" not in json.loads(row["extra"])
        assert "caption_windows" not in _member(out, row, "json").decode()
    out2 = tmp_path / "video"
    run(corpus, out2, _cfg(server, send="video", windows=False))
    assert all(r["caption"].startswith("a video of ") for r in _index(out2).values())


def test_caption_an_existing_dataset_after_the_fact(corpus, server, tmp_path, capsys):
    out = tmp_path / "out"
    run(corpus, out, Config(workers=1))
    before = _index(out)
    assert all(r["caption"] is None for r in before.values())
    cfg_file = tmp_path / "cap.yaml"
    cfg_file.write_text(
        "annotate:\n  captions:\n    backend: openai\n"
        f"    base_url: {server.base_url}\n    model: fake-vlm\n    fps: 1\n"
        "    max_frames: 4\n    max_side: 96\n")
    assert main(["caption", str(out), "--config", str(cfg_file)]) == 0
    assert "6 ok" in capsys.readouterr().out
    after = _index(out)
    cfg = _cfg(server)
    for cid, row in after.items():
        assert row["caption"] == _expected(out, row, cfg)
        assert _member(out, row, "txt").decode() == row["caption"]
        assert row["file_sha256"] == before[cid]["file_sha256"]  # the clip bytes unchanged
    assert audit(out).ok  # shard hashes re-registered after the rewrite
    n = len(server.requests)
    assert main(["caption", str(out), "--config", str(cfg_file)]) == 0
    assert len(server.requests) == n  # nothing left to caption
    assert main(["caption", str(out), "--config", str(cfg_file), "--force"]) == 0
    assert len(server.requests) == n + 6
    # a takedown removes the captions with the clips, from the ledger too
    takedown(out, takedown_rules(sources=[str(corpus / "v0.mp4")]), "request")
    db = sqlite3.connect(out / "ledger.sqlite")
    gone = [json.loads(r[0]) for r in db.execute(
        "SELECT record FROM clips WHERE stage = 'takedown'")]
    db.close()
    assert len(gone) == 2 and all("caption" not in r["extra"] for r in gone)
    assert audit(out).ok


_SCRIPT = """
import sys
from clipfactory.annotate.after import caption_dataset
from clipfactory.config import CaptionConfig
if __name__ == "__main__":
    caption_dataset(sys.argv[1], CaptionConfig(backend="openai", base_url=sys.argv[2],
                    model="fake-vlm", fps=1, max_frames=4, max_side=96, batch=1, concurrency=1))
"""


def test_a_killed_caption_run_does_not_recaption_what_is_done(corpus, server, tmp_path):
    out = tmp_path / "out"
    run(corpus, out, Config.model_validate({"workers": 1, "annotate": {"part_rows": 1}}))
    db = sqlite3.connect(out / "ledger.sqlite")
    db.execute("UPDATE meta SET value = json_set(value, '$.annotate.part_rows', 1)"
               " WHERE key = 'config'")
    db.commit()
    db.close()
    server.delay_s = 0.4
    script = tmp_path / "cap.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), str(out), server.base_url], env=env,
                            start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        db = sqlite3.connect(out / "ledger.sqlite", timeout=5)
        done = db.execute("SELECT COUNT(*) FROM annotations WHERE status = 'ok'").fetchone()[0]
        db.close()
        if done >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(server.requests)
    server.delay_s = 0.0
    proc = subprocess.run([sys.executable, str(script), str(out), server.base_url], env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(server.requests) - first <= 6 - 2  # what was committed is not asked again
    assert {r["caption_status"] for r in _index(out).values()} == {"ok"}
    assert audit(out).ok
    assert Path(out / "index.parquet").is_file()


def test_transformers_backend_captions_every_clip(corpus, tmp_path, capsys):
    pytest.importorskip("transformers")
    from clipfactory.testing.vlms import make_tiny_qwen2vl

    model = make_tiny_qwen2vl(tmp_path / "tiny-qwen2vl")
    cfg = Config.model_validate({"workers": 1, "annotate": {"captions": {
        "backend": "transformers", "model": str(model), "device": "cpu", "fps": 1,
        "max_frames": 2, "max_side": 64, "batch": 3,
        "params": {"temperature": 1.0, "max_tokens": 6, "seed": 0}}}})
    out = tmp_path / "out"
    run(corpus, out, cfg)
    index = _index(out)
    assert len(index) == 6
    for row in index.values():
        assert row["caption_status"] in ("ok", "truncated")
        assert row["caption_model"] == str(model) and isinstance(row["caption"], str)
    assert "truncated" in {r["caption_status"] for r in index.values()}  # 6 tokens: cut short
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"annotate:\n  captions:\n    backend: transformers\n    model: {model}\n")
    assert main(["models", "--config", str(cfg_file), "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    cap = next(r for r in rows if r["stage"] == "caption")
    assert cap["source"] == "folder" and cap["revision"].startswith("sha256:")
    bad = tmp_path / "c2.yaml"
    bad.write_text("annotate:\n  captions:\n    backend: transformers\n"
                   f"    model: {tmp_path / 'missing'}\n")
    assert main(["models", "--config", str(bad)]) == 2


def test_models_probes_the_caption_server(tmp_path, capsys):
    with VLMServer() as s:
        cfg = tmp_path / "c.yaml"
        cfg.write_text("annotate:\n  captions:\n    backend: openai\n"
                       f"    base_url: {s.base_url}\n    model: fake-vlm\n")
        assert main(["models", "--config", str(cfg)]) == 0
        assert "status   ok" in capsys.readouterr().out
    assert main(["models", "--config", str(cfg)]) == 2  # the server is gone
    assert "does not answer" in capsys.readouterr().out


# `clipfactory caption` killed on the N-th call of one function (argv: point, N, output, url)
_CAPTION_KILLER = kill_point_script("""
from clipfactory.annotate.after import caption_dataset
from clipfactory.config import CaptionConfig
caption_dataset(sys.argv[3], CaptionConfig(backend="openai", base_url=sys.argv[4],
                model="fake-vlm", fps=1, max_frames=4, max_side=96, batch=2, concurrency=1))
""")


def _captioned(out: Path) -> dict:
    """What captioning changes: the index's captions, every sample's KEY.json and KEY.txt, the
    full audit."""
    index = sorted((r["clip_id"], r["caption_status"], r["caption"], r["file_sha256"])
                   for r in _index(out).values())
    members = {}
    for shard in sorted((out / "shards").rglob("*.tar")):
        with tarfile.open(shard) as t:
            for m in t.getmembers():
                if m.name.endswith((".json", ".txt")):
                    members[m.name] = t.extractfile(m).read()  # type: ignore[union-attr]
    return {"index": index, "members": members,
            "audit": [p.kind for p in audit(out, full=True).problems]}


@pytest.mark.slow  # every write of `clipfactory caption` killed in turn: ~20 s each
@pytest.mark.parametrize("point", ["os:replace", "clipfactory.ledger:Ledger.transaction",
                                   "clipfactory.ledger:Ledger.set_meta"])
def test_caption_killed_at_every_step_is_finished_by_the_next(corpus, server, tmp_path, point):
    """Killed before each of its file renames (shards, parts), ledger transactions or meta
    writes in turn, `clipfactory caption` run again gives the dataset of a caption never
    killed."""
    base = tmp_path / "base"
    run(corpus, base, Config.model_validate({"workers": 1, "shards": {"max_count": 2}}))
    cc = _cfg(server, batch=2, concurrency=1).annotate.captions

    def caption(out: Path) -> None:
        caption_dataset(out, cc)

    kills = check_every_kill(_CAPTION_KILLER, point, base, tmp_path / "k",
                             args=lambda o: [str(o), server.base_url], command=caption,
                             finish=caption, state=_captioned)
    assert kills, f"caption never called {point}"
    done = _captioned(tmp_path / "k" / "done")
    assert {r[1] for r in done["index"]} == {"ok"} and done["audit"] == []
