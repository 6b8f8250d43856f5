"""The command line: run, status, config, progress bar and log."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from clipfactory.cli import main
from clipfactory.config import ConfigError, load_config
from clipfactory.errors import OutputError
from clipfactory.lock import make_output
from clipfactory.testing.synth import ShotSpec, write_video
from clipfactory.testing.users import as_another_user


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_in")
    write_video(d / "a.mp4", [ShotSpec(66, "texture", 1), ShotSpec(66, "static", 2)])
    (d / "bad.mp4").write_bytes(b"")
    return d


def test_run_prints_counts_progress_and_writes_a_log(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), "--workers", "1"]) == 0
    cap = capsys.readouterr()
    assert "videos 1 done, 1 failed, 0 pending (of 2)" in cap.out
    assert "clips: 1 kept, 1 dropped" in cap.out and "dropped filter/static: 1" in cap.out
    assert "failed  probe/empty_file: 1" in cap.out
    assert "curating" in cap.err and "x realtime" in cap.err  # the progress bar
    log = (out / "run.log").read_text()
    assert "run started: 2 new inputs" in log and "probe/empty_file" in log


def test_quiet_silences_the_bar_and_skip_turns_filters_off(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), "--quiet",
                 "--skip", "filters"]) == 0
    cap = capsys.readouterr()
    assert "curating" not in cap.err
    assert len(pq.read_table(out / "index.parquet")) == 2  # the static shot is kept now


def test_config_file_switches_match_the_flags(folder, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"skip": ["filters"], "clips": {"min_s": 1.0}}))
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), "--quiet",
                 "--config", str(cfg)]) == 0
    assert len(pq.read_table(out / "index.parquet")) == 2


def test_status_reports_a_run(folder, tmp_path, capsys):
    out = tmp_path / "out"
    main(["run", "--input", str(folder), "--output", str(out), "--quiet"])
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "videos 1 done, 1 failed, 0 pending" in text and "hours:" in text
    assert main(["status", str(out), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["clips"] == {"kept": 1, "staged": 0, "dropped": 1}
    assert counts["hours_out"] == pytest.approx(66 / 30 / 3600)


def test_status_and_run_fail_clearly_on_missing_paths(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nothing")]) == 2
    assert "no run found" in capsys.readouterr().err
    assert main(["run", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "input not found" in capsys.readouterr().err


def test_config_prints_yaml_that_loads_back(tmp_path, capsys):
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    f = tmp_path / "c.yaml"
    f.write_text(text)
    assert load_config(f) == load_config(None)
    with pytest.raises(ValueError):
        f.write_text("clips: {min_s: 1, bogus: 2}\n")
        load_config(f)


@pytest.mark.parametrize(("text", "said"), [
    # a value that would have failed every input later (analysis width 0: each video
    # "undecodable") or quietly kept one-frame clips (a negative minimum length)
    ("analysis: {width: 0}\n", "analysis.width: Input should be greater than or equal to 16"),
    ("clips: {min_s: -3}\n", "clips.min_s: Input should be greater than or equal to 0"),
    ("clips: {min_s: 10, max_s: 5}\n", "clips: max_s (5.0) is below min_s (10.0)"),
    ("filters: {max_dark_fraction: 2}\n", "filters.max_dark_fraction: Input should be less"),
    ("fetch: {concurrency: 0}\n", "fetch.concurrency: Input should be greater than or equal to 1"),
    ("clips: {min_sx: 3}\n", "clips.min_sx: unknown setting"),
    ("clips: [1, 2\n", "is not valid YAML"),
    ("- a list\n", "a config file must hold a mapping, got list"),
    # found per video, after the work, before: every input failed or every clip dropped
    ("cut: {codec: h246}\n", "cut.codec: unknown codec 'h246'"),
    ("cut: {bitrate: 4 Mb}\n", "cut.bitrate: bad bitrate '4 Mb'"),
    ("cut: {preset: veryfst}\n", "cut.preset: 'veryfst' is not a preset"),
    ("cut: {edge_preset: ultrafst}\n", "cut.edge_preset: 'ultrafst' is not an x264 preset"),
    ("video_timeout_s: .inf\n", "video_timeout_s: Input should be a finite number"),
    ("fetch: {timeout_s: .inf}\n", "fetch.timeout_s: Input should be a finite number"),
    ("analysis: {decode_threads: 100000}\n", "analysis.decode_threads: Input should be less"),
    ("shots: {context: 100000}\n", "shots.context: Input should be less than or equal to 200"),
    ("shards: {bucket_by: [resolution], resolution_bins: {'..': 1}}\n", "not '.' or '..'"),
    ("annotate: {categories: {templates: ['{} and {}']}}\n", "must name the label once"),
    ("annotate: {categories: {templates: []}}\n", "at least one template"),
    ("clips: {min_s: 1}\nclips: {max_s: 10}\n", "the setting 'clips' is given twice"),
    ("ingest: {columns: {bogus: x}}\n", "ingest.columns: unknown field 'bogus'"),
    ("ingest: {extensions: []}\n", "ingest.extensions: at least one file extension"),
    ("fetch: {cookies_file: /nonexistent/c.txt}\n", "fetch.cookies_file: /nonexistent/c.txt"),
    ("shots: {transnet_device: gpu}\n", "shots.transnet_device: String should match pattern"),
    ("ray_address: 127.0.0.1:1\n", "ray_address is set but executor is 'local'"),
])
def test_a_bad_config_is_named_before_anything_runs(folder, tmp_path, capsys, text, said):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), "--config", str(cfg),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err, err
    assert not out.exists()  # nothing was started, nothing is blamed on the inputs


def test_legal_spellings_of_settings_are_read_as_meant(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest: {extensions: [mp4, MOV]}\ncut: {bitrate: 600000}\n"
                   "base: &b {min_s: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="base: unknown setting"):
        load_config(cfg)  # an anchor's helper key is still unknown; a merge is not a repeat
    cfg.write_text("ingest: {extensions: [mp4, MOV]}\ncut: {bitrate: 600000}\n",
                   encoding="utf-8")
    c = load_config(cfg)
    assert c.ingest.extensions == [".mp4", ".mov"] and c.cut.bitrate == "600000"


def test_every_problem_of_a_config_is_listed_at_once(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("clips: {min_s: -1}\nshots: {detector: magic, threshold: 3}\n",
                   encoding="utf-8")
    with pytest.raises(ConfigError) as bad:
        load_config(cfg)
    assert str(bad.value).startswith(f"{cfg}: 3 settings wrong:")
    assert {line.split(":")[0].strip() for line in str(bad.value).splitlines()[1:]} == \
        {"clips.min_s", "shots.detector", "shots.threshold"}
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.yaml")


def test_an_output_that_cannot_be_a_folder_is_named_before_anything_runs(folder, tmp_path,
                                                                          capsys):
    taken = tmp_path / "taken"
    taken.write_bytes(b"mine")
    for out, said in [(taken, "is a file, not a folder"),
                      (taken / "out", "a part of its path is a file")]:
        assert main(["run", "--input", str(folder), "--output", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err
    assert taken.read_bytes() == b"mine"


def test_an_output_folder_the_user_may_not_create_or_write_in_is_named(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="cf-perm-"))  # not under pytest's root-only folder
    try:
        (base / "locked").mkdir()
        base.chmod(0o755)
        (base / "locked").chmod(0o555)

        def make(out):
            try:
                make_output(out)
            except OutputError as e:
                return str(e)
            return None

        said = as_another_user(lambda: [make(base / "locked" / "out"), make(base / "locked")])
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base)
    assert said[0].startswith(f"cannot create the output folder {base / 'locked' / 'out'}: "
                              "permission denied")
    assert said[1] == f"cannot write in the output folder {base / 'locked'}: permission denied"


@pytest.mark.parametrize("argv", [
    ["bench-cut", "--gops", "2,x"], ["bench-cut", "--clip-seconds", "4"],
    ["bench-cut", "--clip-seconds", "12,4"], ["bench-cut", "--gops", "0"],
    ["bench-scale", "--clips", "1e5,abc"]])
def test_a_bench_list_flag_with_a_typo_is_a_usage_error(argv, capsys):
    """They were parsed with a bare float() once the command ran: a ValueError or TypeError
    traceback (bench-cut after building its sources)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: argument" in err


