"""A process that dies where a test says: SIGKILL on the N-th call of one function.

For tests of "killed at this step, then resumed": :func:`kill_point_script` is the source of a
``python -c`` program whose ``argv[1]`` names the function (``module:function`` or
``module:Class.method``) and ``argv[2]`` the call that kills; the function is replaced, then
``statement`` runs (it reads its own arguments from ``sys.argv[3:]``). The process exits with
-9 (``signal.SIGKILL``) if the call came, as after a power cut: no clean-up, no ``finally``.
:func:`each_kill` runs such a program killed at every call of the function in turn, and
:func:`check_every_kill` checks what each of those kills leaves once the output is finished.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["check_every_kill", "each_kill", "kill_point_script"]

_PRELUDE = """
import importlib, os, signal, sys
module, _, name = sys.argv[1].partition(":")
owner, attr = importlib.import_module(module), name
if "." in attr:  # Class.method
    cls, attr = attr.split(".")
    owner = getattr(owner, cls)
orig, calls = getattr(owner, attr), [0]
def killer(*a, **k):
    calls[0] += 1
    if calls[0] >= int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(*a, **k)
setattr(owner, attr, killer)
"""


def kill_point_script(statement: str) -> str:
    """``python -c`` source: arm the kill point named by ``argv[1:3]``, then run
    ``statement`` (imports included; its arguments are ``sys.argv[3:]``)."""
    return _PRELUDE + statement.strip() + "\n"


def each_kill(script: str, point: str, prepare: Callable[[], list[str]], *,
              timeout: float = 300.0, limit: int = 1000) -> Iterator[int]:
    """Run ``script`` killed at the 1st, the 2nd, ... call of ``point``, each time with the
    arguments ``prepare()`` returns (a fresh copy of the output, say); yield N after each kill
    (the caller resumes and checks), and stop when the program ends without reaching the N-th
    call. ``AssertionError`` when it fails otherwise, or never stops."""
    for n in range(1, limit + 1):
        proc = subprocess.run([sys.executable, "-c", script, point, str(n), *prepare()],
                              capture_output=True, timeout=timeout, start_new_session=True)
        if proc.returncode == 0:
            return
        if proc.returncode != -signal.SIGKILL:
            raise AssertionError(f"{point} call {n}: exit {proc.returncode}\n"
                                 + proc.stderr.decode(errors="replace")[-2000:])
        yield n
    raise AssertionError(f"{point}: still called after {limit} kills")


def check_every_kill(script: str, point: str, base: Path, work: Path, *,
                     args: Callable[[Path], list[str]], command: Callable[[Path], object],
                     finish: Callable[[Path], object], state: Callable[[Path], Any]) -> int:
    """Kill ``script`` (the program of ``command``, on a copy of ``base``) at every call of
    ``point`` in turn; after each kill, ``finish`` the copy (the command again, or a run) and
    check that its ``state`` is one of the two a command never killed gives: ``command`` then
    ``finish``, or only ``finish`` (the kill came before the command recorded anything). So no
    kill leaves a part of the command that ``finish`` neither completes nor undoes. ``args``
    gives the program's arguments for the copy. Returns the number of kills."""
    ends = []
    for name, ran in (("done", True), ("not-done", False)):
        out = work / name
        shutil.copytree(base, out)
        if ran:
            command(out)
        finish(out)
        ends.append(state(out))
    out = work / "killed"

    def fresh() -> list[str]:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(base, out)
        return args(out)

    kills = 0
    for n in each_kill(script, point, fresh):
        finish(out)
        got = state(out)
        assert got in ends, (f"killed at call {n} of {point}: neither the command's result nor "
                             f"none of it: {got}")
        kills += 1
    return kills
