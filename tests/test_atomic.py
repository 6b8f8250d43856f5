"""clipfactory.atomic: a reader finds the old file or the new one, whatever stops the writer
(an exception, or SIGKILL at any step), and only a hidden temporary file is ever left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clipfactory.atomic import replacing, write_atomic
from clipfactory.testing.killpoint import each_kill, kill_point_script


def test_write_atomic_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    p = tmp_path / "summary.json"
    write_atomic(p, "old")
    write_atomic(p, "név")  # text is UTF-8
    assert p.read_bytes() == "név".encode()
    write_atomic(p, b"\x00\xff", tag="part")
    assert p.read_bytes() == b"\x00\xff"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["summary.json"]


def test_an_exception_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    p = tmp_path / "index.parquet"
    p.write_text("old")
    with pytest.raises(RuntimeError), replacing(p) as tmp:
        assert tmp == tmp_path / ".index.parquet.tmp"
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert p.read_text() == "old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["index.parquet"]


_WRITE = kill_point_script("""
from clipfactory.atomic import write_atomic
write_atomic(sys.argv[3], "new" * 1000, durable=sys.argv[4] == "durable")
""")


@pytest.mark.parametrize("durable", ["durable", "plain"])
@pytest.mark.parametrize("point", ["pathlib:Path.write_text", "os:fsync", "os:replace"])
def test_a_writer_killed_at_any_step_leaves_the_old_file_whole(tmp_path: Path, point: str,
                                                              durable: str) -> None:
    p = tmp_path / "card.md"

    def prepare() -> list[str]:
        for f in tmp_path.iterdir():
            f.unlink()
        p.write_text("old")
        return [str(p), durable]

    kills = list(each_kill(_WRITE, point, prepare))
    # a durable write syncs before its rename, a plain one never syncs
    assert len(kills) == (0 if point == "os:fsync" and durable == "plain" else 1)
    if kills:  # the state the kill left: the old file, and at most the hidden temporary one
        prepare()
        proc = subprocess.run([sys.executable, "-c", _WRITE, point, "1", str(p), durable],
                              capture_output=True)
        assert proc.returncode == -9
        assert p.read_text() == "old"
        assert {f.name for f in tmp_path.iterdir()} <= {"card.md", ".card.md.tmp"}
    proc = subprocess.run([sys.executable, "-c", _WRITE, point, "99", str(p), durable],
                          capture_output=True)
    assert proc.returncode == 0 and p.read_text() == "new" * 1000
    assert sorted(f.name for f in tmp_path.iterdir()) == ["card.md"]
