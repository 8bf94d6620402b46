"""Child runs: the spawn/wait API for tasks and the host's side of it (see docs/worker.md).

Tasks import :func:`spawn` and :func:`wait` from here.
"""

from .api import ChildHandle, ChildRunFailed, SpawnError, Suspend, spawn, wait

__all__ = ["ChildHandle", "ChildRunFailed", "SpawnError", "Suspend", "spawn", "wait"]
