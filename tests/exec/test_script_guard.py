"""A script that calls ``clipfactory.pipeline.run`` without ``if __name__ == "__main__":``.

Each spawned worker starts by running the script again; there the call waited for the output
lock its parent holds, and the run hung for ever with nothing said. Now the worker refuses
the call, the run stops with what to change, and no input is recorded as failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clipfactory.ledger import Ledger
from clipfactory.testing.synth import ShotSpec, write_video

_SCRIPT = """
from clipfactory.config import Config
from clipfactory.pipeline import run
{call}
"""
_CALL = "run({media!r}, {out!r}, Config(workers=2, skip=['dedup']))"


def _script(tmp_path: Path, guarded: bool) -> Path:
    media, out = tmp_path / "media", tmp_path / ("out-guarded" if guarded else "out")
    call = _CALL.format(media=str(media), out=str(out))
    if guarded:
        call = "if __name__ == '__main__':\n    " + call
    path = tmp_path / ("guarded.py" if guarded else "unguarded.py")
    path.write_text(_SCRIPT.format(call=call), encoding="utf-8")
    return path


def _states(out: Path) -> list[str]:
    ledger = Ledger(out / "ledger.sqlite")
    try:
        return [r["state"] for r in ledger.videos()]
    finally:
        ledger.close()


def test_a_script_without_the_main_guard_stops_and_says_why(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    for i in range(2):
        write_video(media / f"v{i}.mp4", [ShotSpec(40, "texture", i + 1)])
    proc = subprocess.run([sys.executable, str(_script(tmp_path, guarded=False))],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode != 0
    assert "WorkersDidNotStart" in proc.stderr and "if __name__ ==" in proc.stderr
    assert "was called while a worker process was starting" in proc.stderr  # the worker's
    assert _states(tmp_path / "out") == ["pending", "pending"]  # no input blamed

    guarded = subprocess.run([sys.executable, str(_script(tmp_path, guarded=True))],
                             capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert guarded.returncode == 0, guarded.stderr[-2000:]
    assert _states(tmp_path / "out-guarded") == ["done", "done"]
