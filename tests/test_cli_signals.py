"""How the command ends when the user ends it: Ctrl-C, or a reader that goes away.

Ctrl-C sends SIGINT to the whole foreground process group (the driver and its workers); a
scheduler or ``kill -INT`` may send it to the driver alone. Either way the run stops at once
(the workers are killed, not waited for: their videos stay pending), says so in one line with
no traceback, exits 130, and the same command then makes the dataset of a run never
interrupted. ``clipfactory status out | head`` must not print a traceback when ``head`` exits.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipfactory.cli import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED
from clipfactory.config import Config
from clipfactory.pipeline import run
from clipfactory.testing.outputs import dataset_rows
from clipfactory.testing.synth import ShotSpec, write_video

_CLI = [sys.executable, "-m", "clipfactory.cli"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, list[tuple]], str]:
    """Four videos, the last a long one (its analysis takes seconds), and the dataset a run
    never interrupted makes of them."""
    inp = tmp_path_factory.mktemp("sig-in")
    for v in range(3):
        write_video(inp / f"v{v}.mp4", [ShotSpec(60, "texture", 20 * v + 1),
                                        ShotSpec(66, "texture", 20 * v + 2)], gop=30)
    write_video(inp / "z_long.mp4", [ShotSpec(900, "texture", 99), ShotSpec(900, "texture", 98)],
                width=640, height=360, gop=60)
    out = tmp_path_factory.mktemp("sig-ref") / "out"
    run(inp, out, Config.model_validate({"workers": 2}))
    long_id = hashlib.sha256((inp / "z_long.mp4").read_bytes()).hexdigest()[:16]
    return inp, dataset_rows(out), long_id


def _wait_for_a_recorded_video(proc: subprocess.Popen, out: Path) -> None:
    log = out / "run.log"
    deadline = time.monotonic() + 120
    while not (log.is_file() and " done " in log.read_text(encoding="utf-8")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


def _stderr_at_its_end(proc: subprocess.Popen) -> str:
    """What the interrupted command printed, once it has ended (a failure if it does not)."""
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the run did not end after Ctrl-C")
    return err.decode(errors="replace")


def _children(pid: int) -> list[int]:
    got = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in got.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


# Ctrl-C in a terminal; `kill -INT` of the driver; twice in a row (which could hang the run,
# its pool waiting on workers nothing would stop, or print a destructor's traceback)
@pytest.mark.parametrize(("to", "times"), [("group", 1), ("driver", 1), ("driver", 2)])
def test_ctrl_c_stops_the_run_at_once_and_the_same_command_resumes(corpus, tmp_path, to, times):
    inp, ref, long_id = corpus
    out = tmp_path / "out"
    proc = subprocess.Popen([*_CLI, "run", "--input", str(inp), "--output", str(out),
                             "--workers", "2", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    # interrupt once the first short video is recorded, while the long one is being analysed
    _wait_for_a_recorded_video(proc, out)
    workers = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)]
    assert workers
    for _ in range(times):
        (os.killpg if to == "group" else os.kill)(proc.pid, signal.SIGINT)
        time.sleep(0.01)
    err = _stderr_at_its_end(proc)
    # (a second one that lands as the interpreter ends kills it with the signal: the status a
    # shell shows is 130 either way)
    assert proc.returncode in (EXIT_INTERRUPTED, -signal.SIGINT)[:times], err
    if times == 1:
        assert "run interrupted" in err and "run the same command again" in err
    else:  # the second one stops the clean-up of the first at once, as a kill would
        assert "interrupted" in err and "the same command" in err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert not [p for p in workers if _alive(p)]  # none left behind
    # the long video was stopped, not finished: it is not recorded, and none of its clips
    # reached the disk
    assert not [p for p in (out / "staging").rglob("*.mp4") if p.name.startswith(long_id)]
    assert "z_long.mp4" not in (out / "run.log").read_text(encoding="utf-8")

    again = subprocess.run([*_CLI, "run", "--input", str(inp), "--output", str(out),
                            "--workers", "2", "--quiet"], capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert dataset_rows(out) == ref


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    proc = subprocess.Popen([*_CLI, "config"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # as `| head -1` does, before a byte is read
    err = proc.stderr.read().decode(errors="replace")
    proc.wait(timeout=60)
    assert proc.returncode == EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "Exception ignored" not in err, err


_LATE_SECOND_CTRL_C = """
import atexit, os, signal, sys, time
import clipfactory.cli as cli

def second():  # a second Ctrl-C that lands while the interpreter exits, as the pool's own
    os.kill(os.getpid(), signal.SIGINT)  # clean-up at exit runs
    time.sleep(2)

def first(a):  # the command is interrupted part-way
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
    return 0

atexit.register(second)
cli._cmd_config = first
sys.exit(cli.main(["config"]))
"""


def test_a_second_ctrl_c_during_the_exit_prints_no_traceback() -> None:
    """The two presses of the parametrised test above land at once; this one lands after
    the command has said it was interrupted, in the interpreter's exit."""
    proc = subprocess.run([sys.executable, "-c", _LATE_SECOND_CTRL_C], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, proc
    assert "config interrupted" in proc.stderr and "interrupted again" in proc.stderr, proc
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc


def test_ctrl_c_with_a_model_stage_on_prints_no_traceback(corpus, tmp_path):
    """The model stage's process is in the terminal's process group too: it took the SIGINT
    itself and printed a KeyboardInterrupt traceback before the driver's one line."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from clipfactory.testing.clipmodels import make_tiny_clip

    inp, _, _ = corpus
    model = make_tiny_clip(tmp_path / "clip")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"annotate:\n  embeddings:\n    model: {model}\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen([*_CLI, "run", "--input", str(inp), "--output", str(out),
                             "--workers", "2", "--quiet", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    _wait_for_a_recorded_video(proc, out)
    time.sleep(0.5)  # the stage's process is up and reading its pipe
    os.killpg(proc.pid, signal.SIGINT)
    err = _stderr_at_its_end(proc)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "run interrupted" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
