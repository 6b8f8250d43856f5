"""A full disk is the output's failure, not an input's.

``clipfactory run`` on a filesystem that fills up stops with a clear message and exit status 3,
records nothing against the videos in flight (they stay pending), and, once there is room, the
same command finishes to the dataset a run that never ran out of space makes: no clip dropped
as ``cut/encode_failed``, none lost, none doubled.

The full disk is real: a tmpfs of a chosen size, mounted in a private mount namespace
(``unshare``), so no privilege is needed where user namespaces are allowed, and nothing outside
the test sees it. Where they are not, the end-to-end tests skip. The errors themselves are real
too: ``/dev/full`` refuses every write with ``ENOSPC``, and SQLite's ``max_page_count`` makes it
answer ``SQLITE_FULL``.
"""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from clipfactory.cli import EXIT_STORAGE
from clipfactory.config import Config
from clipfactory.errors import MediaError, StorageRefused, storage_refusal, storage_refused
from clipfactory.pipeline import run
from clipfactory.provenance.audit import audit
from clipfactory.testing.loopback import LoopbackServer
from clipfactory.testing.outputs import dataset_rows
from clipfactory.testing.synth import ShotSpec, write_video

# inside the namespace: mount a tmpfs with options $1 (its size, or read-only) on $2; run
# `clipfactory run` into $5 with the arguments after it; remount the tmpfs with options $6
# (room, or writable); run again; audit; and copy the output to $3/out (before the namespace,
# and a tmpfs the output is on, go away)
_SCRIPT = r"""
set -u
opts=$1; mnt=$2; host=$3; py=$4; out=$5; again=$6; shift 6
mkdir -p "$mnt"
mount -t tmpfs -o "$opts" tmpfs "$mnt" || exit 90
"$py" -m clipfactory.cli run --output "$out" --quiet "$@" > "$host/first.out" 2> "$host/first.err"
echo $? > "$host/first.rc"
mount -o "remount,$again" "$mnt"
"$py" -m clipfactory.cli run --output "$out" --quiet "$@" > "$host/second.out" 2> "$host/second.err"
echo $? > "$host/second.rc"
"$py" -m clipfactory.cli audit "$out" > "$host/audit.out" 2>&1
echo $? > "$host/audit.rc"
[ "$out" = "$host/out" ] || cp -a "$out" "$host/out"
"""