@pytest.mark.parametrize("value", ["0", "-2", "x", "4097", "2147483647"])
def test_a_workers_flag_out_of_range_is_a_usage_error(value, tmp_path, capsys):
    """2147483647 or more reached the process pool, whose queue size is a C int: an
    OverflowError traceback, the inputs registered and left pending."""
    with pytest.raises(SystemExit) as e:
        main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "out"),
              "--workers", value])
    assert e.value.code == 2 and "from 1 to 4096 or auto" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError):
        load_config(None, workers=5000)


@pytest.mark.parametrize("content", [b"", b"not a protobuf at all"])
def test_models_says_a_broken_shot_model_is_missing_as_run_does(tmp_path, capsys, content):
    """`models` said `ok` (exit 0) for an empty or corrupt ONNX file that `run` refuses."""
    bad = tmp_path / "m.onnx"
    bad.write_bytes(content)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"shots: {{model: {bad}}}\n", encoding="utf-8")
    assert main(["models", "--config", str(cfg), "--json"]) == 2
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    shots = next(r for r in rows if r["stage"].startswith("shots"))
    assert shots["missing"] and "cannot be loaded as ONNX" in shots["missing"][0]


def _refused_before_work(folder, tmp_path, capsys, yaml_text: str) -> str:
    """Run with ``yaml_text`` as the config: exit 2, no output folder left; returns stderr."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), "--config", str(cfg),
                 "--quiet"]) == 2
    assert not out.exists()
    return capsys.readouterr().err


def test_gpu_always_without_nvenc_stops_before_any_work(folder, tmp_path, capsys):
    from clipfactory.media.encoders import nvenc_available

    if nvenc_available("h264_nvenc"):
        pytest.skip("NVENC opens here")
    err = _refused_before_work(folder, tmp_path, capsys, "cut: {mode: transcode, gpu: always}")
    assert "cut.gpu is 'always' but h264_nvenc does not open" in err


@pytest.mark.parametrize("argv", [
    ["bench", "--workers", "0"], ["bench", "--width", "161"], ["bench", "--minutes", "nan"],
    ["bench", "--embed-only", "--embed-clips", "0"], ["bench-cut", "--videos", "0"],
    ["bench-cut", "--seconds", "-1"], ["bench-fetch", "--concurrency", "a"],
    ["bench-fetch", "--concurrency", "0"], ["demo", "--workers", "0"],
    ["eval", "shots", "--width", "161"], ["bench-ray", "--repeats", "0"]])
def test_measuring_commands_refuse_numbers_they_cannot_use(argv, capsys):
    """A usage line and exit 2, where each was a traceback (ZeroDivisionError, an encoder
    refusing an odd size, pydantic's error) after the work had started."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_another_phash_frames_on_an_output_is_refused(folder, tmp_path, capsys):
    """Perceptual dedup compares hashes of one length: a run with another
    dedup.phash_frames kept every near duplicate of the clips before it (dedup --full too)."""
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), "--quiet"]) == 0
    before = (out / "index.parquet").read_bytes()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dedup: {phash_frames: 3}\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["run", "--input", str(folder), "--output", str(out), "--config", str(cfg),
                 "--quiet"]) == 2
    assert "dedup.phash_frames: this output's clips were hashed with 5 frames" in \
        capsys.readouterr().err
    assert (out / "index.parquet").read_bytes() == before
    cfg.write_text("dedup: {phash_frames: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dedup\.phash_frames"):
        load_config(cfg)  # 0 turned perceptual dedup off in silence: perceptual: false does


