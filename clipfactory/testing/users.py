"""Running a piece of a test as a user other than root, for what file permissions decide."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

__all__ = ["NOBODY", "as_another_user"]

NOBODY = 65534


def as_another_user(fn: Callable[[], Any]) -> Any:
    """``fn()`` run by a user other than root (permissions do not bind root): as is when this
    process is not root, else in a forked child that drops to ``nobody`` first. The result
    comes back through JSON. ``fn`` must not import anything new: ``nobody`` may not be able
    to read this interpreter's files."""
    if os.geteuid() != 0:
        return json.loads(json.dumps(fn()))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(w, json.dumps(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError(f"the function failed as user {NOBODY}")
    return json.loads(data)