def _unshare() -> list[str] | None:
    """The ``unshare`` command line that gives a private mount namespace where a tmpfs can be
    mounted, or None where this machine allows none."""
    if shutil.which("unshare") is None:
        return None
    for cmd in (["unshare", "--user", "--map-root-user", "--mount"],
                ["unshare", "--mount", "--propagation", "private"]):
        try:
            probe = subprocess.run([*cmd, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return cmd
    return None


UNSHARE = _unshare()
needs_namespace = pytest.mark.skipif(
    UNSHARE is None, reason="no private mount namespace here (unshare, user namespaces)")


def _in_namespace(size: int | str, mnt: Path, host: Path, out: Path, *run_args: str) -> None:
    """``size``: bytes, then room to spare; or ``"ro"``, then writable."""
    opts, again = ("ro", "rw") if size == "ro" else (f"size={size}", "size=256m")
    proc = subprocess.run([*UNSHARE, "bash", "-c", _SCRIPT, "storage", opts, str(mnt),
                           str(host), sys.executable, str(out), again, *run_args],
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, dict]:
    """Three videos whose clips need cutting (keyframes every 30 frames, not at the cuts) and
    the dataset a run with room to spare makes of them."""
    inp = tmp_path_factory.mktemp("full-in")
    for v in range(3):
        write_video(inp / f"v{v}.mp4", [ShotSpec(70, "texture", 10 * v + 1),
                                        ShotSpec(64, "texture", 10 * v + 2),
                                        ShotSpec(58, "texture", 10 * v + 3)], gop=30,
                    width=640, height=360, crf=12)  # clips, not the ledger, fill the disk
    out = tmp_path_factory.mktemp("full-ref") / "out"
    run(inp, out, Config.model_validate({"workers": 1}))
    state = dataset_rows(out)
    assert len(state["index"]) >= 6
    return inp, out, state


@needs_namespace
# the room given, as a share of the finished dataset: the ledger's first writes fail; a clip of
# the first, second or third video; the shards (the staged clips and their shard side by side)
@pytest.mark.parametrize("share", [0.05, 0.3, 0.9, 1.3])
def test_a_run_that_fills_its_disk_stops_cleanly_and_resumes_to_the_same_dataset(
        reference, tmp_path, share):
    inp, ref_out, ref = reference
    size = max(64 * 1024, int(_tree_bytes(ref_out) * share)) // 4096 * 4096
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    host = tmp_path / "host"
    host.mkdir()
    _in_namespace(size, mnt, host, mnt / "out", "--input", str(inp), "--workers", "1")

    first = int((host / "first.rc").read_text())
    err = (host / "first.err").read_text()
    if share < 1.0:  # less room than the finished dataset takes: the first run cannot finish
        assert first == EXIT_STORAGE, err
    assert first in (0, EXIT_STORAGE), err
    if first == EXIT_STORAGE:
        assert "stopped: a disk it writes to is full" in err
        assert "No space left on device" in err or "disk is full" in err, err
        assert "Traceback" not in err and "Logging error" not in err, err
    if 0.2 < share < 1.0:  # the ledger fits, a clip does not: a worker met the full disk
        assert "writing the clips of" in err, err
    assert int((host / "second.rc").read_text()) == 0, (host / "second.err").read_text()
    assert int((host / "audit.rc").read_text()) == 0, (host / "audit.out").read_text()

    got = dataset_rows(host / "out")
    assert not [r for r in got["rejected"] if r[1] == "cut"]  # nothing blamed on the clips
    assert got == ref  # the same clips, frames and bytes; the same drops and reasons
    assert audit(host / "out").ok



@needs_namespace
def test_a_staging_disk_that_turns_read_only_stops_the_run_and_resumes(reference, tmp_path):
    """The ledger's disk takes writes, the one the workers write clips to does not (as after
    the system remounts a failing disk read-only): exit 3, "read-only", nothing recorded
    against the videos; writable again, the same command finishes the dataset."""
    inp, _, ref = reference
    host = tmp_path / "host"
    out = host / "out"
    (out / "staging").mkdir(parents=True)
    _in_namespace("ro", out / "staging", host, out, "--input", str(inp), "--workers", "1")

    err = (host / "first.err").read_text()
    assert int((host / "first.rc").read_text()) == EXIT_STORAGE, err
    assert "stopped: a disk it writes to is read-only" in err and "Read-only file system" in err
    assert "writing the clips of" in err and "Make it writable" in err
    assert "Traceback" not in err, err
    assert int((host / "second.rc").read_text()) == 0, (host / "second.err").read_text()
    assert int((host / "audit.rc").read_text()) == 0, (host / "audit.out").read_text()
    got = dataset_rows(out)
    assert not [r for r in got["rejected"] if r[1] == "cut"]
    assert got == ref


def test_full_storage_errors_are_told_apart_from_an_inputs(tmp_path):
    with pytest.raises(OSError) as disk, open("/dev/full", "wb", buffering=0) as fh:
        fh.write(b"clip bytes")
    assert disk.value.errno == errno.ENOSPC and storage_refused(disk.value)

    # FFmpeg's own write error, through PyAV, as the cutter meets it
    with pytest.raises(av.FFmpegError) as ff, \
            av.open("/dev/full", "w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(400):
            frame = av.VideoFrame.from_ndarray(
                np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8), "rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
    assert storage_refused(ff.value)

    db = sqlite3.connect(tmp_path / "small.sqlite")
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute("PRAGMA max_page_count = 4")
    with pytest.raises(sqlite3.OperationalError) as full:
        db.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    db.close()
    assert storage_refused(full.value)

    try:  # raised while handling, or from, a full disk: still the storage's
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise MediaError("cut", "encode_failed", str(e)) from e
    except MediaError as wrapped:
        assert storage_refused(wrapped)
    assert storage_refused(StorageRefused("x"))

    assert storage_refusal(OSError(errno.EROFS, "Read-only file system")) == "read-only"
    assert storage_refusal(disk.value) == "full"
    ro = sqlite3.connect(f"file:{tmp_path / 'small.sqlite'}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as readonly:
        ro.execute("INSERT INTO t VALUES (x'00')")
    ro.close()
    assert storage_refusal(readonly.value) == "read-only"

    # what an input's fault looks like is not
    assert not storage_refused(MediaError("probe", "not_a_media_file"))
    assert not storage_refused(FileNotFoundError(errno.ENOENT, "gone"))
    assert not storage_refused(sqlite3.OperationalError("no such table: t"))
    assert not storage_refused(None)


@needs_namespace
@pytest.mark.parametrize("room", [64 * 1024, "one video"])
def test_a_fetch_that_fills_the_sources_disk_stops_the_run_and_resumes(reference, tmp_path,
                                                                      room):
    """Downloads go to ``fetch.sources_dir``, here a tmpfs with room for no video, or for one:
    the download that finds the disk full is not recorded as the item's failure (``retry``
    would never take it again) but stops the run; with room, the same command finishes."""
    inp, _, _ = reference
    videos = sorted(inp.glob("*.mp4"))
    mnt, host = tmp_path / "sources", tmp_path / "host"
    mnt.mkdir()
    host.mkdir()
    with LoopbackServer() as server:
        rows = [{"id": v.stem, "url": server.add(f"/v/{v.name}", v.read_bytes()),
                 "license": "CC-BY-4.0"} for v in videos]
        manifest = tmp_path / "m.jsonl"
        manifest.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        settings = {"workers": 1, "fetch": {"allow_private_network": True,
                                            "rate_per_host": 0, "sources_dir": str(mnt)}}
        ref_out = tmp_path / "ref"
        run(manifest, ref_out, Config.model_validate(
            {**settings, "fetch": {**settings["fetch"], "sources_dir": str(tmp_path / "src")}}))
        config = tmp_path / "cfg.yaml"
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        size = room if isinstance(room, int) else \
            (max(v.stat().st_size for v in videos) * 3 // 2) // 4096 * 4096
        _in_namespace(size, mnt, host, host / "out", "--input", str(manifest),
                      "--config", str(config))

    err = (host / "first.err").read_text()
    first = int((host / "first.rc").read_text())
    if isinstance(room, int):
        assert first == EXIT_STORAGE, err
    if first == EXIT_STORAGE:
        assert "stopped: a disk it writes to is full" in err and "fetching http://" in err, err
        assert "Traceback" not in err, err
    assert int((host / "second.rc").read_text()) == 0, (host / "second.err").read_text()
    assert int((host / "audit.rc").read_text()) == 0, (host / "audit.out").read_text()
    ref = dataset_rows(ref_out)
    assert len(ref["index"]) >= 6
    assert dataset_rows(host / "out") == ref  # no item failed, none lost, none doubled