def test_a_policy_flag_mistake_is_one_line(folder, tmp_path, capsys):
    assert main(["run", "--input", str(folder), "--output", str(tmp_path / "o"), "--quiet",
                 "--policy", "custom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "clipfactory: the policy flags: a custom policy needs an allow list"


def test_a_run_with_other_settings_says_so_and_the_card_keeps_them(folder, tmp_path, capsys):
    """The clips recorded before keep the settings they were made with: the console says what
    changed, and the card lists it under its configuration (it showed only the new one).
    Settings of how a run goes (workers) are not worth a word."""
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), "--quiet",
                 "--workers", "1"]) == 0
    assert main(["run", "--input", str(folder), "--output", str(out), "--quiet",
                 "--workers", "2"]) == 0
    assert "other settings" not in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("clips: {min_s: 0.5, max_s: 1.0}\n", encoding="utf-8")
    assert main(["run", "--input", str(folder), "--output", str(out), "--quiet",
                 "--config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "last run used other settings (clips.max_s 60.0 -> 1.0, clips.min_s 2.0 -> 0.5)" in err
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Earlier runs of this output used others" in card
    assert "`clips.max_s`: 60.0 before, 1.0 from then on" in card
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config_changes"][0]["changed"] == {"clips.max_s": [60.0, 1.0],
                                                       "clips.min_s": [2.0, 0.5]}


def test_a_transcode_target_the_encoder_cannot_take_stops_before_any_work(folder, tmp_path,
                                                                          capsys):
    """10-bit VP9 from a libvpx built without it: every clip was dropped as
    unsupported_pix_fmt, after the work."""
    from clipfactory.media.encoders import encoder_pix_fmt

    if encoder_pix_fmt("libvpx-vp9", "yuv420p10le") is not None:
        pytest.skip("this FFmpeg's libvpx encodes 10-bit VP9")
    err = _refused_before_work(folder, tmp_path, capsys,
                               "cut: {mode: transcode, codec: vp9, pix_fmt: yuv420p10le}")
    assert "cut.pix_fmt: libvpx-vp9 (for cut.codec 'vp9') cannot encode yuv420p10le" in err


def test_an_output_whose_stored_config_a_later_version_refuses_is_still_served(folder, tmp_path,
                                                                                capsys):
    """Settings this version refuses (phash_frames 0, ray_address without executor ray, a
    preset typo) in an older output's stored config: takedown and audit stopped with a
    validation traceback. They take their defaults there, with a warning."""
    import sqlite3

    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), "--quiet"]) == 0
    db = sqlite3.connect(out / "ledger.sqlite")
    stored = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    stored["dedup"]["phash_frames"] = 0
    stored["ray_address"] = "10.0.0.1:6379"
    stored["cut"]["preset"] = "veryfst"
    db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(stored),))
    db.commit()
    db.close()
    capsys.readouterr()
    assert main(["takedown", str(out), "--video-id", "nobody", "--reason", "request"]) == 0
    assert main(["audit", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    from clipfactory.config import stored_config

    cfg = stored_config(stored)
    assert (cfg.dedup.phash_frames, cfg.ray_address, cfg.cut.preset) == (5, None, "veryfast")
    assert cfg.dedup.max_hamming == stored["dedup"]["max_hamming"]  # the rest as stored
