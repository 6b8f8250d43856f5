"""A process that dies where a test says: SIGKILL on the N-th call of one function.

For tests of "killed at this step, then resumed": :func:`kill_point_script` is the source of a
``python -c`` program whose ``argv[1]`` names the function (``module:function`` or
``module:Class.method``) and ``argv[2]`` the call that kills; the function is replaced, then
``statement`` runs (it reads its own arguments from ``sys.argv[3:]``). The process exits with
-9 (``signal.SIGKILL``) if the call came, as after a power cut: no clean-up, no ``finally``.
"""

from __future__ import annotations

__all__ = ["kill_point_script"]

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
