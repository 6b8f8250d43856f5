"""`clipfactory eval shots` on a tiny corpus: the corpus, the table, the JSON."""

from __future__ import annotations

import json

import pytest

from clipfactory.bench.shot_corpus import make_shot_corpus
from clipfactory.cli import main


def test_corpus_is_deterministic_reused_and_complete(tmp_path):
    a = make_shot_corpus(tmp_path / "a", videos=3, seconds=4, width=160, height=96)
    b = make_shot_corpus(tmp_path / "b", videos=3, seconds=4, width=160, height=96)
    assert a == b
    assert [v["path"] for v in a] == ["edit_000.mp4", "edit_001.webm", "edit_002.avi"]
    mtime = (tmp_path / "a" / "edit_000.mp4").stat().st_mtime_ns
    assert make_shot_corpus(tmp_path / "a", videos=3, seconds=4, width=160, height=96) == a
    assert (tmp_path / "a" / "edit_000.mp4").stat().st_mtime_ns == mtime  # reused, not rewritten
    for v in a:
        assert v["frames"] >= 4 * 30
        ends = [t["end_frame"] for t in v["transitions"]]
        assert ends == sorted(ends)
        assert {s["kind"] for s in v["shots"]} and v["shots"][0]["first"] == 0


def test_eval_prints_the_table_and_writes_json(tmp_path, capsys):
    systems = "builtin,content"
    try:
        import scenedetect  # noqa: F401

        systems += ",psd-content"
    except ImportError:
        pass
    assert main(["eval", "shots", "--workdir", str(tmp_path), "--videos", "2", "--seconds", "4",
                 "--width", "160", "--height", "96", "--systems", systems]) == 0
    out = capsys.readouterr().out
    assert "clipfactory builtin" in out and "F1 with a tolerance of 2 frames" in out
    data = json.loads((tmp_path / "shot_eval.json").read_text())
    rows = {r["system"]: r for r in data["systems"]}
    ours = rows["clipfactory builtin"]
    assert ours["fps_cpu"] > 0 and ours["detector_us_per_frame"] > 0
    assert set(ours["f1"]) == {"cut", "dissolve", "fade"}
    if "psd-content" in systems:
        assert "as fast end to end" in out


def test_unknown_system_is_refused(tmp_path, capsys):
    assert main(["eval", "shots", "--workdir", str(tmp_path), "--systems", "nope"]) == 2
    assert "unknown systems" in capsys.readouterr().err
    for bad in ("30", "40-30", "1-5", "a-b"):
        assert main(["eval", "shots", "--workdir", str(tmp_path), "--dissolve-frames", bad]) == 2
        assert "--dissolve-frames" in capsys.readouterr().err


def test_a_wrong_real_footage_argument_is_one_line_and_status_2(tmp_path, capsys):
    """A typo in --real, an empty folder, a file that is no segments list, --videos 0: each
    came out as a traceback (FileNotFoundError, ValueError, JSONDecodeError) and status 1."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    cases = [(["--real", str(tmp_path / "nope.json")], "no such file or folder"),
             (["--real", str(tmp_path / "empty")], "no real footage segments"),
             (["--real", str(tmp_path / "notes.txt")], "not a segments file"),
             (["--videos", "0"], "--videos must be at least 1")]
    for args, said in cases:
        rc = main(["eval", "shots", *args, "--systems", "builtin", "--workdir",
                   str(tmp_path / "w")])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("clipfactory: ") and said in err, (args, err)
        assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.slow
def test_builtin_meets_its_targets_on_a_small_corpus(tmp_path):
    from clipfactory.bench.shot_eval import run_shot_eval

    out = run_shot_eval(tmp_path, videos=6, seconds=20, width=320, height=180,
                        systems=["builtin"])
    ours = out["systems"][0]
    assert ours["f1"]["cut"] >= 0.95 and ours["gradual_f1"] >= 0.85
