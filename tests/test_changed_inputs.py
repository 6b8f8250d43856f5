"""A file that failed because it was not finished (or not there) is tried again once it
changes: a folder run again as recordings and downloads land in it loses none of them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from clipfactory.config import Config
from clipfactory.ledger import Ledger
from clipfactory.pipeline import run
from clipfactory.sinks.parts import read_index, read_rejected
from clipfactory.testing.synth import ShotSpec, write_video

SHOTS = [ShotSpec(70, "texture", 71), ShotSpec(80, "texture", 72)]
OTHER = [ShotSpec(75, "texture", 73), ShotSpec(65, "texture", 74)]


def _states(out: Path) -> dict[str, tuple[str, str | None]]:
    """State and reason of each input, by its file's name."""
    ledger = Ledger(out / "ledger.sqlite")
    try:
        return {Path(r["source"]).name: (r["state"], r["reason"]) for r in ledger.videos()}
    finally:
        ledger.close()


def test_a_file_still_being_written_is_cut_once_it_is_complete(tmp_path: Path) -> None:
    media, out, cfg = tmp_path / "media", tmp_path / "out", Config(skip=["dedup"])
    media.mkdir()
    whole = write_video(tmp_path / "whole.mp4", SHOTS).path  # moov at the end
    data = Path(whole).read_bytes()
    growing = media / "recording.mp4"  # a camera or ffmpeg writing: moov not written yet
    growing.write_bytes(data[: len(data) // 3])
    write_video(media / "broken.mp4", SHOTS[:1])
    with open(media / "broken.mp4", "r+b") as f:  # stays broken: it must stay failed
        f.truncate(600)
    later = tmp_path / "drop" / "later.mp4"  # named in a list before it is there
    later.parent.mkdir()
    (tmp_path / "list.txt").write_text(f"{later}\n", encoding="utf-8")

    run(media, out, cfg)
    run(tmp_path / "list.txt", out, cfg)  # a manifest naming a file not there yet
    first = _states(out)
    assert first["recording.mp4"] == ("failed", "truncated_no_index")
    assert first["later.mp4"] == ("failed", "missing_file")
    assert first["broken.mp4"][0] == "failed" and len(first) == 3

    # an unchanged folder: nothing is tried again
    run(media, out, cfg)
    assert _states(out) == first

    # the recording finishes, the missing file appears
    growing.write_bytes(data)
    other = write_video(tmp_path / "other.mp4", OTHER).path
    shutil.copy(other, later)
    st = os.stat(other)
    os.utime(later, ns=(st.st_atime_ns, st.st_mtime_ns - 10**12))  # cp -p: an old mtime
    run(media, out, cfg)
    states = _states(out)
    assert states["recording.mp4"] == ("done", None)
    assert states["later.mp4"] == ("done", None)
    assert states["broken.mp4"] == first["broken.mp4"]
    index = read_index(out).to_pylist()
    spans = sorted((Path(r["source"]).name, r["start_frame"], r["end_frame"]) for r in index)
    assert spans == [("later.mp4", 0, 75), ("later.mp4", 75, 140),
                     ("recording.mp4", 0, 70), ("recording.mp4", 70, 150)]
    failed = [(r["item_key"], r["reason"]) for r in read_rejected(out).to_pylist()
              if r["kind"] == "video"]
    assert failed == [("file:broken.mp4", first["broken.mp4"][1])]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["videos"]["failed"] == 1
