"""One writer per output folder: an advisory lock on ``OUT/clipfactory.lock``.

``run``, ``retry``, ``takedown``, ``revalidate``, ``caption``, ``mix`` and ``report`` hold it
while they change an output, so a takedown can never race the shard writer (nor a report,
which would put a removed source's pictures back); ``audit`` holds it while it reads, so a
half-written output is not reported as corrupt. Another writer waits, saying
once who holds the folder, or fails at once with ``wait=False`` (``--no-wait``). The lock is an
``flock`` on an open file: the kernel releases it when its process dies, however it dies, so a
lock left by a killed run is simply taken over (the file's text naming the dead holder is only
information). Re-entrant within a process: a ``takedown`` that runs ``finalize`` inside a held
lock does not wait on itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from clipfactory.errors import OutputError
from clipfactory.exec.pool import refuse_while_starting

__all__ = ["LOCK_FILE", "OutputLocked", "holds_output_lock", "make_output", "output_lock",
           "remove_if_only_lock"]

F = TypeVar("F", bound=Callable[..., Any])

LOCK_FILE = "clipfactory.lock"  # kept (not a temp file): it names the last writer
_HELD: dict[str, list] = {}  # realpath -> [file object, depth]


class OutputLocked(RuntimeError):
    """Another process is writing this output (``wait=False``)."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return (f"`{info.get('what', '?')}` (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"since {since})")


def make_output(out: Path) -> None:
    """Create the output folder ``out`` (and its parents) unless it exists, or raise
    :class:`~clipfactory.errors.OutputError` saying why it cannot be one."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise OutputError(f"the output {out} is a file, not a folder: name another --output"
                          ) from e
    except NotADirectoryError as e:
        raise OutputError(f"the output {out} cannot be a folder: a part of its path is a "
                          "file") from e
    except PermissionError as e:
        raise OutputError(f"cannot create the output folder {out}: permission denied "
                          f"(on {e.filename})") from e
    if not os.access(out, os.W_OK | os.X_OK) and not _read_only_disk(out):
        raise OutputError(f"cannot write in the output folder {out}: permission denied")


def _read_only_disk(path: Path) -> bool:
    """Whether ``path`` lies on a read-only mount (that is the storage's refusal, which the
    first write reports as such, not a permission to fix)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@contextlib.contextmanager
def output_lock(out: str | Path, what: str, *, wait: bool = True, create: bool = False,
                poll_s: float = 0.5) -> Iterator[None]:
    """Hold the output's lock for the block (see module doc); ``what`` names the holder.
    A folder that does not exist is created with ``create`` (a new output), else left to the
    caller to report (nothing to lock)."""
    refuse_while_starting(f"a command writing {out} ({what})")  # it would wait for its parent
    out = Path(out)
    if create:
        make_output(out)
    elif not out.is_dir():
        yield
        return
    key = os.path.realpath(out)
    if key in _HELD:  # this process holds it already
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    path = out / LOCK_FILE
    writable = True
    try:
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held across the block)
    except OSError:  # a read-only output (a copy, a mount) that a reader (audit) opens
        try:
            fh = open(path, encoding="utf-8")  # noqa: SIM115 (flock works on it all the same)
        except OSError:  # no lock file, and none can be made: nobody writes here
            yield
            return
        writable = False
    told = False
    try:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise OutputLocked(f"{out} is being written by {_holder(path)}; "
                                       "try again when it is done (or drop --no-wait to "
                                       "wait)") from None
                if not told:
                    print(f"clipfactory: {out} is being written by {_holder(path)}; waiting "
                          "for it to finish", file=sys.stderr)
                    told = True
                time.sleep(poll_s)
        if writable:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"what": what, "pid": os.getpid(),
                                 "host": socket.gethostname(), "since": time.time()}))
            fh.flush()
        _HELD[key] = [fh, 1]
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


def remove_if_only_lock(out: Path) -> None:
    """Delete ``out`` if it holds nothing but the lock file: a new output refused before
    any work leaves no folder behind."""
    with contextlib.suppress(OSError):
        if out.is_dir() and {p.name for p in out.iterdir()} <= {LOCK_FILE}:
            (out / LOCK_FILE).unlink(missing_ok=True)
            out.rmdir()


def holds_output_lock(what: str, arg: str = "out", *, create: bool = False
                      ) -> Callable[[F], F]:
    """Decorate a function that writes the output named by its argument ``arg``: the call
    holds :func:`output_lock` (waiting for another writer; re-entrant, so a caller that took
    the lock with ``wait=False`` first decides how to wait)."""
    def deco(fn: F) -> F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = sig.bind_partial(*args, **kwargs).arguments[arg]
            fresh = create and not os.path.lexists(out)
            try:
                with output_lock(out, what, create=create):
                    return fn(*args, **kwargs)
            finally:  # refused before any work (a bad model, a config error): no folder of
                if fresh:  # only a lock file is left behind
                    remove_if_only_lock(Path(out))
        return wrapper  # type: ignore[return-value]
    return deco
